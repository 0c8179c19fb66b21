"""``pixeldcn check``: run a model on several ONNX consumers and compare them."""

from __future__ import annotations

import argparse
from pathlib import Path

import onnx

from pixeldcn_core import INTERLEAVES, LayerSpec, SpecError, get_kind, layer_kinds
from pixeldcn_core.cli import run_command
from pixeldcn_core.io import save_model_atomic, write_bytes_atomic

from .runtimes._check import CheckInputError, check_layer, check_model
from .runtimes._consumers import RUNTIMES

__all__ = ["handler", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``check`` subcommand to the ``pixeldcn`` parser."""
    p = sub.add_parser(
        "check",
        help="run an ONNX model on several consumers (onnxruntime, OpenVINO, tract, ...) and compare",
        description=(
            "Run MODEL.onnx on each runtime with the same seeded inputs and compare every output "
            "with onnxruntime (or, with --layer, build one layer and compare with the numpy "
            "reference): |y - baseline| <= atol x max(max|baseline|, floor) + rtol x |baseline|, "
            "defaults per precision. Prints a table, writes JSON with --json; exits 1 when a "
            "requested runtime disagrees or fails to run. Runtimes that are not installed are "
            "skipped with what to pip install (pip install 'pixeldcn[runtimes]' installs them all)."
        ),
    )
    p.add_argument("model", nargs="?", type=Path, default=None, help="the .onnx file to check")
    p.add_argument("--runtimes", default=",".join(RUNTIMES),
                   help=f"comma-separated subset of {','.join(RUNTIMES)} (default: all)")
    p.add_argument("--input-shape", action="append", default=None, metavar="SHAPE",
                   help="shape of the seeded input, e.g. 1,3,64,64; once per model input "
                        "(default: the exporter's example shape, else symbolic dims 1 / 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs")
    p.add_argument("--atol", type=float, default=None,
                   help="absolute tolerance in output units (default: per precision x scale)")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance (default: per precision)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--strict", action="store_true", help="a runtime that is not installed fails")
    p.add_argument("--torchvision-stand-in", action="store_true",
                   help="let onnx2torch import beside a torchvision wheel that cannot load its "
                        "kernels (its NMS / RoiAlign converters then fail; pixeldcn models have none)")
    g = p.add_argument_group("a single layer instead of MODEL (compared with the numpy reference)")
    g.add_argument("--layer", default=None, metavar="KIND", help=f"{' | '.join(layer_kinds())}")
    g.add_argument("--form", default="efficient", help="efficient | faithful")
    g.add_argument("--interleave", default=None, choices=INTERLEAVES, help="default: the target's")
    g.add_argument("--target", default=None, help="export target (see pixeldcn layer --help)")
    g.add_argument("--opset", type=int, default=None)
    g.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    g.add_argument("--kernel-size", type=int, default=None)
    g.add_argument("--in-channels", type=int, default=8)
    g.add_argument("--out-channels", type=int, default=None,
                   help="default 4, or what the kind's channel rule gives (bilinear: Cin)")
    g.add_argument("--bias", action="store_true")
    g.add_argument("--save", type=Path, default=None, help="also save the built layer here")
    p.set_defaults(func=handler)


def _parse_shape(text: str) -> list[int]:
    parts = text.replace("x", ",").split(",")
    try:
        shape = [int(v) for v in parts]
    except ValueError:
        shape = []
    if not shape or any(d < 1 for d in shape):
        raise CheckInputError(
            f"--input-shape: got {text!r}, expected positive integers separated by commas, e.g. 1,3,64,64"
        )
    return shape


def handler(args: argparse.Namespace) -> int:
    """Run ``pixeldcn check``; returns 0 when every requested runtime agrees, else 1."""
    if (args.model is None) == (args.layer is None):
        raise CheckInputError("give either MODEL.onnx or --layer KIND (not both, not neither)")
    shapes = [_parse_shape(s) for s in args.input_shape] if args.input_shape else None
    common = {"atol": args.atol, "rtol": args.rtol, "strict": args.strict,
              "torchvision_stand_in": args.torchvision_stand_in}
    if args.layer is not None:
        out = args.out_channels
        if out is None and get_kind(args.layer).in_per_out is None:
            out = 4
        spec = LayerSpec(args.layer, args.in_channels, out, args.kernel_size, args.bias)
        if shapes is not None and (len(shapes) != 1 or len(shapes[0]) != 4):
            raise CheckInputError(f"--input-shape: a layer takes one 4-D shape N,C,H,W, got {shapes}")
        shape = shapes[0] if shapes else [1, spec.in_channels, 8, 8]
        build = {"form": args.form, "opset": args.opset, "dtype": args.dtype,
                 "in_channels": spec.in_channels}
        if args.interleave is not None:
            build["interleave"] = args.interleave
        if args.target is not None:
            build["target"] = args.target
        model, report = check_layer(spec.kind, spec.random_weights(args.seed), args.runtimes,
                                    input_shape=shape, seed=args.seed, **build, **common)
        if args.save is not None:
            _save(model, args.save)
    else:
        if args.target is not None:
            raise SpecError("--target applies to --layer; export a model with "
                            "pixeldcn export --target instead")
        report = check_model(args.model, args.runtimes, input_shapes=shapes, seed=args.seed, **common)
    print(report)
    if args.json is not None:
        write_bytes_atomic(args.json, (report.to_json() + "\n").encode())
        print(f"wrote {args.json}")
    return 0 if report.passed else 1


def _save(model: onnx.ModelProto, path: Path) -> None:
    save_model_atomic(model, path)
    print(f"saved {path}")


def main(argv: list[str] | None = None) -> int:
    """``python -m exporters.cli_check ARGS``: ``pixeldcn check`` without the entry points."""
    return run_command(register, "check", argv)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
