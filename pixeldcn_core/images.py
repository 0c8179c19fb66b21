"""Bounded reading of pictures and arrays (public API): the one loader of every command.

Every ``pixeldcn`` command that reads a picture or a ``.npy`` array from the user (``quality
--image``, ``demo --image``, ``infer --input``, ``export --int8 --calibration``) reads it here, so
that one bound holds everywhere and is checked *before* anything is decoded:

- a picture's width and height come from its header (Pillow opens files lazily), so a 79 kB PNG
  that declares 9000 x 9000 pixels is refused without allocating them;
- a ``.npy`` file's shape and dtype come from its header (:mod:`numpy.lib.format`), so a file that
  declares terabytes is refused without reading it; object arrays (which need pickle) are refused.

The bound (:class:`ImageLimits`): at most :data:`DEFAULT_MAX_PIXELS` pixels and
:data:`DEFAULT_MAX_BYTES` decoded bytes, unless the environment (:data:`ENV_MAX_PIXELS`,
:data:`ENV_MAX_BYTES`) or :func:`set_limits` (the ``--max-image-pixels`` / ``--max-image-bytes``
flags) says otherwise. Errors are :class:`ImageError`: one line naming the file, what it declares
and the bound.

Pillow is imported inside the functions that need it: the core itself stays numpy + onnx only.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputShapeError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ENV_MAX_BYTES",
    "ENV_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageError",
    "ImageLimits",
    "check_input",
    "image_limits",
    "load_npy",
    "open_image",
    "read_image",
    "set_limits",
    "voc_palette",
]

#: Pixels a picture may declare: 2**25 = 33.5 M (8192 x 4096; a 24 Mpixel camera photo fits).
DEFAULT_MAX_PIXELS = 2**25
#: Bytes a picture (width x height x bytes per pixel of its mode) or a .npy array may decode to.
DEFAULT_MAX_BYTES = 2**28  # 256 MiB
ENV_MAX_PIXELS = "PIXELDCN_MAX_IMAGE_PIXELS"
ENV_MAX_BYTES = "PIXELDCN_MAX_IMAGE_BYTES"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Bytes per pixel of Pillow's modes; any other mode counts 4 bytes per band.
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
               "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4, "I;16": 2,
               "I;16B": 2, "I;16L": 2, "I;16N": 2}


class ImageError(InputShapeError):
    """A picture or array that is missing, unreadable, or over the size bound."""


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """The most a picture or array may declare before it is decoded.

    Attributes:
        max_pixels: width x height of a picture.
        max_bytes: decoded bytes: width x height x bytes per pixel of the picture's mode, or the
            size of a ``.npy`` array's data.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImageError(f"{name}: got {value!r}, expected a positive integer")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ImageLimits:
        """The limits :data:`ENV_MAX_PIXELS` and :data:`ENV_MAX_BYTES` ask for (defaults else)."""
        env = os.environ if environ is None else environ
        values = {}
        for name, var in (("max_pixels", ENV_MAX_PIXELS), ("max_bytes", ENV_MAX_BYTES)):
            text = env.get(var, "").strip()
            if text:
                values[name] = parse_count(text, var)
        return cls(**values)


