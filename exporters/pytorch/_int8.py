"""Static int8 quantisation (QDQ) of an exported float model, calibrated on real images.

``quantize_int8(float_onnx, out, calibration)`` runs onnxruntime's ``quantize_static``
(QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration) on the float
model, calibrated on photographs: a folder of images (``.png``, ``.jpg``, ...) or ``.npy``
arrays, or ``"photos"``: scikit-image's bundled photographs (no download). Images are resized
(shorter side to the model's size) and cut into tiles of the model's input size; ``.npy`` files
must already hold float ``[N, C, H, W]`` or ``[C, H, W]`` inputs of the model's channel count.

:func:`compare_int8` reports how the int8 model agrees with the float one on held-out
photographs (different photographs from the calibration set): the share of mask pixels that
agree (argmax over channels), the PSNR of the int8 output against the float output (peak: the
float output's range), the checkerboard index of both outputs where they are images, and the
median latency of each in onnxruntime on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

import pixeldcn_core
from pixeldcn_core.io import save_model_atomic

from ._errors import ExportError, ExportOptionsError
from ._options import ExportOptions

__all__ = ["CALIBRATION_PHOTOS", "HELD_OUT_PHOTOS", "Int8Report", "calibration_inputs",
           "compare_int8", "export_int8", "quantize_int8"]

#: scikit-image photographs used to calibrate with ``calibration="photos"`` (bundled files).
CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
#: Photographs kept out of calibration, used to measure agreement.
HELD_OUT_PHOTOS = ("immunohistochemistry", "retina", "stereo_motorcycle")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# -- calibration data ----------------------------------------------------------------------------
def _photo(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError as err:
        raise ExportError(
            "calibration='photos' needs scikit-image (pip install 'pixeldcn[bench]'); "
            "or give a folder of images"
        ) from err
    img = getattr(data, name)()
    return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disp)


def _tiles(img: np.ndarray, h: int, w: int, grid: int, where: str) -> list[np.ndarray]:
    """uint8 HWC image -> ``grid x grid`` tiles of h x w after resizing (shorter side fits)."""
    from PIL import Image

    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ExportOptionsError(f"calibration image {where!r}: got shape {list(img.shape)}, expected an "
                          "RGB image [H, W, 3]")
    img = np.ascontiguousarray(img[..., :3])
    ih, iw = img.shape[:2]
    f = max(grid * h / ih, grid * w / iw)
    size = (max(grid * w, round(iw * f)), max(grid * h, round(ih * f)))
    img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
    top, left = (img.shape[0] - grid * h) // 2, (img.shape[1] - grid * w) // 2
    return [img[top + i * h: top + (i + 1) * h, left + j * w: left + (j + 1) * w]
            for i in range(grid) for j in range(grid)]


def calibration_inputs(
    source: str | os.PathLike[str],
    shape: Sequence[int],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
    grid: int = 2,
    limit: int = 64,
) -> list[np.ndarray]:
    """Float32 model inputs ``[1, C, H, W]`` for calibration (or held-out checks).

    Args:
        source: ``"photos"`` (scikit-image's photographs) or a folder of images / ``.npy`` files.
        shape: the float model's input shape ``[N, C, H, W]`` (C = 3 for images).
        mean, std: the normalisation the model expects (0..1 range); default ``x / 255``.
        photos: the photograph names for ``"photos"``.
        grid: tiles per side cut from each photograph (``"photos"``; folders give one each).
        limit: at most this many inputs.

    Raises:
        ExportOptionsError: the folder is missing or empty, or an input has the wrong shape.
        ExportError: ``"photos"`` without scikit-image installed.
    """
    if len(shape) != 4:
        raise ExportOptionsError(f"calibration: the model input has shape {list(shape)}; int8 "
                          "calibration on images needs an [N, C, H, W] input")
    _, c, h, w = (int(d) for d in shape)
    arrays: list[np.ndarray] = []
    images: list[tuple[str, np.ndarray, int]] = []
    if str(source) == "photos":
        images = [(f"photos:{p}", _photo(p), grid) for p in photos]
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ExportOptionsError(f"--calibration: got {str(source)!r}, which is not a folder; "
                              "expected a folder of images or .npy inputs, or 'photos'")
        from pixeldcn_core.images import ImageError, load_npy, open_image

        files = sorted(f for f in folder.iterdir()
                       if f.is_file() and f.suffix.lower() in (*_IMAGE_SUFFIXES, ".npy"))
        if not files:
            raise ExportOptionsError(f"--calibration: the folder {folder.name!r} holds no images "
                              f"({', '.join(_IMAGE_SUFFIXES)}) or .npy files")
        for f in files:
            if f.suffix.lower() == ".npy":
                try:
                    a = load_npy(f, what="--calibration")  # header checked against the bound first
                except ImageError as err:
                    raise ExportOptionsError(str(err)) from None
                a = a[None] if a.ndim == 3 else a
                if a.ndim != 4 or a.shape[1] != c or not np.issubdtype(a.dtype, np.floating):
                    raise ExportOptionsError(
                        f"calibration file {f.name!r}: got {a.dtype} {list(a.shape)}, expected "
                        f"float [N, {c}, H, W] or [{c}, H, W] (the model's input)"
                    )
                arrays.extend(a[i: i + 1].astype(np.float32) for i in range(len(a)))
            else:
                try:
                    im = open_image(f, what="--calibration")  # bounded before decoding
                except ImageError as err:
                    raise ExportOptionsError(str(err)) from None
                with im:
                    img = np.asarray(im.convert("RGB") if im.mode in ("RGBA", "P") else im)
                images.append((f.name, img, 1))
    if images and c != 3:
        raise ExportOptionsError(f"calibration: images give 3 channels, while the model takes {c}; "
                          "give .npy inputs instead")
    for where, img, g in images:
        for t in _tiles(img, h, w, g, where):
            arrays.append(pixeldcn_core.preprocess(t[None], mean=mean, std=std))
    return arrays[:limit]


# -- quantisation ----------------------------------------------------------------------------------
class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of inputs."""

    def __init__(self, name: str, arrays: list[np.ndarray]):
        self._it = iter([{name: a} for a in arrays])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(
    float_model: str | os.PathLike[str] | onnx.ModelProto,
    out: str | os.PathLike[str],
    calibration: str | os.PathLike[str] = "photos",
    *,
    shape: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    per_channel: bool = True,
) -> Path:
    """Write the statically quantised (QDQ) int8 form of ``float_model`` to ``out``.

    Args:
        float_model: the float32 model (path or proto) with one float ``[N, C, H, W]`` input.
        out: the ``.onnx`` to write (atomically).
        calibration: ``"photos"`` or a folder (see :func:`calibration_inputs`).
        shape: calibration input shape; default the model's ``pixeldcn.input_shapes``
            metadata, else its static dims.
        mean, std: the model's input normalisation (0..1 range).
        per_channel: per-output-channel weight scales.

    Raises:
        ExportOptionsError: bad calibration data, or a model that is not float32 image-in.
        ExportError: onnxruntime's quantisation failed.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    proto = float_model if isinstance(float_model, onnx.ModelProto) else onnx.load(str(float_model))
    inits = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in inits]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ExportOptionsError("int8: the model must have one float32 input (quantise the float32 "
                          "export, before --fp16 or in-graph preprocessing)")
    shape = tuple(shape) if shape is not None else _model_shape(proto)
    arrays = calibration_inputs(calibration, shape, mean=mean, std=std)
    if not arrays:
        raise ExportOptionsError(f"--calibration {calibration}: no calibration inputs")
    out = Path(out)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pixeldcn-int8-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, str(src))
        try:
            quantize_static(
                str(src), str(dst), _Reader(inputs[0].name, arrays),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=per_channel,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as err:
            raise ExportError(f"int8: onnxruntime's quantize_static failed: {err}") from err
        q = onnx.load(str(dst))
    meta = {p.key: p.value for p in proto.metadata_props}
    del q.metadata_props[:]
    for k, v in {**meta, "pixeldcn.int8": json.dumps({
        "format": "QDQ", "activations": "uint8", "weights": "int8",
        "per_channel": per_channel, "calibration": str(calibration) if str(calibration) == "photos"
        else Path(calibration).name, "samples": len(arrays)})}.items():
        p = q.metadata_props.add()
        p.key, p.value = k, v
    save_model_atomic(q, out)
    return out


def _model_shape(proto: onnx.ModelProto) -> tuple[int, ...]:
    meta = {p.key: p.value for p in proto.metadata_props}
    if "pixeldcn.input_shapes" in meta:
        shapes = json.loads(meta["pixeldcn.input_shapes"])
        if len(shapes) == 1:
            return tuple(int(d) for d in shapes[0])
    inits = {t.name for t in proto.graph.initializer}
    value = next(v for v in proto.graph.input if v.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[1:]):
        raise ExportOptionsError(f"int8: the model's input has dims {dims}; give shape=(1, C, H, W)")
    return (1, *dims[1:])


# -- agreement and latency -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Int8Report:
    """How the int8 model agrees with the float model on held-out photographs, and its speed."""

    images: int
    mask_agreement: float | None
    psnr_db: float
    checkerboard_fp32: float | None
    checkerboard_int8: float | None
    fp32_ms: float
    int8_ms: float

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms

    def __str__(self) -> str:
        parts = [f"int8 vs fp32 on {self.images} held-out photo tiles:"]
        if self.mask_agreement is not None:
            parts.append(f"mask agreement {100 * self.mask_agreement:.2f} %")
        parts.append(f"PSNR {self.psnr_db:.1f} dB")
        if self.checkerboard_fp32 is not None:
            parts.append(f"checkerboard index fp32 {self.checkerboard_fp32:.4f} / int8 "
                         f"{self.checkerboard_int8:.4f}")
        parts.append(f"latency (onnxruntime CPU, batch 1, median) fp32 {self.fp32_ms:.1f} ms / "
                     f"int8 {self.int8_ms:.1f} ms ({self.speedup:.2f}x)")
        return " ".join(parts[:1]) + " " + "; ".join(parts[1:])


def _session(path: str | os.PathLike[str], threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _median_ms(sess: Any, feed: dict[str, np.ndarray], repeats: int) -> float:
    sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def compare_int8(
    float_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    *,
    shape: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    photos: Sequence[str] = HELD_OUT_PHOTOS,
    repeats: int = 10,
    threads: int | None = None,
) -> Int8Report:
    """Agreement of the int8 model with the float one on held-out photographs, and latency.

    Outputs with more than 3 channels are class scores: the mask agreement is the share of
    pixels whose argmax agrees. The checkerboard index
    (:func:`pixeldcn_core.quality.checkerboard_index`, over the output's channels) is given for
    both, so a quantisation that brings back period-2 artifacts shows. PSNR uses the float
    output's range as the peak.
    """
    shape = tuple(shape) if shape is not None else _model_shape(onnx.load(str(float_path)))
    xs = calibration_inputs("photos", shape, mean=mean, std=std, photos=photos, grid=1)
    fs, qs = _session(float_path, threads), _session(int8_path, threads)
    name = fs.get_inputs()[0].name
    agree, total, se, n, peak = 0, 0, 0.0, 0, 0.0
    cb_f, cb_q = [], []
    for x in xs:
        yf = fs.run(None, {name: x})[0].astype(np.float64)
        yq = qs.run(None, {name: x})[0].astype(np.float64)
        se += float(((yf - yq) ** 2).sum())
        n += yf.size
        peak = max(peak, float(yf.max() - yf.min()))
        if yf.ndim == 4 and yf.shape[1] > 3:
            agree += int((yf.argmax(1) == yq.argmax(1)).sum())
            total += yf.shape[0] * yf.shape[2] * yf.shape[3]
        if yf.ndim == 4 and min(yf.shape[2:]) >= 4:  # (C, H, W): scores or image channels
            cb_f.append(pixeldcn_core.checkerboard_index(yf[0]))
            cb_q.append(pixeldcn_core.checkerboard_index(yq[0]))
    mse = se / max(n, 1)
    psnr = float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
    feed = {name: xs[0]}
    return Int8Report(
        images=len(xs),
        mask_agreement=agree / total if total else None,
        psnr_db=float(psnr),
        checkerboard_fp32=float(np.mean(cb_f)) if cb_f else None,
        checkerboard_int8=float(np.mean(cb_q)) if cb_q else None,
        fp32_ms=_median_ms(fs, feed, repeats),
        int8_ms=_median_ms(qs, feed, repeats),
    )


# -- export: float32 model -> int8 model with the asked I/O ---------------------------------------
def export_int8(
    float_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    calibration: str,
    shape: Sequence[int],
    options: ExportOptions | None = None,
) -> tuple[Path, Int8Report | None]:
    """Quantise ``float_path`` (exported without I/O processing) into ``out``, add the I/O
    processing of ``options`` (``input_format``, ``output``, ``mean``, ``std``), and, with
    ``options.verify``, check it against the int8 model + numpy and measure the agreement with
    float32 (the report; ``None`` without ``verify``)."""
    from ._io import apply_io, verify_io

    options = options if options is not None else ExportOptions()
    out = Path(out)
    q_path = quantize_int8(float_path, out, calibration, shape=shape, mean=options.mean,
                           std=options.std)
    report = (compare_int8(float_path, q_path, shape=shape, mean=options.mean, std=options.std)
              if options.verify else None)
    if options.processes_io:
        q = onnx.load(str(q_path))
        processed = apply_io(q, options.io_layout, options.output, mean=options.mean,
                             std=options.std)
        save_model_atomic(processed, out)
        if options.verify:
            print(f"  in-graph I/O: {verify_io(q, processed, shape)}")
    return out, report
