"""``pixeldcn demo`` (default task): the trained x2 PixelDCL super-resolution model, served.

Load the shipped model (``sr-x2-pixel_dcl``, trained by ``pixeldcn bench quality``) -> export it
to standard-op ONNX and verify -> write a Triton model repository (a new version only when the
model changed) -> start the local Triton server -> send a held-out photograph's low-resolution
version over gRPC -> a picture of zoomed crops: input | bicubic | DCL (the shipped ``sr-x2-dcl``,
in process) | PixelDCL (served) | truth, each labelled with its PSNR and checkerboard index, and
a second row where the checkerboard shows: the x4 decoder of ``bench quality`` trained briefly
(the same steps and batches) with DCL and with PixelDCL, each from He init and from the bilinear
init, each labelled with its index. Measured: both He-initialised decoders carry the stride-2
grid (PixelDCL's as much as DCL's after so short a training), the bilinear-initialised ones do not
-> a short served benchmark -> stop the server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import InputShapeError, PixelDCNError, SpecError, checkerboard_index, get_kind

from ._demo_serving import Steps, inprocess_latency, latency_table, served_benchmark, write_once
from ._images import (
    HELD_OUT,
    PHOTOS,
    crop_box,
    degrade,
    interpolate,
    photo,
    psnr_ssim,
    training_pool,
)
from ._training import TrainingSetup, Variant, train

__all__ = ["DECODERS", "DECODER_STEPS", "decoder_row", "run_sr", "sr_picture"]

ZOOM = 3
#: The second row: (kind, init, label) of the x4 decoders trained from scratch for the picture.
DECODERS = (("dcl", "default", "DCL, He init"),  # per-kind data, not a branch
            ("pixel_dcl", "default", "PixelDCL, He init"),
            ("dcl", "bilinear", "DCL, bilinear init"),
            ("pixel_dcl", "bilinear", "PixelDCL, bilinear init"))
#: Training steps of each decoder of the second row (the same for all; short on purpose: the
#: artifacts of a deconvolution show early and fade with long training).
DECODER_STEPS = 40


def _photo(path: Path | None, size: int) -> tuple[np.ndarray, str]:
    """Luminance ``float32 [size, size]`` in [0, 1], centre crop; and where it came from."""
    if path is None:
        name = HELD_OUT[0]
        g = photo(name)
        source = f"scikit-image data.{name}() (held out from training: {PHOTOS[name]})"
    else:
        from .cli_quality import read_image

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


def _row(panels: list[tuple[str, np.ndarray]], box: tuple[int, int, int]) -> np.ndarray:
    top, left, side = box
    tiles = []
    for text, img in panels:
        crop = np.clip(img[top : top + side, left : left + side], 0, 1)
        crop = np.kron(np.round(crop * 255).astype(np.uint8), np.ones((ZOOM, ZOOM), np.uint8))
        tiles.append(_label(crop, text))
        tiles.append(np.full((tiles[-1].shape[0], 6), 255, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def sr_picture(rows: list[list[tuple[str, np.ndarray]]], box: tuple[int, int, int], path: Path
               ) -> Path:
    """Rows of zoomed crops (``box = (top, left, side)`` of each ``[H, W]`` image in [0, 1]),
    each labelled; rows left-aligned, 6 white pixels apart; one PNG."""
    from PIL import Image

    strips = [_row(panels, box) for panels in rows]
    width = max(s.shape[1] for s in strips)
    padded = []
    for s in strips:
        padded.append(np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=255))
        padded.append(np.full((6, width), 255, np.uint8))
    Image.fromarray(np.concatenate(padded[:-1], axis=0)).save(path)
    return path


def decoder_row(hr: np.ndarray, steps: int = DECODER_STEPS, seed: int = 0
                ) -> list[dict[str, Any]]:
    """The x4 decoders of :data:`DECODERS`, each trained ``steps`` steps (same batches, same
    seed) on the benchmark's training photographs, run on ``hr``: output and index of each."""
    out = []
    for kind, init, label in DECODERS:
        v = Variant(kind, get_kind(kind).default_kernel, init)
        r = train("ae4", v, seed, TrainingSetup(steps), training_pool(48, 256, 0), {"demo": hr})
        img = r["after"]["outputs"]["demo"]
        out.append({"kind": kind, "init": init, "label": label, "steps": steps, "image": img,
                    "index": checkerboard_index(img), "index_s4": checkerboard_index(
                        img, 4, radius=1 / 16), "psnr": r["after"]["mean"]["psnr"]})
    return out


