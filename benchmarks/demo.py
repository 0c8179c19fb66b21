"""``pixeldcn demo``: the whole path on one machine, in about two minutes on 2 CPU cores.

Default (``--task sr``, see :mod:`benchmarks._demo_sr`): the trained x2 PixelDCL
super-resolution model shipped with the package, exported, served by a local Triton, run on a
held-out photograph, pictured beside bicubic and the trained DCL model with PSNR and index.

``--task segment``: build the paper's U-Net with PixelDCL -> export to standard-op ONNX and verify
it against PyTorch -> write a Triton model repository -> start the local Triton server -> send a
real photograph over gRPC -> save the input and the predicted mask side by side -> a short served
benchmark against in-process onnxruntime -> shut the server down. No trained U-Net is shipped:
it needs ``--weights`` (a trained checkpoint) or ``--random-weights`` (the mask then means nothing).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import PixelDCNError, SpecError

STEPS = 6


def _step(i: int, text: str) -> float:
    print(f"[{i}/{STEPS}] {text}", flush=True)
    return time.perf_counter()


def _done(t0: float, text: str = "") -> None:
    print(f"      {text}{' ' if text else ''}({time.perf_counter() - t0:.1f} s)", flush=True)


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


def save_side_by_side(rgb: np.ndarray, logits: np.ndarray, path: Path) -> dict[str, Any]:
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


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "mean": float(a.mean()), "n": len(ms)}


def served_benchmark(url: str, model: str, x: np.ndarray, requests: int,
                     concurrencies: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """Latency and throughput over gRPC at a few concurrency levels (warm-up excluded)."""
    from triton_repo import Client

    rows = []
    for conc in concurrencies:
        clients = [Client(url, model, protocol="grpc") for _ in range(conc)]
        for c in clients:
            c.infer(x)  # warm-up: connection and first run
        per = max(1, requests // conc)

        def worker(c: Any, per: int = per) -> list[float]:
            out = []
            for _ in range(per):
                t0 = time.perf_counter()
                c.infer(x)
                out.append((time.perf_counter() - t0) * 1e3)
            return out

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(conc) as pool:
            lat = [v for vs in pool.map(worker, clients) for v in vs]
        wall = time.perf_counter() - t0
        for c in clients:
            c.close()
        rows.append({"concurrency": conc, **_percentiles(lat), "throughput_per_s": len(lat) / wall})
    return rows


def inprocess_latency(onnx_path: Path, x: np.ndarray, runs: int) -> dict[str, float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": x})
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        ms.append((time.perf_counter() - t0) * 1e3)
    return _percentiles(ms)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "task", "segment") == "sr":
        from ._demo_sr import run_sr

        return run_sr(args)
    if args.weights is None and not args.random_weights:
        raise SpecError("--task segment: no trained U-Net is shipped; pass --weights CHECKPOINT, "
                        "or --random-weights to run the path with a meaningless mask")
    try:
        import torch

        from exporters.pytorch import ExportOptions, UNet, export_onnx, load_weights
        from triton_repo import Client, LocalTritonServer, ServingOptions, write_repository
    except ImportError as err:
        raise PixelDCNError(f"the demo needs every extra: pip install 'pixeldcn[all]' ({err})") from err
    if args.size % 16 or args.size < 32:
        raise SpecError(f"--size must be a multiple of 16 and >= 32, got {args.size}")
    if args.requests < 1:
        raise SpecError(f"--requests must be >= 1, got {args.requests}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    name = f"unet_{args.up}"

    t = _step(1, f"build the paper's U-Net with {args.up} up-sampling "
                 f"({args.num_classes} classes, base {args.base_channels} channels)")
    torch.manual_seed(args.seed)
    net = UNet(in_channels=3, num_classes=args.num_classes, base_channels=args.base_channels,
               up=args.up).eval()
    if args.weights is not None:
        load_weights(net, args.weights)
        origin = f"weights from {args.weights}"
    else:
        origin = f"seeded random weights (seed {args.seed}; pass --weights for a trained model)"
    params = sum(p.numel() for p in net.parameters())
    _done(t, f"{params / 1e6:.1f} M parameters, {origin}")

    t = _step(2, "export to ONNX (standard ops only) and verify against PyTorch")
    onnx_path = export_onnx(net, out / f"{name}.onnx", input_shape=(1, 3, args.size, args.size),
                            options=ExportOptions(interleave=args.interleave))
    import onnx

    ops = sorted({n.op_type for n in onnx.load(str(onnx_path)).graph.node})
    _done(t, f"{onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB; ops: {', '.join(ops)})")

    t = _step(3, "write the Triton model repository (GPU production config + local CPU flavour)")
    repo = out / "model_repository"
    version_dir = write_repository(repo, name, onnx_path, options=ServingOptions(
        max_batch_size=4, warmup_shape=(3, args.size, args.size)))
    _done(t, f"{version_dir}")

    rgb, source = load_image(args.image, args.size)
    x = to_input(rgb)
    t = _step(4, "start the local Triton server (CPU, loopback only)")
    with LocalTritonServer(repo) as server:
        _done(t, f"gRPC {server.grpc_url}, HTTP {server.http_url}")
        t = _step(5, f"segment a photograph over gRPC: {source}")
        with Client(server.grpc_url, name, protocol="grpc") as client:
            logits = client.infer(x)
        png = out / "prediction.png"
        hist = save_side_by_side(rgb, logits, png)
        _done(t, f"{png} (input | predicted mask | overlay; logits {tuple(logits.shape)})")
        t = _step(6, f"served benchmark: {args.requests} gRPC requests per concurrency level")
        served = served_benchmark(server.grpc_url, name, x, args.requests)
        local = inprocess_latency(onnx_path, x, args.requests)
        _done(t)
    print()
    print("| path | concurrency | p50 ms | p90 ms | requests/s | p50 / in-process |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| onnxruntime in process | 1 | {local['p50']:.1f} | {local['p90']:.1f} | "
          f"{1e3 / local['mean']:.2f} | 1.00 |")
    for row in served:
        print(f"| Triton gRPC | {row['concurrency']} | {row['p50']:.1f} | {row['p90']:.1f} | "
              f"{row['throughput_per_s']:.2f} | {row['p50'] / local['p50']:.2f} |")
    summary = {
        "model": name, "up": args.up, "interleave": args.interleave, "size": args.size,
        "parameters": params, "weights": origin,
        "image": source, "onnx": str(onnx_path), "repository": str(repo),
        "prediction_png": str(png), "class_pixels": hist,
        "inprocess_ms": local, "served": served,
        "seconds": time.perf_counter() - started,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(f"files: {out}/ ({onnx_path.name}, model_repository/, prediction.png, demo.json)")
    print(f"done in {summary['seconds']:.0f} s; serve it again with: pixeldcn serve {repo}")
    return 0

