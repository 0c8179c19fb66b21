"""``pixeldcn export``: build a network, load trained weights, export to ONNX, verify.

Registered in the ``pixeldcn.commands`` entry-point group. This module sits outside
``exporters.pytorch`` (whose import loads torch) and imports it only inside the handler, so that
``pixeldcn --help`` stays fast. ``python -m exporters.cli_export ARGS`` runs it without the entry
points.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from pixeldcn_core import INPUT_LAYOUTS, OUTPUTS, SpecError, get_kind, layer_kinds
from pixeldcn_core.cli import add_image_limit_arguments, add_target_arguments, run_command

__all__ = ["handler", "main", "register"]

#: ``pixeldcn export`` flag -> the architecture option it sets (where the --arch has it).
_FLAGS = {"num_classes": "num_classes", "base_channels": "base_channels", "depth": "depth",
          "latent_dim": "latent_dim"}
#: The architectures whose --depth flag is exposed (unet: levels; deeplab: ResNet depth).
_DEPTH_ARCHS = ("unet", "deeplab")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand to the ``pixeldcn`` parser."""
    p = sub.add_parser(
        "export",
        help="export a U-Net, VAE decoder or DeepLab-ResNet with pixeldcn up-sampling layers "
        "to ONNX",
        description=(
            "Build the network, optionally load trained weights (.safetensors, or a torch file "
            "read with weights_only=True), export it to standard-op ONNX with every up-sampling "
            "layer in the core's efficient form, and verify it against PyTorch in onnxruntime."
        ),
    )
    p.add_argument("--arch", required=True,
                   help="network: a name of exporters.pytorch.ARCHITECTURES (unet, vae-decoder, "
                        "deeplab, sr, autoencoder; registered ones too)")
    p.add_argument("--up", default="pixel_dcl", help=f"up-sampling layer: {' | '.join(layer_kinds())}")
    p.add_argument("--up-kernel-size", type=int, default=None, help="default: the kind's")
    p.add_argument("--weights", type=Path, default=None, help="trained weights (.safetensors, .pt)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--input-shape", default=None,
                   help="example input, e.g. 1,3,256,256 (unet), 1,128 (vae-decoder), "
                   "1,3,512,512 (deeplab: H, W multiples of 8)")
    p.add_argument("--fp16", action="store_true", help="write a float16 model")
    p.add_argument("--static", action="store_true", help="fixed input shape (default: dynamic)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the core's)")
    add_target_arguments(p)
    p.add_argument("--num-classes", type=int, default=21, help="unet, deeplab: output classes")
    p.add_argument("--base-channels", type=int, default=None,
                   help="first-level channels (default 64 for unet and the deeplab ResNet stem, "
                   "32 for vae-decoder)")
    p.add_argument("--depth", type=int, default=None,
                   help="unet: levels including the bottom (default 5); deeplab: ResNet depth, "
                   "50 or 101 (default 101)")
    p.add_argument("--backbone-weights", type=Path, default=None,
                   help="deeplab: a torchvision-layout resnet50/101 or deeplabv3 checkpoint "
                   "(.safetensors, .pt) for the backbone (and ASPP), see load_backbone")
    p.add_argument("--latent-dim", type=int, default=128, help="vae-decoder: size of z")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.add_argument("--pretrained", default=None,
                   help="sr: a trained model shipped with pixeldcn, by name (sr-x2-pixel_dcl, "
                   "sr-x2-dcl, sr-x4-pixel_dcl, sr-x4-dcl); --up and sizes come from its card")
    _add_io_arguments(p)
    add_image_limit_arguments(p)
    p.set_defaults(func=handler)


def _check_calibration_files(calibration: str | None) -> None:
    """Every picture and .npy of a --calibration folder within the bound, checked by header
    before the (slow) export starts; the rest of the checks happen while calibrating."""
    if calibration is None or calibration == "photos" or not Path(calibration).is_dir():
        return
    from pixeldcn_core.images import IMAGE_SUFFIXES, check_input

    for f in sorted(Path(calibration).iterdir()):
        if f.is_file() and f.suffix.lower() in (*IMAGE_SUFFIXES, ".webp", ".npy"):
            check_input(f, what="--calibration")


