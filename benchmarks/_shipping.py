"""Shipping trained models: the seed-0 super-resolution models of ``bench quality --save-models``
copied into the package's ``pretrained`` folder, each with a model card (JSON + Markdown)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import checkerboard_index

__all__ = ["ship_pretrained"]


def ship_pretrained(models_dir: str | Path, picks: Mapping[str, str], dest: str | Path,
                    command: str) -> list[Path]:
    """Copy seed-0 SR models saved by ``--save-models`` into ``dest`` under shipped names, each
    with a model card (JSON + Markdown) holding its held-out PSNR/SSIM/index, measured again
    here on the benchmark's held-out crops (what the pretrained test reproduces).

    Args:
        models_dir: the ``--save-models`` folder.
        picks: shipped name -> saved name, e.g. ``{"sr-x2-pixel_dcl": "sr-x2-pixel_dcl-k3-default"}``.
        dest: the package's ``pretrained`` folder.
        command: the ``pixeldcn bench quality`` command that trained them.
    """
    import hashlib
    import shutil

    from exporters.pytorch import SRNet, load_weights

    from ._images import HELD_OUT, PHOTOS, TRAIN, eval_images
    from ._training import evaluate, floors

    src, dest = Path(models_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for shipped, saved in picks.items():
        meta = json.loads((src / f"{saved}.json").read_text())
        model = SRNet(**meta["config"])
        load_weights(model, src / f"{saved}.safetensors")
        task = f"sr{meta['config']['scale']}"
        s = meta["settings"]
        images = eval_images(s["eval_side"])
        held = evaluate(model, task, images)
        floor = {f["method"]: {k: f[k] for k in ("psnr", "ssim", "index")}
                 for f in floors(task, images)}
        target = dest / f"{shipped}.safetensors"
        shutil.copyfile(src / f"{saved}.safetensors", target)
        card = {
            "name": shipped, "arch": "sr", "config": meta["config"], "trained_as": saved,
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "task": f"x{meta['config']['scale']} super-resolution of luminance, residual over "
                    "bicubic (VDSR style)",
            "data": {
                "train": {n: PHOTOS[n] for n in TRAIN},
                "held_out": {n: PHOTOS[n] for n in HELD_OUT},
                "evaluation": f"{s['eval_side']}x{s['eval_side']} centre crops of the held-out "
                              "photographs, luminance (skimage rgb2gray); input = bicubic x1/"
                              f"{meta['config']['scale']} with anti-aliasing (torch); PSNR/SSIM "
                              "with data_range 1, border of `scale` pixels shaved",
                "source": "scikit-image skimage.data",
            },
            "recipe": {"steps": s["steps"], "batch": s["batch"], "patch": s["patch"],
                       "optimizer": "Adam", "lr": s["lr"], "schedule": "cosine to lr/20",
                       "loss": "MSE", "seed": s["seeds"][0], "training_pool": s["pool_size"]},
            "command": command,
            "held_out": {k: held["mean"][k] for k in ("psnr", "ssim", "index", "error_index",
                                                      "residual_index")}
                        | {"per_image": held["per_image"]},
            "bicubic": floor.get("bicubic"), "bilinear": floor.get("bilinear"),
            "truth_index": float(np.mean([checkerboard_index(im) for im in images.values()])),
        }
        (dest / f"{shipped}.json").write_text(json.dumps(card, indent=1) + "\n")
        (dest / f"{shipped}.md").write_text(_card_markdown(card))
        written += [target, dest / f"{shipped}.json", dest / f"{shipped}.md"]
    return written


def _card_markdown(card: Mapping[str, Any]) -> str:
    c, h, b = card["config"], card["held_out"], card["bicubic"]
    lines = [
        f"# {card['name']}", "",
        f"{card['task']}. Up-sampling: `{c['up']}` (kernel {c['up_kernel_size']}, init "
        f"`{c['init']}`), width {c['width']}, {c['depth']} convs before the first x2 layer; "
        f"{int(math.log2(c['scale']))} x2 layer(s).", "",
        "| held out | PSNR dB | SSIM | checkerboard index |", "| --- | ---: | ---: | ---: |",
        f"| this model | {h['psnr']:.2f} | {h['ssim']:.4f} | {h['index']:.4f} |",
        f"| bicubic | {b['psnr']:.2f} | {b['ssim']:.4f} | {b['index']:.4f} |",
        f"| ground truth | - | - | {card['truth_index']:.4f} |", "",
        f"Data: {card['data']['source']}; trained on "
        f"{', '.join(card['data']['train'])}; held out (never trained on): "
        f"{', '.join(card['data']['held_out'])}. {card['data']['evaluation']}.", "",
        f"Recipe: {json.dumps(card['recipe'])}.", "",
        f"Made by: `{card['command']}` (seed-0 model `{card['trained_as']}`).", "",
        f"Use: `pixeldcn export --arch sr --pretrained {card['name']} --out {card['name']}.onnx`; "
        f"in Python `exporters.pytorch.load_pretrained({card['name']!r})`.", "",
        f"SHA-256 of the weights: `{card['sha256']}`.", "",
    ]
    return "\n".join(lines)
