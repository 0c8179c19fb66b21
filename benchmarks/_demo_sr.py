"""``pixeldcn demo`` (default task): the trained x2 PixelDCL super-resolution model, served.

Load the shipped model (``sr-x2-pixel_dcl``, trained by ``pixeldcn bench quality``) -> export it
to standard-op ONNX and verify -> write a Triton model repository -> start the local Triton server
-> send a held-out photograph's low-resolution version over gRPC -> picture of zoomed crops:
input | bicubic | DCL (the shipped ``sr-x2-dcl``, in process) | PixelDCL (served) | truth, each
labelled with its PSNR and checkerboard index -> a short served benchmark -> stop the server.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import InputShapeError, PixelDCNError, SpecError, checkerboard_index

__all__ = ["run_sr", "sr_picture"]

STEPS = 6
ZOOM = 3


def _step(i: int, text: str) -> float:
    print(f"[{i}/{STEPS}] {text}", flush=True)
    return time.perf_counter()


def _done(t0: float, text: str = "") -> None:
    print(f"      {text}{' ' if text else ''}({time.perf_counter() - t0:.1f} s)", flush=True)


def _photo(path: Path | None, size: int) -> tuple[np.ndarray, str]:
    """Luminance ``float32 [size, size]`` in [0, 1], centre crop; and where it came from."""
    if path is None:
        from ._images import HELD_OUT, PHOTOS, photo

        name = HELD_OUT[0]
        g = photo(name)
        source = f"scikit-image data.{name}() (held out from training: {PHOTOS[name]})"
    else:
        from .quality_cli import read_image

        g = read_image(path, 1)[0]
        source = str(path)
    h, w = g.shape
    if min(h, w) < size:
        raise InputShapeError(f"--image is {w}x{h} pixels, smaller than --size {size}; expected "
                              f"at least {size}x{size}")
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(g[top : top + size, left : left + size], dtype=np.float32), source


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """``uint8 [H, W]`` with a white strip above holding ``text`` (two lines at most)."""
    from PIL import Image, ImageDraw

    strip = 28
    canvas = Image.new("L", (img.shape[1], img.shape[0] + strip), 255)
    canvas.paste(Image.fromarray(img), (0, strip))
    ImageDraw.Draw(canvas).multiline_text((3, 1), text, fill=0, spacing=1)
    return np.asarray(canvas)


def sr_picture(panels: list[tuple[str, np.ndarray]], box: tuple[int, int, int], path: Path) -> Path:
    """Zoomed crops (``box = (top, left, side)`` of each ``[H, W]`` image in [0, 1]) side by
    side, each labelled; one PNG."""
    from PIL import Image

    top, left, side = box
    tiles = []
    for text, img in panels:
        crop = np.clip(img[top : top + side, left : left + side], 0, 1)
        crop = np.kron(np.round(crop * 255).astype(np.uint8), np.ones((ZOOM, ZOOM), np.uint8))
        tiles.append(_label(crop, text))
        tiles.append(np.full((tiles[-1].shape[0], 6), 255, np.uint8))
    Image.fromarray(np.concatenate(tiles[:-1], axis=1)).save(path)
    return path


def run_sr(args: argparse.Namespace) -> int:
    try:
        import torch

        from exporters.pytorch import SRNet, export_onnx, load_pretrained, pretrained_card
        from triton_repo import Client, LocalTritonServer, ServingOptions, write_repository

        from ._images import crop_box, degrade, interpolate, psnr_ssim
        from .demo import inprocess_latency, served_benchmark
    except ImportError as err:
        raise PixelDCNError(f"the demo needs every extra: pip install 'pixeldcn[all]' ({err})") from err
    if args.size % 4 or args.size < 32:
        raise SpecError(f"--size must be a multiple of 4 and >= 32, got {args.size}")
    if args.requests < 1:
        raise SpecError(f"--requests must be >= 1, got {args.requests}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    t = _step(1, f"load the trained super-resolution models {args.pretrained} and {args.compare}")
    card = pretrained_card(args.pretrained)  # SpecError lists the shipped names
    compare_card = pretrained_card(args.compare)
    if card["config"]["scale"] != compare_card["config"]["scale"]:
        raise SpecError(f"--compare {args.compare}: scale x{compare_card['config']['scale']}, "
                        f"expected x{card['config']['scale']} like {args.pretrained}")
    scale = int(card["config"]["scale"])
    if args.random_weights:
        torch.manual_seed(args.seed)
        model = SRNet(**card["config"]).eval()
        compare = SRNet(**compare_card["config"]).eval()
        origin = f"seeded random weights (seed {args.seed}; --random-weights asked for them)"
    else:
        model, compare = load_pretrained(args.pretrained), load_pretrained(args.compare)
        origin = (f"trained weights {args.pretrained} (held-out PSNR {card['held_out']['psnr']:.2f}"
                  f" dB in its card) and {args.compare}")
    name = args.pretrained.replace("-", "_").replace(".", "_")
    _done(t, origin)

    hr, source = _photo(args.image, args.size)
    lr = degrade(torch.from_numpy(hr)[None, None], scale)  # (1, 1, size/scale, size/scale)
    x = lr.numpy().astype(np.float32)

    t = _step(2, "export to ONNX (standard ops only) and verify against PyTorch")
    onnx_path = export_onnx(model, out / f"{name}.onnx", input_shape=tuple(x.shape),
                            interleave=args.interleave)
    _done(t, f"{onnx_path} ({onnx_path.stat().st_size / 1e3:.0f} kB)")

    t = _step(3, "write the Triton model repository (GPU production config + local CPU flavour)")
    repo = out / "model_repository"
    version_dir = write_repository(repo, name, onnx_path, options=ServingOptions(
        max_batch_size=4, warmup_shape=tuple(x.shape[1:])))
    _done(t, f"{version_dir}")

    t = _step(4, "start the local Triton server (CPU, loopback only)")
    with LocalTritonServer(repo) as server:
        _done(t, f"gRPC {server.grpc_url}, HTTP {server.http_url}")
        t = _step(5, f"super-resolve a held-out photograph x{scale} over gRPC: {source}")
        with Client(server.grpc_url, name, protocol="grpc") as client:
            served = np.asarray(client.infer(x))[0, 0]
        with torch.no_grad():
            in_process = model(lr)[0, 0].numpy()
            dcl = compare(lr).clamp(0, 1)[0, 0].numpy()
        bicubic = interpolate(lr, scale, "bicubic").clamp(0, 1)[0, 0].numpy()
        served_err = float(np.max(np.abs(served - in_process)))
        pixel = np.clip(served, 0, 1)
        lr_up = np.kron(x[0, 0], np.ones((scale, scale), np.float32))  # input, nearest-zoomed
        quality = {}
        for key, img in (("bicubic", bicubic), ("dcl", dcl), ("pixel_dcl", pixel)):
            psnr, ssim = psnr_ssim(img, hr, scale)
            quality[key] = {"psnr": psnr, "ssim": ssim, "index": checkerboard_index(img)}
        quality["truth"] = {"index": checkerboard_index(hr)}
        side = min(64, args.size // 2)
        box = (*crop_box(hr, side), side)

        def lab(title: str, key: str) -> str:
            q = quality[key]
            return f"{title}\n{q['psnr']:.2f} dB, idx {q['index']:.4f}"

        png = sr_picture([
            (f"input x{scale} (nearest)", lr_up),
            (lab("bicubic", "bicubic"), bicubic),
            (lab(f"DCL {args.compare}", "dcl"), dcl),
            (lab("PixelDCL (served)", "pixel_dcl"), pixel),
            (f"ground truth\nidx {quality['truth']['index']:.4f}", hr),
        ], box, out / "prediction.png")
        _done(t, f"{png} (zoomed crops, {side}x{side} at {box[:2]}; served vs in-process max "
                 f"|diff| {served_err:.1e})")
        t = _step(6, f"served benchmark: {args.requests} gRPC requests per concurrency level")
        served_rows = served_benchmark(server.grpc_url, name, x, args.requests)
        local = inprocess_latency(onnx_path, x, args.requests)
        _done(t)
    print()
    print("| output | PSNR dB | SSIM | checkerboard index |")
    print("| --- | --- | --- | --- |")
    for key, title in (("bicubic", "bicubic"), ("dcl", f"DCL ({args.compare})"),
                       ("pixel_dcl", f"PixelDCL ({args.pretrained}, served)")):
        q = quality[key]
        print(f"| {title} | {q['psnr']:.2f} | {q['ssim']:.4f} | {q['index']:.4f} |")
    print(f"| ground truth | - | - | {quality['truth']['index']:.4f} |")
    print()
    print("| path | concurrency | p50 ms | p90 ms | requests/s | p50 / in-process |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| onnxruntime in process | 1 | {local['p50']:.1f} | {local['p90']:.1f} | "
          f"{1e3 / local['mean']:.2f} | 1.00 |")
    for row in served_rows:
        print(f"| Triton gRPC | {row['concurrency']} | {row['p50']:.1f} | {row['p90']:.1f} | "
              f"{row['throughput_per_s']:.2f} | {row['p50'] / local['p50']:.2f} |")
    summary: dict[str, Any] = {
        "task": "sr", "model": name, "pretrained": args.pretrained, "compare": args.compare,
        "up": card["config"]["up"], "scale": scale, "interleave": args.interleave,
        "size": args.size, "parameters": int(sum(p.numel() for p in model.parameters())),
        "weights": origin, "random_weights": bool(args.random_weights), "image": source,
        "onnx": str(onnx_path), "repository": str(repo), "prediction_png": str(png),
        "crop": {"top": box[0], "left": box[1], "side": box[2], "zoom": ZOOM},
        "quality": quality, "served_vs_inprocess_max_abs": served_err,
        "inprocess_ms": local, "served": served_rows,
        "seconds": time.perf_counter() - started,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(f"files: {out}/ ({onnx_path.name}, model_repository/, prediction.png, demo.json)")
    print(f"done in {summary['seconds']:.0f} s; serve it again with: pixeldcn serve {repo}")
    return 0