def _parse_shape(text: str) -> tuple[int, ...]:
    parts = text.split(",") if "," in text else text.split("x")  # 1,3,256,256 or 1x3x256x256
    try:
        shape = tuple(int(v) for v in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise SpecError(
            f"--input-shape: got {text!r}, expected positive integers separated by commas, "
            "e.g. 1,3,256,256"
        )
    return shape


def _stage(i: int, n: int, text: str) -> float:
    print(f"[{i}/{n}] {text}", flush=True)
    return time.perf_counter()


def handler(args: argparse.Namespace) -> int:
    """Run ``pixeldcn export``; returns the exit code (errors raise PixelDCNError)."""
    kind = get_kind(args.up).name  # UnknownKindError lists the valid kinds
    if args.out.suffix.lower() != ".onnx":
        raise SpecError(f"--out: got {str(args.out)!r}, expected a path ending in .onnx")
    shape = _parse_shape(args.input_shape) if args.input_shape else None
    _check_calibration_files(args.calibration)  # before torch is imported
    options = _export_options(args)  # usage errors before anything is built
    _check_int8_args(args.int8, args.calibration, args.fp16)

    from exporters.pytorch import architecture, export_onnx, load_weights, verify

    arch = architecture(args.arch)  # SpecError lists the registered architectures
    if args.backbone_weights is not None and args.arch != "deeplab":
        raise SpecError(f"--backbone-weights: only for --arch deeplab, got --arch {args.arch}")
    if args.pretrained is not None and args.arch != "sr":
        raise SpecError(f"--pretrained: only for --arch sr, got --arch {args.arch}")
    if args.depth is not None and args.arch not in _DEPTH_ARCHS:
        raise SpecError(f"--depth: not an option of --arch {args.arch}")
    steps = 3 + bool(args.weights) + bool(args.backbone_weights)
    step = 1
    what = f"pretrained {args.pretrained}" if args.pretrained else f"up={kind}"
    t0 = _stage(step, steps, f"building {args.arch} ({what})")
    arch_options = {name: getattr(args, flag) for name, flag in _FLAGS.items()
                    if name in arch.options and getattr(args, flag) is not None}
    if args.pretrained is not None:
        from exporters.pytorch import load_pretrained

        model = load_pretrained(args.pretrained)  # SpecError lists the shipped names
        kind = model.up_kind
        default_shape: tuple[int, ...] = (1, model.channels, 128, 128)
    else:
        model = arch.make(kind, up_kernel_size=args.up_kernel_size, **arch_options)
        default_shape = arch.example_input(arch.resolve(**arch_options))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"      {type(model).__name__}: {n_params / 1e6:.2f} M parameters")
    shape = shape or default_shape
    if args.backbone_weights:
        from exporters.pytorch import load_backbone

        step += 1
        _stage(step, steps, f"loading the backbone {args.backbone_weights}")
        print("      " + str(load_backbone(model, args.backbone_weights)).replace("\n", "\n      "))
    if args.weights:
        step += 1
        _stage(step, steps, f"loading weights {args.weights}")
        if args.arch == "vae-decoder":
            _load_decoder(model, args.weights, kind, args.up_kernel_size,
                          arch.resolve(**arch_options))
        else:
            load_weights(model, args.weights)
    step += 1
    t1 = _stage(step, steps, f"exporting to {args.out} (input {list(shape)}, "
                f"{'static' if args.static else 'dynamic batch/height/width'}, "
                f"{'float16' if args.fp16 else 'float32'})")
    io_active = options.processes_io or args.int8
    if args.int8:
        path = _export_int8(model, args.out, shape, args.calibration, options)
    else:
        path = export_onnx(model, args.out, shape, verbose=True,
                           options=options.replace(verify=io_active and options.verify))
    size = path.stat().st_size / 2**20
    print(f"      wrote {path} ({size:.1f} MiB) in {time.perf_counter() - t1:.1f} s")
    step += 1
    if args.no_verify:
        _stage(step, steps, "verification skipped (--no-verify)")
    else:
        _stage(step, steps, "verifying against PyTorch with onnxruntime")
        if io_active:  # done inside export_onnx: float model vs PyTorch, I/O vs float + numpy
            print("      verified while exporting (see above)")
        else:
            verify(model, path)
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def _load_decoder(decoder: Any, path: Path, kind: str, k: int | None,
                  options: dict[str, Any]) -> None:
    """A VAE decoder checkpoint may hold the whole VAE or only the decoder."""
    from exporters.pytorch import VAE, load_weights, read_checkpoint

    if any(key.startswith("decoder.") for key in read_checkpoint(path)):
        vae = VAE(options["latent_dim"], options["base_channels"], kind, up_kernel_size=k,
                  image_channels=options["image_channels"])
        load_weights(vae, path)  # all or nothing, then the decoder's part
        decoder.load_state_dict(vae.decoder.state_dict())
    else:
        load_weights(decoder, path)


