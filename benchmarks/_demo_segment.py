"""``pixeldcn demo --task segment``: the paper's U-Net through the whole path.

Build the U-Net with PixelDCL -> export to standard-op ONNX and verify it against PyTorch ->
write a Triton model repository -> start the local Triton server -> send a real photograph over
gRPC -> save the input and the predicted mask side by side -> a short served benchmark against
in-process onnxruntime -> shut the server down. No trained U-Net is shipped: it needs weights (a
trained checkpoint) or random weights asked for explicitly (the mask then means nothing). Its
files are its own (``segment.png``, ``segment.json``, its own folder, by default
``runs/demo-segment``): it never overwrites the super-resolution demo's, and the model (124 MB at
the paper's size) is kept once, in the repository.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import PixelDCNError, SpecError

from ._demo_serving import Steps, inprocess_latency, latency_table, served_benchmark, write_once

__all__ = ["load_image", "run_segment", "save_side_by_side", "to_input"]


def load_image(path: Path | None, size: int) -> tuple[np.ndarray, str]:
    """An RGB photograph as ``uint8 [size, size, 3]`` and a description of where it came from."""
    from PIL import Image

    if path is None:
        from skimage import data

        img = Image.fromarray(data.chelsea())
        source = "scikit-image data.chelsea() (Chelsea the cat, public domain)"
    else:
        from pixeldcn_core.images import read_image

        img = Image.fromarray(read_image(path, "RGB", what="--image"))  # bounded, (H, W, 3)
        source = str(path)
    # Centre-crop to a square, then resize: the network sees an undistorted photograph.
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR)), source


def to_input(rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` -> ``float32 [1, 3, H, W]``, ImageNet-normalised."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = (rgb.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def save_side_by_side(rgb: np.ndarray, logits: np.ndarray, path: Path) -> dict[int, int]:
    """Input | predicted mask | overlay, as one PNG. Returns the class histogram."""
    from PIL import Image

    from pixeldcn_core.images import voc_palette  # the one colour map, also `pixeldcn infer`'s

    classes = logits.argmax(axis=1)[0]  # (H, W)
    pal = voc_palette(logits.shape[1])
    mask = pal[classes]
    overlay = (0.55 * rgb + 0.45 * mask).astype(np.uint8)
    gap = np.full((rgb.shape[0], 8, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([rgb, gap, mask, gap, overlay], axis=1)).save(path)
    values, counts = np.unique(classes, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _build(up: str, num_classes: int, base_channels: int, weights: Path | None, seed: int
           ) -> tuple[Any, str]:
    import torch

    from exporters.pytorch import build_network, load_weights

    torch.manual_seed(seed)
    net = build_network("unet", up, num_classes=num_classes, base_channels=base_channels).eval()
    if weights is not None:
        load_weights(net, weights)
        return net, f"weights from {weights}"
    return net, f"seeded random weights (seed {seed}; pass --weights for a trained model)"


def run_segment(*, up: str, interleave: str, weights: Path | None, random_weights: bool,
                image: Path | None, size: int, num_classes: int, base_channels: int,
                requests: int, out: Path, seed: int) -> dict[str, Any]:
    """The segmentation demo (see the module docstring); its summary, also in ``segment.json``.

    Raises:
        SpecError: no weights and no random weights, or a bad size or request count.
        PixelDCNError: a missing extra, an unreadable image, a failing server.
    """
    if weights is None and not random_weights:
        raise SpecError("--task segment: no trained U-Net is shipped; pass --weights CHECKPOINT, "
                        "or --random-weights to run the path with a meaningless mask")
    if size % 16 or size < 32:
        raise SpecError(f"--size must be a multiple of 16 and >= 32, got {size}")
    if requests < 1:
        raise SpecError(f"--requests must be >= 1, got {requests}")
    try:
        import onnx

        from exporters.pytorch import ExportOptions, export_onnx
        from triton_repo import Client, LocalTritonServer, ServingOptions
    except ImportError as err:
        raise PixelDCNError(f"the demo needs every extra: pip install 'pixeldcn[all]' ({err})") from err
    out.mkdir(parents=True, exist_ok=True)
    started, steps, name = time.perf_counter(), Steps(6), f"unet_{up}"
    steps.start(f"build the paper's U-Net with {up} up-sampling ({num_classes} classes, base "
                f"{base_channels} channels)")
    net, origin = _build(up, num_classes, base_channels, weights, seed)
    params = sum(p.numel() for p in net.parameters())
    steps.done(f"{params / 1e6:.1f} M parameters, {origin}")

    repo = out / "model_repository"
    with tempfile.TemporaryDirectory(prefix="pixeldcn-demo-") as tmp:
        steps.start("export to ONNX (standard ops only) and verify against PyTorch")
        exported = export_onnx(net, Path(tmp) / f"{name}.onnx", input_shape=(1, 3, size, size),
                               options=ExportOptions(interleave=interleave))
        ops = sorted({n.op_type for n in onnx.load(str(exported)).graph.node})
        steps.done(f"{exported.stat().st_size / 1e6:.1f} MB; ops: {', '.join(ops)}")
        steps.start("write the Triton model repository (GPU production config + local CPU "
                    "flavour)")
        version_dir, written = write_once(repo, name, exported, ServingOptions(
            max_batch_size=4, warmup_shape=(3, size, size)))
    onnx_path = version_dir / "model.onnx"  # the one copy of the model
    steps.done(f"{version_dir}{'' if written else ' (the same model: no new version)'}")

    rgb, source = load_image(image, size)
    x = to_input(rgb)
    steps.start("start the local Triton server (CPU, loopback only)")
    with LocalTritonServer(repo) as server:
        steps.done(f"gRPC {server.grpc_url}, HTTP {server.http_url}")
        steps.start(f"segment a photograph over gRPC: {source}")
        with Client(server.grpc_url, name, protocol="grpc") as client:
            logits = client.infer(x)
        png = out / "segment.png"
        hist = save_side_by_side(rgb, logits, png)
        steps.done(f"{png} (input | predicted mask | overlay; logits {tuple(logits.shape)})")
        steps.start(f"served benchmark: {requests} gRPC requests per concurrency level")
        served = served_benchmark(server.grpc_url, name, x, requests)
        local = inprocess_latency(onnx_path, x, requests)
        steps.done()
    print(f"\n{latency_table(local, served)}\n")
    summary = {
        "task": "segment", "model": name, "up": up, "interleave": interleave, "size": size,
        "parameters": params, "weights": origin, "random_weights": weights is None,
        "image": source, "onnx": str(onnx_path), "repository": str(repo),
        "prediction_png": str(png), "class_pixels": hist, "inprocess_ms": local,
        "served": served, "seconds": time.perf_counter() - started,
    }
    (out / "segment.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"files: {out}/ (model_repository/ with {onnx_path.relative_to(out)}, segment.png, "
          "segment.json)")
    print(f"done in {summary['seconds']:.0f} s; serve it again with: pixeldcn serve {repo}")
    return summary
