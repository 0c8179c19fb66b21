"""Export options for in-graph I/O processing: uint8 images in, masks (or uint8 images) out.

The graph transforms are the core's (:func:`pixeldcn_core.add_preprocessing`,
:func:`pixeldcn_core.add_postprocessing`); this module parses the options, applies them to an
exported float model and verifies the result against the float model in onnxruntime with the
same processing done in numpy (:func:`pixeldcn_core.preprocess` / ``postprocess``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

import pixeldcn_core
from pixeldcn_core import OUTPUTS

from ._errors import ExportOptionsError, VerificationError

__all__ = ["INPUT_FORMATS", "apply_io", "check_io", "verify_io"]

#: ``input_format`` values: the float model's own input, or uint8 images in a layout.
INPUT_FORMATS = ("float32", *(f"uint8-{layout}" for layout in pixeldcn_core.INPUT_LAYOUTS))
#: Mask pixels whose two best float logits are closer than this (relative to the logits' scale)
#: are ties: onnxruntime and numpy may order them either way after tiny rounding differences.
TIE_GAP = 1e-4


def check_io(input_format: str | None, output: str | None) -> tuple[str | None, str]:
    """(uint8 layout or None, output) from the export options; raises ExportOptionsError."""
    fmt = "float32" if input_format is None else str(input_format).lower().replace("_", "-")
    if fmt not in INPUT_FORMATS:
        raise ExportOptionsError(
            f"input_format: got {input_format!r}, expected one of {', '.join(INPUT_FORMATS)}"
        )
    out = "logits" if output is None else str(output).lower().replace("-", "_")
    if out not in OUTPUTS:
        raise ExportOptionsError(f"output: got {output!r}, expected one of {', '.join(OUTPUTS)}")
    return (None if fmt == "float32" else fmt.split("-", 1)[1]), out


def apply_io(
    model: onnx.ModelProto,
    layout: str | None,
    output: str,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> onnx.ModelProto:
    """The float ``model`` with the asked processing (unchanged when there is none)."""
    if layout is None and (mean is not None or std is not None):
        raise ExportOptionsError("mean/std: given, but input_format is float32; they normalise "
                                 "uint8 input only (use input_format='uint8-nhwc' or 'uint8-nchw')")
    try:
        if layout is not None:
            model = pixeldcn_core.add_preprocessing(model, layout=layout, mean=mean, std=std)
        if output != "logits":
            model = pixeldcn_core.add_postprocessing(model, output)
    except pixeldcn_core.SpecError as err:
        raise ExportOptionsError(str(err)) from err
    return model


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def verify_io(
    float_model: onnx.ModelProto,
    model: onnx.ModelProto,
    shape: Sequence[int],
    *,
    seed: int = 0,
) -> str:
    """Check ``model`` (with processing) against ``float_model`` + numpy processing.

    Args:
        float_model: the model before processing.
        model: the same model after :func:`apply_io`.
        shape: the float input's example shape ``[N, C, H, W]``.

    Returns:
        A one-line summary (what was compared and how it agreed).

    Raises:
        VerificationError: beyond tolerance: float outputs ``atol=1e-4 + 1e-4 |ref|``, softmax
            ``1e-5``, masks exact off ties, uint8 images exact off rounding boundaries.
    """
    opts = pixeldcn_core.io_options(model)
    pre, output = opts["input"], opts["output"]
    rng = np.random.default_rng(seed)
    if pre is not None:
        n, c, h, w = (int(d) for d in shape)
        x = rng.integers(0, 256, (n, h, w, c) if pre["layout"] == "nhwc" else (n, c, h, w), dtype=np.uint8)
        xf = pixeldcn_core.preprocess(x, layout=pre["layout"], mean=pre["mean"], std=pre["std"])
    else:
        x = xf = rng.standard_normal(tuple(int(d) for d in shape)).astype(np.float32)
    fsess, sess = _session(float_model), _session(model)
    f_in = fsess.get_inputs()[0]
    if f_in.type == "tensor(float16)":
        xf = xf.astype(np.float16)
        if pre is None:
            x = xf
    ref = fsess.run(None, {f_in.name: xf})[0].astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    expected = pixeldcn_core.postprocess(ref, output)
    if got.shape != expected.shape or got.dtype != expected.dtype:
        raise VerificationError(
            f"verify_io ({output}): got {got.dtype} {list(got.shape)}, expected "
            f"{expected.dtype} {list(expected.shape)}"
        )
    if output == "mask":
        top2 = np.sort(ref, axis=1)[:, -2:]
        ok = (top2[:, 1] - top2[:, 0]) > TIE_GAP * max(1.0, float(np.abs(ref).max()))
        bad = int(np.count_nonzero(got[ok] != expected[ok]))
        summary = (f"mask {got.dtype} {list(got.shape)}: {bad} of {int(ok.sum())} pixels differ "
                   f"from argmax of the float logits ({int((~ok).sum())} ties within "
                   f"{TIE_GAP:g} skipped)")
        if bad:
            raise VerificationError("verify_io: " + summary)
        return summary
    if output == "uint8_image":
        frac = np.abs((ref * 255.0) % 1.0 - 0.5)
        ok = frac > 1e-3
        if opts.get("output_layout") == "nhwc":
            ok = ok.transpose(0, 2, 3, 1)
        bad = int(np.count_nonzero(got[ok] != expected[ok]))
        summary = f"uint8 image {list(got.shape)}: {bad} values differ off rounding boundaries"
        if bad:
            raise VerificationError("verify_io: " + summary)
        return summary
    tol = 1e-5 if output == "probabilities" else 1e-4
    err = np.abs(got.astype(np.float32) - expected)
    limit = tol + tol * np.abs(expected)
    summary = (f"{output} {list(got.shape)}: max |diff| {float(err.max()):.2e} "
               f"(tolerance {tol:g} + {tol:g}|ref|)")
    if not np.all(err <= limit):
        raise VerificationError("verify_io: " + summary)
    return summary
