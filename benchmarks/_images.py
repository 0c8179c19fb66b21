"""Photographs and image metrics of the quality benchmark: lossless pictures only.

The photographs are scikit-image's PNG files (:data:`PHOTOS`, each cited). JPEG is refused: its
8x8 block grid puts energy at multiples of 1/8 cycle per pixel, which include the x2 and x4
aliasing frequencies the checkerboard index measures, so a JPEG's own blocking would be scored as
(or hide) an up-sampler's artifact. :data:`HELD_OUT` is never trained on. SciPy's ``face`` is not
used: ``scipy.datasets`` downloads it on first use, and the benchmark must run offline.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import checkerboard_index

from ._errors import BenchmarkUsageError

__all__ = [
    "HELD_OUT",
    "PHOTOS",
    "TRAIN",
    "crop_box",
    "decode_crop",
    "degrade",
    "encode_crop",
    "eval_images",
    "indices",
    "interpolate",
    "photo",
    "photo_file",
    "psnr_ssim",
    "training_pool",
]

#: scikit-image photographs (all PNG files of ``skimage.data``), with source and licence.
PHOTOS: dict[str, str] = {
    "astronaut": "Eileen Collins, NASA (NASA Great Images database), public domain",
    "coffee": "coffee cup, photograph by Rachel Michetti, CC0",
    "motorcycle_left": "Middlebury 2014 stereo benchmark 'Motorcycle', left view (Nesic, "
                       "Westling, Wang, Kitajima, Krathwohl, Scharstein), as scikit-image ships it",
    "camera": "'camera', photograph by Lav Varshney, CC0",
    "chelsea": "Chelsea the cat, photograph by Stefan van der Walt, CC0",
    "coins": "Greek coins from Pompeii, Brooklyn Museum collection, no known copyright restrictions",
    "brick": "brick wall, CC0Textures 'Bricks25', CC0",
    "gravel": "gravel, CC0Textures 'Gravel04', CC0",
    "grass": "grass, DeviantArt 'Grass-01' by linolafett, CC0",
}
#: Photographs used for evaluation only, never trained on. (The right view of the stereo pair
#: is not used at all: it shows the same scene as the held-out left one.)
HELD_OUT = ("astronaut", "coffee", "motorcycle_left")
#: The training photographs.
TRAIN = tuple(n for n in PHOTOS if n not in HELD_OUT)
#: Photographs of earlier runs, still readable so that the cards of the shipped models (trained
#: on them) can be checked again; not used by the benchmark (``rocket`` and
#: ``hubble_deep_field`` are JPEG files).
LEGACY_PHOTOS: dict[str, str] = {
    "rocket": "launch of DSCOVR on Falcon 9, SpaceX, released into the public domain",
    "hubble_deep_field": "Hubble eXtreme Deep Field, NASA, public domain",
}


def photo_file(name: str) -> Path:
    """The file of ``skimage.data`` behind photograph ``name``."""
    import skimage.data

    return Path(skimage.data.__file__).parent / f"{name}.png"


def _load(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


@cache
def photo(name: str) -> np.ndarray:
    """A scikit-image photograph as float64 luminance in [0, 1], ``(H, W)``."""
    from skimage.color import rgb2gray

    if name not in PHOTOS and name not in LEGACY_PHOTOS:
        raise BenchmarkUsageError(f"photo {name!r}: expected one of {', '.join(PHOTOS)}")
    im = _load(name)
    g = rgb2gray(im) if im.ndim == 3 else im.astype(np.float64) / 255.0
    return np.ascontiguousarray(g, dtype=np.float64)


def eval_images(side: int, names: Sequence[str] = HELD_OUT) -> dict[str, np.ndarray]:
    """The held-out photographs (or ``names``), centre-cropped to ``side`` x ``side`` at most
    (float32 ``(H, W)``, sides multiples of 4)."""
    out = {}
    for name in names:
        g = photo(name)
        s = min(side, g.shape[0] // 4 * 4, g.shape[1] // 4 * 4)
        top, left = (g.shape[0] - s) // 2, (g.shape[1] - s) // 2
        out[name] = g[top : top + s, left : left + s].astype(np.float32)
    return out


def degrade(hr: Any, scale: int) -> Any:
    """The low-resolution input: bicubic down-sampling with anti-aliasing (torch), clamped."""
    import torch.nn.functional as F

    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)


def interpolate(lr: Any, scale: int, mode: str) -> Any:
    """``lr`` up-sampled ``scale`` times by torch's ``mode`` (``bicubic``, ``bilinear``)."""
    import torch.nn.functional as F

    return F.interpolate(lr, scale_factor=scale, mode=mode, align_corners=False)