# -- options: in-graph I/O, int8; parsed into ExportOptions and plain values ---------------------
def _add_io_arguments(p: argparse.ArgumentParser) -> None:
    """``--input``, ``--output``, ``--mean``, ``--std`` of ``pixeldcn export``."""
    formats = ("float32", *(f"uint8-{layout}" for layout in INPUT_LAYOUTS))
    p.add_argument("--input", dest="io_input", default="float32", choices=formats,
                   help="what the served model takes: float32 NCHW (default) or uint8 images "
                   "normalised in the graph (uint8-nhwc: as cameras and PIL give them)")
    p.add_argument("--output", dest="io_output", default="logits",
                   choices=[o.replace("_", "-") for o in OUTPUTS],
                   help="what it answers: logits (default), probabilities, mask (class index "
                   "per pixel, uint8 up to 256 classes) or uint8-image (image-to-image models)")
    p.add_argument("--mean", default=None,
                   help="with --input uint8-*: per-channel mean in 0..1, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", default=None,
                   help="with --input uint8-*: per-channel std in 0..1, e.g. 0.229,0.224,0.225")
    p.add_argument("--int8", action="store_true",
                   help="write a statically quantised int8 (QDQ) model, calibrated on "
                   "--calibration; prints its agreement with float32 and both latencies")
    p.add_argument("--calibration", default=None, metavar="DIR|photos",
                   help="with --int8: a folder of images (or .npy float inputs), or 'photos' "
                   "(scikit-image's photographs; held-out ones measure the agreement)")


def _floats(flag: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        from exporters.pytorch._errors import ExportOptionsError

        raise ExportOptionsError(f"{flag}: got {text!r}, expected numbers separated by commas, "
                                 "e.g. 0.485,0.456,0.406")
    return values


def _export_options(args: argparse.Namespace) -> Any:
    """The :class:`ExportOptions` of parsed ``pixeldcn export`` arguments (checked)."""
    from exporters.pytorch._errors import ExportOptionsError
    from exporters.pytorch._options import ExportOptions

    mean, std = _floats("--mean", args.mean), _floats("--std", args.std)
    if args.io_input == "float32" and (mean is not None or std is not None):
        raise ExportOptionsError("--mean/--std: given, but --input is float32; they normalise "
                                 "uint8 input only (add --input uint8-nhwc)")
    return ExportOptions(dynamic=not args.static, opset=args.opset, fp16=args.fp16,
                         verify=not args.no_verify, interleave=args.interleave, target=args.target,
                         input_format=args.io_input, output=args.io_output, mean=mean, std=std)


def _check_int8_args(int8: bool, calibration: str | None, fp16: bool) -> None:
    """Refuse bad ``--int8`` / ``--calibration`` combinations before anything is exported."""
    from exporters.pytorch._errors import ExportOptionsError

    if calibration is not None and not int8:
        raise ExportOptionsError("--calibration: given without --int8; add --int8 to quantise")
    if not int8:
        return
    if calibration is None:
        raise ExportOptionsError("--int8: needs calibration data: --calibration DIR (images or "
                                 ".npy inputs) or --calibration photos (scikit-image's photographs)")
    if fp16:
        raise ExportOptionsError("--int8: cannot be combined with --fp16 (quantise the float32 "
                                 "model)")
    if calibration != "photos" and not Path(calibration).is_dir():
        raise ExportOptionsError(f"--calibration: got {calibration!r}, which is not a folder; "
                                 "expected a folder of images or .npy inputs, or 'photos'")


def _export_int8(model: Any, out: Path, shape: tuple[int, ...], calibration: str,
                 options: Any) -> Path:
    """``pixeldcn export --int8``: export float32 (verified against PyTorch) to a private temp
    folder, quantise it into ``out``, add the I/O options, print the agreement report."""
    import tempfile

    from exporters.pytorch._export import export_onnx
    from exporters.pytorch._int8 import export_int8

    float_options = options.replace(input_format="float32", output="logits", mean=None, std=None)
    with tempfile.TemporaryDirectory(prefix="pixeldcn-int8-") as tmp:
        float_path = export_onnx(model, Path(tmp) / "float32.onnx", shape, options=float_options,
                                 verbose=True)
        print(f"      quantising to int8 (QDQ), calibration: {calibration}", flush=True)
        path, report = export_int8(float_path, out, calibration, shape, options)
    if report is not None:
        print(f"      {report}")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m exporters.cli_export ARGS``: ``pixeldcn export`` without the entry points."""
    return run_command(register, "export", argv)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
