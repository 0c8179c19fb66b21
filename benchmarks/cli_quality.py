"""``pixeldcn quality``: the checkerboard index of a model's output, next to bicubic up-sampling.

Runs any image model (an ONNX file in onnxruntime, or a model served by Triton) on one picture,
prints the checkerboard index (:func:`pixeldcn_core.checkerboard_index`) of its output beside that
of bicubic interpolation of the same picture to the output's size, and can save the index map
(:func:`pixeldcn_core.checkerboard_map`) as a PNG, so a user checks the model they are about to
deploy, whoever built it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import InputShapeError, SpecError, checkerboard_index, checkerboard_map
from pixeldcn_core.cli import add_image_limit_arguments, run_command

__all__ = ["main", "quality_of", "read_image", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "quality",
        help="checkerboard index of an image model's output, next to bicubic's",
        description=(__doc__ or "").split("\n\n")[1].replace("\n", " "),
        epilog="Exit codes: 0 done, 2 bad input (missing file, not an image, an image too "
               "small, a bad option), 1 a failure (e.g. a server that does not answer).")
    p.add_argument("model", nargs="?", default=None, help="an ONNX model file (or use --url)")
    p.add_argument("--image", required=True, help="a picture (PNG, JPEG, ...) to run the model on")
    p.add_argument("--stride", type=int, default=2,
                   help="the up-sampling factor whose artifacts are measured (default 2)")
    p.add_argument("--out", default=None, help="save the index map of the output as this PNG")
    p.add_argument("--url", default=None, help="HOST:PORT of a Triton server (gRPC; with --model)")
    p.add_argument("--model", dest="served", default=None, help="name of the served model")
    p.add_argument("--protocol", default="grpc", choices=("grpc", "http"),
                   help="protocol of --url (default grpc)")
    add_image_limit_arguments(p)
    p.set_defaults(func=handler)


def read_image(path: str | Path, channels: int | None) -> np.ndarray:
    """A picture as float32 ``[C, H, W]`` in [0, 1] (luminance when ``channels`` is 1).

    Read through :func:`pixeldcn_core.images.read_image`: the size its header declares is checked
    against the one bound before anything is decoded.

    Raises:
        InputShapeError: (an ``ImageError``) the file is missing, is not an image Pillow can
            read, or is over the bound.
    """
    from pixeldcn_core.images import read_image as read_bounded

    arr = read_bounded(path, "L" if channels == 1 else "RGB", what="--image")  # (H, W, C) uint8
    return (arr.astype(np.float32) / 255.0).transpose(2, 0, 1)  # (C, H, W)


def _bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of ``[C, H, W]`` in [0, 1] to ``size = (H', W')`` (Pillow, per channel)."""
    from PIL import Image

    out = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize(
        (size[1], size[0]), Image.Resampling.BICUBIC)) for c in image]
    return np.stack(out).astype(np.float32)


class _OnnxModel:
    def __init__(self, path: str) -> None:
        p = Path(path)
        if not p.is_file():
            raise InputShapeError(f"model {str(p)!r} does not exist (expected an .onnx file)")
        import onnxruntime as ort

        try:
            self.sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for an unreadable model
            raise InputShapeError(f"model {p.name} is not an ONNX model onnxruntime can load: "
                                  f"{str(err).splitlines()[0][:200]}") from None
        inputs = self.sess.get_inputs()
        if len(inputs) != 1:
            raise InputShapeError(f"model {p.name} has {len(inputs)} inputs; expected one image")
        self.input = inputs[0]
        self.shape = [d if isinstance(d, int) else -1 for d in self.input.shape]
        self.name = p.name

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.sess.run(None, {self.input.name: x})[0])


class _ServedModel:
    def __init__(self, url: str, name: str, protocol: str) -> None:
        from triton_repo import Client

        self.client = Client(url, name, protocol=protocol)
        self.shape = list(self.client.info().shape)
        if self.client.info().max_batch_size > 0:
            self.shape = [-1, *self.shape] if len(self.shape) == 3 else self.shape
        self.name = f"{name} at {url}"

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.client.infer(x))