def _models(pretrained: str, compare: str, random_weights: bool, seed: int
            ) -> tuple[Any, Any, dict[str, Any], str]:
    import torch

    from exporters.pytorch import SRNet, load_pretrained, pretrained_card

    card = pretrained_card(pretrained)  # SpecError lists the shipped names
    compare_card = pretrained_card(compare)
    if card["config"]["scale"] != compare_card["config"]["scale"]:
        raise SpecError(f"--compare {compare}: scale x{compare_card['config']['scale']}, "
                        f"expected x{card['config']['scale']} like {pretrained}")
    if random_weights:
        torch.manual_seed(seed)
        origin = f"seeded random weights (seed {seed}; --random-weights asked for them)"
        return (SRNet(**card["config"]).eval(), SRNet(**compare_card["config"]).eval(), card,
                origin)
    origin = (f"trained weights {pretrained} (held-out PSNR {card['held_out']['psnr']:.2f} dB "
              f"in its card) and {compare}")
    return load_pretrained(pretrained), load_pretrained(compare), card, origin


def _scores(images: dict[str, np.ndarray], hr: np.ndarray, scale: int) -> dict[str, Any]:
    quality: dict[str, Any] = {}
    for key, img in images.items():
        psnr, ssim = psnr_ssim(img, hr, scale)
        quality[key] = {"psnr": psnr, "ssim": ssim, "index": checkerboard_index(img)}
    quality["truth"] = {"index": checkerboard_index(hr)}
    return quality


def _sr_panels(x: np.ndarray, outputs: dict[str, np.ndarray], quality: dict[str, Any],
               scale: int, compare: str, random_weights: bool) -> list[tuple[str, np.ndarray]]:
    weights = " (random)" if random_weights else ""

    def lab(title: str, key: str) -> str:
        q = quality[key]
        return f"{title}\n{q['psnr']:.2f} dB, idx {q['index']:.4f}"

    lr_up = np.kron(x[0, 0], np.ones((scale, scale), np.float32))  # input, nearest-zoomed
    return [(f"input x{scale} (nearest)", lr_up), (lab("bicubic", "bicubic"), outputs["bicubic"]),
            (lab(f"DCL {compare}{weights}", "dcl"), outputs["dcl"]),
            (lab(f"PixelDCL{weights} (served)", "pixel_dcl"), outputs["pixel_dcl"]),
            (f"ground truth\nidx {quality['truth']['index']:.4f}", outputs["truth"])]


def _print_quality(quality: dict[str, Any], decoders: list[dict[str, Any]], pretrained: str,
                   compare: str, random_weights: bool) -> None:
    kind = "random" if random_weights else "trained"
    print("| output | PSNR dB | SSIM | checkerboard index |\n| --- | --- | --- | --- |")
    for key, title in (("bicubic", "bicubic"), ("dcl", f"DCL ({compare}, {kind})"),
                       ("pixel_dcl", f"PixelDCL ({pretrained}, {kind}, served)")):
        q = quality[key]
        print(f"| {title} | {q['psnr']:.2f} | {q['ssim']:.4f} | {q['index']:.4f} |")
    print(f"| ground truth | - | - | {quality['truth']['index']:.4f} |\n")
    print("| x4 decoder, same short training | steps | checkerboard index | stride-4 index |\n"
          "| --- | --- | --- | --- |")
    for d in decoders:
        print(f"| {d['label']} | {d['steps']} | {d['index']:.4f} | {d['index_s4']:.4f} |")
    print()


def _outputs(lr: Any, served: np.ndarray, model: Any, compare_model: Any, hr: np.ndarray,
             scale: int) -> tuple[dict[str, np.ndarray], float]:
    """The pictured images (keys of demo.json: the compared model, shipped DCL, and the served
    one, PixelDCL) and the served output's largest difference from the model in process."""
    import torch

    with torch.no_grad():
        served_err = float(np.max(np.abs(served - model(lr)[0, 0].numpy())))
        outputs = {  # per-kind data, not a branch
            "bicubic": interpolate(lr, scale, "bicubic").clamp(0, 1)[0, 0].numpy(),
            "dcl": compare_model(lr).clamp(0, 1)[0, 0].numpy(),
            "pixel_dcl": np.clip(served, 0, 1), "truth": hr}
    return outputs, served_err


def _check(size: int, requests: int) -> None:
    if size % 4 or size < 32:
        raise SpecError(f"--size must be a multiple of 4 and >= 32, got {size}")
    if requests < 1:
        raise SpecError(f"--requests must be >= 1, got {requests}")


def _export_and_write(model: Any, x: np.ndarray, name: str, interleave: str, out: Path,
                      steps: Steps) -> tuple[Path, Path, Path, bool]:
    """Steps 2 and 3: the ONNX file, the repository, its version folder, whether it is new."""
    from exporters.pytorch import ExportOptions, export_onnx
    from triton_repo import ServingOptions

    steps.start("export to ONNX (standard ops only) and verify against PyTorch")
    onnx_path = export_onnx(model, out / f"{name}.onnx", input_shape=tuple(x.shape),
                            options=ExportOptions(interleave=interleave))
    steps.done(f"{onnx_path} ({onnx_path.stat().st_size / 1e3:.0f} kB)")
    steps.start("write the Triton model repository (GPU production config + local CPU flavour)")
    repo = out / "model_repository"
    version_dir, written = write_once(repo, name, onnx_path, ServingOptions(
        max_batch_size=4, warmup_shape=tuple(x.shape[1:])))
    steps.done(f"{version_dir}{'' if written else ' (the same model: no new version)'}")
    return onnx_path, repo, version_dir, written


