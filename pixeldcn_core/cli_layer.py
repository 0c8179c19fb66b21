"""``pixeldcn layer``: build one up-sampling layer as ONNX, run it, check it against the reference."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._errors import InputShapeError, PixelDCNError
from ._model import build_layer_model
from ._specs import KINDS, LayerSpec, get_kind
from ._targets import resolve_target
from .cli import add_target_arguments
from .reference import apply as reference_apply

# Relative to the output's scale (max |y_ref|): what each dtype is held to.
TOLERANCE = {"float32": 1e-5, "float16": 5e-3}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "layer",
        help="build one up-sampling layer as standard-op ONNX and check it against the reference",
        description=(
            "Build an up-sampling layer with seeded random weights, run it in onnxruntime and "
            "compare it with the numpy reference."
        ),
    )
    p.add_argument("--kind", default="pixel_dcl", choices=sorted(KINDS), help="layer kind")
    p.add_argument("--form", default="efficient", help="efficient | faithful")
    add_target_arguments(p, phases="phases become the 2x output")
    p.add_argument("--in-channels", type=int, default=16)
    p.add_argument("--out-channels", type=int, default=None,
                   help="default 8, or what the kind's channel rule gives (bilinear: Cin; "
                        "bilinear_additive: Cin / 4)")
    p.add_argument("--kernel-size", type=int, default=None, help="default: the kind's")
    p.add_argument("--size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=sorted(TOLERANCE))
    p.add_argument("--bias", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also save the model to this .onnx")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise PixelDCNError("onnxruntime is needed: pip install 'pixeldcn[cpu]'") from exc
    out = args.out_channels
    if out is None and get_kind(args.kind).in_per_out is None:
        out = 8
    spec = LayerSpec(args.kind, args.in_channels, out, args.kernel_size, args.bias)
    m = spec.info.size_multiple
    if any(d < 1 or d % m for d in args.size):
        raise InputShapeError(
            f"--size: got {args.size[0]} {args.size[1]}, while {spec.kind} needs positive "
            f"multiples of {m}"
        )
    weights = spec.random_weights(args.seed)
    target, _, interleave = resolve_target(args.target, None, args.interleave)
    model = build_layer_model(spec.kind, weights, form=args.form, dtype=args.dtype,
                               interleave=interleave, target=target.name,
                               in_channels=spec.in_channels)
    ops = sorted({n.op_type for n in model.graph.node})
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch, spec.in_channels, *args.size)).astype(args.dtype)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    (y,) = sess.run(None, {"x": x})
    ms = (time.perf_counter() - t0) * 1e3
    ref = reference_apply(spec.kind, x, weights)
    scale = float(np.abs(ref).max()) or 1.0
    err = float(np.abs(y.astype(np.float64) - ref).max())
    tol = TOLERANCE[args.dtype]
    ok = err <= tol * scale
    print(f"layer      {spec.info.title} ({spec.kind}, form={args.form}, "
          f"interleave={interleave}, target={target.name}, k={spec.k}, "
          f"{spec.in_channels}->{spec.out_channels} ch, bias={spec.bias})")
    print(f"onnx ops   {', '.join(ops)} ({len(model.graph.node)} nodes, opset "
          f"{model.opset_import[0].version})")
    print(f"input      x {tuple(x.shape)} {args.dtype}")
    print(f"output     y {tuple(y.shape)} in {ms:.2f} ms (onnxruntime, first run)")
    print(f"parity     max |y - y_ref| = {err:.3e}, {err / scale:.3e} of max |y_ref|; "
          f"tolerance {tol:g} -> {'PASS' if ok else 'FAIL'}")
    if args.out is not None:
        from .io import save_model_atomic

        save_model_atomic(model, args.out)
        print(f"saved      {args.out}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m pixeldcn_core.cli_layer ARGS``: ``pixeldcn layer`` without the entry points."""
    from pixeldcn_core.cli import run_command

    return run_command(register, "layer", argv)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
