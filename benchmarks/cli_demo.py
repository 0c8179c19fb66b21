"""``pixeldcn demo``: the whole path on one machine, in about two minutes on 2 CPU cores.

The command line only: ``--task sr`` (default) runs :func:`benchmarks._demo_sr.run_sr` (the
trained x2 PixelDCL super-resolution model shipped with the package, exported, served by a local
Triton, run on a held-out photograph, pictured beside bicubic and the trained DCL model, with a
second row where the checkerboard of briefly trained decoders shows), ``--task segment`` runs
:func:`benchmarks._demo_segment.run_segment` (the paper's U-Net; needs ``--weights`` or
``--random-weights``). Each task writes to its own folder by default.

Registered in the ``pixeldcn.commands`` entry-point group; nothing heavy is imported until the
command runs. ``python -m benchmarks.cli_demo ARGS`` runs it without the entry points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixeldcn_core import INTERLEAVES, layer_kinds
from pixeldcn_core.cli import add_image_limit_arguments, run_command

__all__ = ["default_out", "handler", "main", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="serve the trained x2 PixelDCL super-resolution model with a local Triton and "
             "picture it beside bicubic and DCL (or --task segment: the U-Net)",
        description=(
            "The main job end to end. Default --task sr: load the shipped, trained x2 PixelDCL "
            "super-resolution model, export and verify it, write a model repository (a new "
            "version only when the model changed), start the local Triton server, super-resolve "
            "a held-out photograph over gRPC, save zoomed crops of input | bicubic | DCL | "
            "PixelDCL | truth labelled with PSNR and checkerboard index, and a second row: an x4 "
            "decoder briefly trained with DCL and PixelDCL from He init and from the bilinear "
            "init, each labelled with its index; run a short served benchmark, stop the server. "
            "--task segment: the same path with the paper's U-Net (needs --weights or "
            "--random-weights), in its own folder."
        ),
    )
    p.add_argument("--task", default="sr", choices=("sr", "segment"),
                   help="sr (default): trained super-resolution; segment: the U-Net")
    p.add_argument("--pretrained", default="sr-x2-pixel_dcl",
                   help="sr: the shipped model to serve (default sr-x2-pixel_dcl)")
    p.add_argument("--compare", default="sr-x2-dcl",
                   help="sr: the shipped model pictured beside it (default sr-x2-dcl)")
    p.add_argument("--random-weights", action="store_true",
                   help="seeded random weights instead of trained ones (only when asked)")
    p.add_argument("--up", default="pixel_dcl", choices=layer_kinds(), help="up-sampling layer")
    p.add_argument("--interleave", default="depth_to_space", choices=INTERLEAVES,
                   help="how the up-sampling layers interleave phases in ONNX (concat: faster on CPU)")
    p.add_argument("--weights", type=Path, default=None,
                   help="trained checkpoint (.safetensors, or a torch file loaded weights-only)")
    p.add_argument("--image", type=Path, default=None,
                   help="photograph (default: scikit-image's 'astronaut', held out from training; "
                        "segment: 'chelsea')")
    p.add_argument("--size", type=int, default=256,
                   help="square size: sr, of the high-resolution crop (multiple of 4); segment, "
                        "of the input (multiple of 16)")
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument("--base-channels", type=int, default=64)
    p.add_argument("--requests", type=int, default=8,
                   help="requests per concurrency level in the served benchmark")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/demo; segment: runs/demo-segment)")
    p.add_argument("--seed", type=int, default=0)
    add_image_limit_arguments(p)
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    """Run ``pixeldcn demo``; returns the exit code (errors raise PixelDCNError)."""
    if args.image is not None:  # refused now, not after the export and the server start
        from pixeldcn_core.images import check_input

        check_input(args.image, what="--image")
    out = args.out if args.out is not None else default_out(args.task)
    if args.task == "sr":
        from ._demo_sr import run_sr

        run_sr(pretrained=args.pretrained, compare=args.compare, size=args.size, image=args.image,
               interleave=args.interleave, requests=args.requests, out=out, seed=args.seed,
               random_weights=args.random_weights)
    else:
        from ._demo_segment import run_segment

        run_segment(up=args.up, interleave=args.interleave, weights=args.weights,
                    random_weights=args.random_weights, image=args.image, size=args.size,
                    num_classes=args.num_classes, base_channels=args.base_channels,
                    requests=args.requests, out=out, seed=args.seed)
    return 0


def default_out(task: str) -> Path:
    """Where a demo writes when ``--out`` is not given: one folder per task, so that the
    segmentation demo never overwrites the super-resolution demo's files or repository."""
    return Path("runs/demo") if task == "sr" else Path(f"runs/demo-{task}")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.cli_demo ARGS``: ``pixeldcn demo`` without the entry points."""
    return run_command(register, "demo", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