def run_sr(*, pretrained: str, compare: str, size: int, image: Path | None, interleave: str,
           requests: int, out: Path, seed: int = 0, random_weights: bool = False,
           decoder_steps: int = DECODER_STEPS) -> dict[str, Any]:
    """The super-resolution demo (see the module docstring); its summary, also in ``demo.json``.

    Raises:
        SpecError: an unknown shipped model, models of two scales, a bad size or request count.
        PixelDCNError: a missing extra, an unreadable image, a failing server.
    """
    _check(size, requests)
    try:
        import torch

        import exporters.pytorch  # noqa: F401
        from triton_repo import Client, LocalTritonServer
    except ImportError as err:
        raise PixelDCNError(f"the demo needs every extra: pip install 'pixeldcn[all]' ({err})") from err
    out.mkdir(parents=True, exist_ok=True)
    started, steps = time.perf_counter(), Steps(6)
    steps.start(f"build the models {pretrained} and {compare} with seeded random weights"
                if random_weights else f"load the trained super-resolution models {pretrained} "
                f"and {compare}")
    model, compare_model, card, origin = _models(pretrained, compare, random_weights, seed)
    scale, name = int(card["config"]["scale"]), pretrained.replace("-", "_").replace(".", "_")
    steps.done(origin)

    hr, source = _photo(image, size)
    lr = degrade(torch.from_numpy(hr)[None, None], scale)  # (1, 1, size/scale, size/scale)
    x = lr.numpy().astype(np.float32)
    onnx_path, repo, version_dir, written = _export_and_write(model, x, name, interleave, out,
                                                              steps)

    steps.start("start the local Triton server (CPU, loopback only)")
    with LocalTritonServer(repo) as server:
        steps.done(f"gRPC {server.grpc_url}, HTTP {server.http_url}")
        steps.start(f"super-resolve a held-out photograph x{scale} over gRPC: {source}; train "
                    f"the x4 decoders {decoder_steps} steps each for the second row")
        with Client(server.grpc_url, name, protocol="grpc") as client:
            served = np.asarray(client.infer(x))[0, 0]
        outputs, served_err = _outputs(lr, served, model, compare_model, hr, scale)
        quality = _scores({k: v for k, v in outputs.items() if k != "truth"}, hr, scale)
        decoders = decoder_row(hr, decoder_steps, seed)
        side = min(64, size // 2)
        box = (*crop_box(hr, side), side)
        png = sr_picture([
            _sr_panels(x, outputs, quality, scale, compare, random_weights),
            [(f"{d['label']}\n{d['steps']} steps, idx {d['index']:.4f}", d["image"])
             for d in decoders] + [(f"ground truth\nidx {quality['truth']['index']:.4f}", hr)],
        ], box, out / "prediction.png")
        steps.done(f"{png} (zoomed crops, {side}x{side} at {box[:2]}; served vs in-process max "
                   f"|diff| {served_err:.1e})")
        steps.start(f"served benchmark: {requests} gRPC requests per concurrency level")
        served_rows = served_benchmark(server.grpc_url, name, x, requests)
        local = inprocess_latency(onnx_path, x, requests)
        steps.done()
    print()
    _print_quality(quality, decoders, pretrained, compare, random_weights)
    print(f"{latency_table(local, served_rows)}\n")
    summary: dict[str, Any] = {
        "task": "sr", "model": name, "pretrained": pretrained, "compare": compare,
        "up": card["config"]["up"], "scale": scale, "interleave": interleave, "size": size,
        "parameters": int(sum(p.numel() for p in model.parameters())), "weights": origin,
        "random_weights": random_weights, "image": source, "onnx": str(onnx_path),
        "repository": str(repo), "version": version_dir.name, "new_version": written,
        "prediction_png": str(png), "crop": {"top": box[0], "left": box[1], "side": box[2],
                                             "zoom": ZOOM},
        "quality": quality, "decoders": [{k: v for k, v in d.items() if k != "image"}
                                         for d in decoders],
        "served_vs_inprocess_max_abs": served_err, "inprocess_ms": local, "served": served_rows,
        "seconds": time.perf_counter() - started,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"files: {out}/ ({onnx_path.name}, model_repository/, prediction.png, demo.json)")
    print(f"done in {summary['seconds']:.0f} s; serve it again with: pixeldcn serve {repo}")
    return summary