def parse_count(text: str, what: str) -> int:
    """A positive integer from ``text`` (``1000000``, ``1_000_000`` or ``1e6``)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise ImageError(f"{what}: got {text!r}, expected a positive integer such as 50000000")
    return int(value)


_override: ImageLimits | None = None
_pillow_lock = threading.Lock()


def set_limits(max_pixels: int | None = None, max_bytes: int | None = None) -> ImageLimits:
    """Set this process's limits (what the ``--max-image-*`` flags do); ``None`` keeps the
    environment's or the default, and ``set_limits()`` drops any earlier setting. Returns the
    limits now in force."""
    global _override
    _override = None
    if max_pixels is not None or max_bytes is not None:
        base = ImageLimits.from_env()
        _override = ImageLimits(max_pixels if max_pixels is not None else base.max_pixels,
                                max_bytes if max_bytes is not None else base.max_bytes)
    return image_limits()


def image_limits() -> ImageLimits:
    """The limits in force: :func:`set_limits`'s, else the environment's, else the defaults."""
    return _override if _override is not None else ImageLimits.from_env()


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImageError("reading pictures needs Pillow: pip install pillow") from exc
    return Image


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise ImageError(f"{what}: {str(path)!r} {state}; expected a file")


def open_image(path: str | os.PathLike[str], *, what: str = "image",
               limits: ImageLimits | None = None) -> Any:
    """Open a picture, check what its header declares against ``limits``, then decode it.

    Args:
        path: the picture (any format Pillow reads).
        what: how the message names it, e.g. ``"--image"``.
        limits: default :func:`image_limits`.

    Returns:
        The decoded ``PIL.Image.Image`` (first frame).

    Raises:
        ImageError: missing, not a picture, truncated, or over the bound (refused before decoding).
    """
    image_mod = _pillow()
    p = Path(path)
    _check_file(p, what)
    lim = limits or image_limits()
    with _pillow_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
        saved = image_mod.MAX_IMAGE_PIXELS
        image_mod.MAX_IMAGE_PIXELS = None  # open reads the header only; the bound is checked below
        try:
            im = image_mod.open(p)  # reads the header only
        except image_mod.DecompressionBombError:
            raise _too_many_pixels(p, what, None, lim) from None
        except Exception as err:  # UnidentifiedImageError, OSError, SyntaxError, struct.error...
            raise _unreadable(p, what, err) from None
        finally:
            image_mod.MAX_IMAGE_PIXELS = saved
    try:
        _check_declared(im, p, what, lim)
        im.load()
    except ImageError:
        im.close()
        raise
    except Exception as err:  # a truncated or corrupt file fails while decoding
        im.close()
        raise _unreadable(p, what, err) from None
    return im


def _check_declared(im: Any, p: Path, what: str, lim: ImageLimits) -> None:
    w, h = im.size
    if w * h > lim.max_pixels:
        raise _too_many_pixels(p, what, (w, h), lim)
    per_pixel = _MODE_BYTES.get(im.mode, 4 * len(im.getbands()))
    if w * h * per_pixel > lim.max_bytes:
        raise ImageError(f"{what}: {p.name} declares {w}x{h} {im.mode} pixels = "
                         f"{w * h * per_pixel:,} bytes decoded, over the bound of {lim.max_bytes:,} "
                         f"(raise it with --max-image-bytes or {ENV_MAX_BYTES})")


def _too_many_pixels(p: Path, what: str, size: tuple[int, int] | None,
                     lim: ImageLimits) -> ImageError:
    declared = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "more pixels"
    return ImageError(f"{what}: {p.name} declares {declared}, over the bound of "
                      f"{lim.max_pixels:,} pixels (raise it with --max-image-pixels or "
                      f"{ENV_MAX_PIXELS})")


def _unreadable(p: Path, what: str, err: BaseException) -> ImageError:
    detail = (str(err).splitlines() or [""])[0].replace(str(p), p.name).replace(f"'{p.name}'", "")
    detail = detail.replace("cannot identify image file", "unknown format").strip()[:160]
    return ImageError(f"{what}: {p.name} is not an image Pillow can read ({type(err).__name__}"
                      f"{': ' + detail if detail else ''}); expected PNG, JPEG, BMP or TIFF")


def read_image(path: str | os.PathLike[str], mode: str | None = None, *, what: str = "image",
               limits: ImageLimits | None = None) -> np.ndarray:
    """A picture as ``uint8 [H, W, C]`` (or the file's own dtype for 16-bit and float modes).

    Args:
        mode: Pillow mode to convert to (``"L"``, ``"RGB"``, ``"RGBA"``); ``None`` keeps the file's.
        what, limits: as for :func:`open_image`.
    """
    with open_image(path, what=what, limits=limits) as im:
        try:
            arr = np.asarray(im.convert(mode) if mode and im.mode != mode else im)
        except Exception as err:  # a mode Pillow cannot convert
            raise _unreadable(Path(path), what, err) from None
    return arr[:, :, None] if arr.ndim == 2 else arr  # (H, W, C)


def load_npy(path: str | os.PathLike[str], *, what: str = "array",
             limits: ImageLimits | None = None) -> np.ndarray:
    """A ``.npy`` array, its header checked against ``limits.max_bytes`` before the data is read.

    Raises:
        ImageError: missing, not a .npy file, an object array (would need pickle), truncated, or
            declaring more bytes than the bound.
    """
    p = Path(path)
    _npy_header(p, what, limits or image_limits())
    try:
        return np.load(p, allow_pickle=False)
    except Exception as err:
        raise ImageError(f"{what}: {p.name} could not be read ({type(err).__name__}: "
                         f"{(str(err).splitlines() or [''])[0][:160]})") from None


def _npy_header(p: Path, what: str, lim: ImageLimits) -> None:
    """Refuse a .npy file by its header: not .npy, object dtype, over the bound, truncated."""
    from numpy.lib import format as npy_format

    _check_file(p, what)
    try:
        with open(p, "rb") as f:
            version = npy_format.read_magic(f)
            read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                           else npy_format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            data_start = f.tell()
    except Exception as err:  # not a .npy file, a bad header
        detail = (str(err).splitlines() or [""])[0][:160]
        raise ImageError(f"{what}: {p.name} is not a .npy array ({type(err).__name__}: "
                         f"{detail})") from None
    if dtype.hasobject:
        raise ImageError(f"{what}: {p.name} holds Python objects ({dtype}); expected a numeric "
                         "array (object arrays need pickle, which is never loaded)")
    nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
    if nbytes > lim.max_bytes:
        raise ImageError(f"{what}: {p.name} declares {dtype} {list(shape)} = {nbytes:,} bytes, "
                         f"over the bound of {lim.max_bytes:,} (raise it with --max-image-bytes or "
                         f"{ENV_MAX_BYTES})")
    if p.stat().st_size < data_start + nbytes:
        raise ImageError(f"{what}: {p.name} declares {dtype} {list(shape)} but is truncated "
                         f"({p.stat().st_size} bytes, expected {data_start + nbytes})")


def check_input(path: str | os.PathLike[str], *, what: str = "input",
                limits: ImageLimits | None = None) -> None:
    """Check a picture or ``.npy`` file's header against ``limits`` without decoding it, so a
    command refuses a bad input before its slow steps (export, server start) run.

    Raises:
        ImageError: as :func:`open_image` / :func:`load_npy` would, for the header's part.
    """
    p = Path(path)
    if p.suffix.lower() == ".npy":
        _npy_header(p, what, limits or image_limits())
        return
    image_mod = _pillow()
    _check_file(p, what)
    lim = limits or image_limits()
    with _pillow_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
        saved = image_mod.MAX_IMAGE_PIXELS
        image_mod.MAX_IMAGE_PIXELS = None  # the header only; the bound is checked below
        try:
            im = image_mod.open(p)
        except image_mod.DecompressionBombError:
            raise _too_many_pixels(p, what, None, lim) from None
        except Exception as err:
            raise _unreadable(p, what, err) from None
        finally:
            image_mod.MAX_IMAGE_PIXELS = saved
    with im:
        _check_declared(im, p, what, lim)


def voc_palette(n: int) -> np.ndarray:
    """The PASCAL VOC colour map, ``uint8 [n, 3]``: class c gets the colour whose bits
    interleave those of c (``pixeldcn infer`` and the demo colour masks with it)."""
    colours = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        r = g = b = 0
        label = c
        for bit in range(8):
            r |= ((label >> 0) & 1) << (7 - bit)
            g |= ((label >> 1) & 1) << (7 - bit)
            b |= ((label >> 2) & 1) << (7 - bit)
            label >>= 3
        colours[c] = (r, g, b)
    return colours
