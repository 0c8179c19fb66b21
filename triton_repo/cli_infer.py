"""``pixeldcn infer``: send one picture or array to a served model.

Registered in the ``pixeldcn.commands`` entry-point group. Nothing heavy is imported until the
command runs. Pictures and ``.npy`` inputs are read through :mod:`pixeldcn_core.images` (their
declared size is checked against one bound before anything is decoded).
``python -m triton_repo.cli_infer ARGS`` runs it without the entry points.

Exit codes: 0 success, 1 server or runtime failure, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from pixeldcn_core.cli import add_image_limit_arguments, finite_float, run_command

__all__ = ["load_input", "main", "register", "save_output"]


def register(subparsers: Any) -> None:
    """Add the ``infer`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    infer = subparsers.add_parser(
        "infer",
        help="send one image or array to a served model",
        description=(
            "Send INPUT to MODEL on a Triton server. A PNG/JPEG becomes float32 [1, C, H, W] in "
            "[0, 1] (C from the model: 1 grey, 3 RGB, 4 RGBA); a .npy is sent as it is "
            "([C, H, W] or [N, C, H, W]). The output goes to --output: .npy saves the array; "
            ".png saves a clipped image for 1 or 3 channels and an argmax colour mask otherwise."
        ),
    )
    infer.add_argument(
        "--url", required=True,
        help="server address host:port, as pixeldcn serve prints it (gRPC by default); several, "
        "separated by commas, are replicas of one server (the request goes to one that answers)",
    )  # fmt: skip
    infer.add_argument("--model", required=True, help="model name")
    infer.add_argument("--input", required=True, type=pathlib.Path, help="image (.png, .jpg) or array (.npy)")
    infer.add_argument(
        "--output", type=pathlib.Path, default=None, help="out.npy or out.png (default: summary)"
    )
    infer.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    infer.add_argument("--timeout", type=finite_float, default=60.0, help="seconds per request")
    add_image_limit_arguments(infer)
    infer.set_defaults(func=_infer)


def load_input(path: pathlib.Path, channels: int | None) -> Any:
    """An image as float32 ``[1, C, H, W]`` in [0, 1], or a ``.npy`` array unchanged (both
    bounded by :func:`pixeldcn_core.images.image_limits`, checked before decoding)."""
    import numpy as np

    from pixeldcn_core.images import IMAGE_SUFFIXES, load_npy, read_image

    from ._errors import InferenceInputError

    suffix = path.suffix.lower()
    if suffix == ".npy":
        return load_npy(path, what="--input")
    if suffix not in IMAGE_SUFFIXES:
        raise InferenceInputError(
            f"--input {path.name!r} has suffix {suffix!r}; expected .npy or one of {IMAGE_SUFFIXES}"
        )
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise InferenceInputError(
            f"the model takes {channels} channels; an image input needs 1, 3 or 4 (send a .npy)"
        )
    pixels = read_image(path, modes[channels], what="--input").astype(np.float32) / 255.0  # (H, W, C)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])  # (1, C, H, W)


def save_output(y: Any, path: pathlib.Path) -> list[pathlib.Path]:
    """Save ``y`` ([N, K, H, W] or [K, H, W]) as .npy, or as PNG(s): image or argmax mask."""
    import numpy as np

    from pixeldcn_core.images import voc_palette

    from ._errors import InferenceInputError

    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, y)
        return [path]
    if suffix != ".png":
        raise InferenceInputError(f"--output {path.name!r}; expected a .npy or .png file")
    batch = y if y.ndim == 4 else y[None]  # (N, K, H, W)
    if batch.ndim != 4:
        raise InferenceInputError(f"output has shape {list(y.shape)}; a PNG needs [N, K, H, W]")
    try:
        from PIL import Image
    except ImportError as exc:
        raise InferenceInputError("writing a .png needs Pillow: pip install pillow") from exc
    written = []
    for i, sample in enumerate(batch):
        if sample.shape[0] in (1, 3):
            pixels = np.clip(sample.astype(np.float32), 0.0, 1.0).transpose(1, 2, 0)  # (H, W, K)
            pixels = np.round(pixels * 255).astype(np.uint8)
            image = Image.fromarray(pixels[:, :, 0] if sample.shape[0] == 1 else pixels)
        else:
            labels = sample.argmax(axis=0)  # (H, W)
            image = Image.fromarray(voc_palette(sample.shape[0])[labels])  # (H, W, 3)
        target = path if len(batch) == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")
        image.save(target)
        written.append(target)
    return written


def _size_hint(x: Any) -> str:
    """What to say when the server refuses an image whose sides are not multiples of 16: networks
    that down-sample need H and W to be multiples of their size multiple (a U-Net of depth 5: 16;
    DeepLab-ResNet: 8); onnxruntime says only that a Concat's dimensions differ."""
    if getattr(x, "ndim", 0) != 4:
        return ""
    h, w = int(x.shape[2]), int(x.shape[3])
    if h % 16 == 0 and w % 16 == 0:
        return ""
    return (f"the server refused the {w}x{h} input: networks that down-sample need each side to "
            "be a multiple of their size multiple (the U-Net of depth 5: 16, DeepLab-ResNet: 8); "
            "resize or crop the picture to a multiple of 16")


def _infer(args: argparse.Namespace) -> int:
    from pixeldcn_core.images import IMAGE_SUFFIXES, check_input

    from ._errors import InferenceInputError, ServerError, ServerUnavailableError
    from ._replicas import connect

    if args.input.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"):
        check_input(args.input, what="--input")  # refused before connecting, nothing decoded
    try:
        client = connect(args.url, args.model, protocol=args.protocol, timeout=args.timeout)
        info = client.info()
    except ServerUnavailableError as err:
        raise type(err)(f"{err} (pixeldcn serve prints the {args.protocol} address it listens on: "
                        f"pass that to --url, or start it with --{args.protocol}-port)") from None
    channel_axis = 1 if info.max_batch_size > 0 else 0
    channels = info.shape[channel_axis] if len(info.shape) > channel_axis else None
    x = load_input(args.input, channels if channels and channels > 0 else None)
    try:
        y = client.infer(x)
    except ServerError as err:
        hint = _size_hint(x)
        if not hint:
            raise
        raise InferenceInputError(f"{hint} (the server said: {err})") from None
    if args.output is None:
        print(
            f"{info.output_name}: shape {list(y.shape)} dtype {y.dtype} "
            f"min {float(y.min()):.6g} max {float(y.max()):.6g}"
        )
    else:
        for written in save_output(y, args.output):
            print(f"wrote {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m triton_repo.cli_infer ARGS``: ``pixeldcn infer`` without the entry points."""
    return run_command(register, "infer", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