def _fit(image: np.ndarray, shape: list[int], name: str) -> np.ndarray:
    """Centre-crop ``image [C, H, W]`` to the model's fixed H, W; refuse a smaller image."""
    if len(shape) != 4:
        raise InputShapeError(f"model {name} takes input shape {shape}; expected an image "
                              "[N, C, H, W]")
    h, w = (d if d > 0 else None for d in shape[2:])
    ih, iw = image.shape[1:]
    if (h and ih < h) or (w and iw < w):
        raise InputShapeError(f"--image is {iw}x{ih} pixels, smaller than the model's input "
                              f"{w or iw}x{h or ih}; expected at least that size")
    top, left = ((ih - h) // 2 if h else 0), ((iw - w) // 2 if w else 0)
    return image[:, top : top + (h or ih), left : left + (w or iw)]


def quality_of(model: Any, image: np.ndarray, stride: int) -> dict[str, Any]:
    """Run ``model`` on ``image [C, H, W]``; the index of its output and of bicubic's."""
    x = _fit(image, model.shape, model.name)[None].astype(np.float32)  # (1, C, H, W)
    if min(x.shape[2:]) < 2 * stride:
        raise InputShapeError(f"--image is {x.shape[3]}x{x.shape[2]} pixels; expected each "
                              f"side >= 2 * stride = {2 * stride}")
    y = model.run(x)
    if y.ndim == 3:
        y = y[None]
    if y.ndim != 4:
        raise InputShapeError(f"model {model.name} returned shape {list(y.shape)}; expected an "
                              "image [N, C, H, W]")
    size = (int(y.shape[2]), int(y.shape[3]))
    reference = _bicubic(x[0], size)
    return {"input": list(x.shape), "output": list(y.shape),
            "index": checkerboard_index(y, stride), "bicubic_index": checkerboard_index(
                reference, stride), "map": checkerboard_map(y, stride)}


def _save_map(m: np.ndarray, path: str) -> Path:
    from PIL import Image

    from pixeldcn_core.io import write_bytes_atomic

    p = Path(path)
    if p.suffix.lower() != ".png":
        raise SpecError(f"--out: got {path!r}, expected a path ending in .png")
    import io

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(m, 0, 1) * 255).astype(np.uint8), mode="L").save(buf, "PNG")
    write_bytes_atomic(p, buf.getvalue())
    return p


def handler(args: argparse.Namespace) -> int:
    if isinstance(args.stride, bool) or args.stride < 2:
        raise SpecError(f"--stride must be an int >= 2, got {args.stride}")
    if args.out is not None and not str(args.out).lower().endswith(".png"):
        raise SpecError(f"--out: got {args.out!r}, expected a path ending in .png")
    if (args.model is None) == (args.url is None):
        raise SpecError("expected either MODEL.onnx or --url HOST:PORT --model NAME, not "
                        f"{'both' if args.model else 'neither'}")
    if args.url is not None and not args.served:
        raise SpecError("--url needs --model NAME (the served model)")
    from pixeldcn_core.images import check_input

    check_input(args.image, what="--image")  # the header only: refused before any decoding
    model: Any = (_OnnxModel(args.model) if args.model is not None
                  else _ServedModel(args.url, args.served, args.protocol))
    channels = model.shape[1] if len(model.shape) == 4 and model.shape[1] > 0 else None
    image = read_image(args.image, channels)
    res = quality_of(model, image, args.stride)
    print(f"model        {model.name}: input {res['input']} -> output {res['output']}")
    print(f"index        {res['index']:.4f}  (checkerboard index of the output, stride "
          f"{args.stride})")
    print(f"bicubic      {res['bicubic_index']:.4f}  (bicubic interpolation of the input to the "
          "output's size)")
    ratio = res["index"] / max(res["bicubic_index"], 1e-12)
    print(f"ratio        {ratio:.1f}x bicubic's" + ("  <- checkerboard artifacts"
                                                   if res["index"] > 0.05 and ratio > 5 else ""))
    if args.out:
        print(f"map          wrote {_save_map(res['map'], args.out)}")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.cli_quality ARGS``: ``pixeldcn quality`` without the entry points."""
    return run_command(register, "quality", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