@lru_cache(maxsize=4)
def training_pool(patch: int, count: int, seed: int) -> np.ndarray:
    """``count`` random ``patch`` x ``patch`` crops (with flips) of the training photographs."""
    rng = np.random.default_rng(10_000 + seed)
    out = np.empty((count, 1, patch, patch), dtype=np.float32)
    for i in range(count):
        g = photo(TRAIN[i % len(TRAIN)])
        top = rng.integers(0, g.shape[0] - patch + 1)
        left = rng.integers(0, g.shape[1] - patch + 1)
        p = g[top : top + patch, left : left + patch]
        if rng.random() < 0.5:
            p = p[:, ::-1]
        if rng.random() < 0.5:
            p = p.T
        out[i, 0] = p
    return out


def psnr_ssim(out: np.ndarray, truth: np.ndarray, shave: int) -> tuple[float, float]:
    """PSNR (dB) and SSIM of two ``(H, W)`` images in [0, 1], ``shave`` border pixels dropped."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if shave:
        out, truth = out[shave:-shave, shave:-shave], truth[shave:-shave, shave:-shave]
    o, t = out.astype(np.float64), truth.astype(np.float64)
    return (float(peak_signal_noise_ratio(t, o, data_range=1.0)),
            float(structural_similarity(t, o, data_range=1.0)))


def indices(out: np.ndarray, truth: np.ndarray, scale: int) -> dict[str, float]:
    """Checkerboard index of an output and of its error (stride 2; stride 4 for x4 as well)."""
    res = {"index": checkerboard_index(out), "error_index": checkerboard_index(out - truth)}
    if scale >= 4:
        res["index_s4"] = checkerboard_index(out, 4, radius=1 / 16)
    return res


def crop_box(truth: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left of the ``side`` x ``side`` window (on a side/4 grid) with the most gradient energy
    in ``truth``: where up-sampling has the most to get right."""
    gy, gx = np.gradient(truth.astype(np.float64))
    energy = gy**2 + gx**2
    step = max(1, side // 4)
    best, box = -1.0, (0, 0)
    for top in range(0, truth.shape[0] - side + 1, step):
        for left in range(0, truth.shape[1] - side + 1, step):
            e = float(energy[top : top + side, left : left + side].sum())
            if e > best:
                best, box = e, (top, left)
    return box


def encode_crop(img: np.ndarray, box: tuple[int, int, int]) -> str:
    """The crop ``box = (top, left, side)`` of ``img`` in [0, 1] as base64 of its ``uint8``
    bytes, row-major ``side x side`` (see :func:`decode_crop`): compact in JSON."""
    top, left, side = box
    c = np.round(np.clip(img[top : top + side, left : left + side], 0, 1) * 255).astype(np.uint8)
    return base64.b64encode(np.ascontiguousarray(c).tobytes()).decode("ascii")


def decode_crop(data: str | list[list[int]]) -> np.ndarray:
    """A crop stored by :func:`encode_crop` (or as nested lists) as ``uint8 [side, side]``."""
    if isinstance(data, list):
        return np.asarray(data, dtype=np.uint8)
    flat = np.frombuffer(base64.b64decode(data), dtype=np.uint8)
    side = math.isqrt(flat.size)
    return flat.reshape(side, side)
