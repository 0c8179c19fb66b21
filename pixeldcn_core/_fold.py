"""Fold a per-channel affine map (an eval-mode BatchNorm) into an up-sampling layer's weights.

Numpy only, in the core's weight layout. ``y' = scale * y + shift`` per output channel. Each kind
says how through its registry entry's ``fold`` (:data:`pixeldcn_core.KindInfo.fold`):

- ``dcl``, ``resize_conv``, ``subpixel_conv`` are linear in their weight per output channel, so
  the output channel's kernels are scaled.
- ``pixel_dcl`` and ``ipixel_dcl`` feed their own outputs F1, F2 back into later convs. Scaling
  F1 and F2 by ``scale`` means the convs that read them divide by the scale of the channel they
  read: ``w2'[o, i] = scale[o] / scale[i] * w2[o, i]`` and likewise for w3. Exact when no scale
  is zero; those folds return ``None`` when one is (too) small, and the caller keeps the affine
  map as Mul + Add instead.

The bias always becomes ``scale * bias + shift`` (:func:`fold_affine` adds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ._errors import WeightError

if TYPE_CHECKING:
    from ._specs import LayerSpec

__all__ = [
    "MIN_SCALE",
    "batchnorm_affine",
    "fold_affine",
    "fold_dcl",
    "fold_ipixel_dcl",
    "fold_out_channels",
    "fold_pixel_dcl",
    "fold_subpixel_conv",
]

#: Smallest |scale| the pixel kinds fold (they divide by it).
MIN_SCALE = 1e-6

W = Mapping[str, np.ndarray]


def batchnorm_affine(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as ``scale * x + shift`` (float64)."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return scale, shift


def fold_out_channels(spec: LayerSpec, w: W, s: np.ndarray) -> dict[str, np.ndarray]:
    """A conv ``weight [C, Cin, k, k]``: scale each output channel's kernel."""
    return {"weight": w["weight"] * s[:, None, None, None]}


def fold_dcl(spec: LayerSpec, w: W, s: np.ndarray) -> dict[str, np.ndarray]:
    """ConvTranspose ``weight [Cin, C, k, k]``: output channels are axis 1."""
    return {"weight": w["weight"] * s[None, :, None, None]}


def fold_subpixel_conv(spec: LayerSpec, w: W, s: np.ndarray) -> dict[str, np.ndarray]:
    """``weight [4C, Cin, k, k]``: row ``4c + p`` feeds output channel c."""
    return {"weight": w["weight"] * np.repeat(s, 4)[:, None, None, None]}


def fold_pixel_dcl(spec: LayerSpec, w: W, s: np.ndarray) -> dict[str, np.ndarray] | None:
    if np.any(np.abs(s) < MIN_SCALE):
        return None
    ratio = s[:, None] / s[None, :]  # (C_out, C_in): scale[o] / scale[i]
    return {
        "w1": w["w1"] * s[:, None, None, None],
        "w2": w["w2"] * ratio[:, :, None, None],
        "w3": w["w3"] * ratio[:, :, None, None],
    }


def fold_ipixel_dcl(spec: LayerSpec, w: W, s: np.ndarray) -> dict[str, np.ndarray] | None:
    """w2 reads [x, F1]; w3 reads [x, F1, F2] and writes [F3, F4] (both scaled by s)."""
    if np.any(np.abs(s) < MIN_SCALE):
        return None
    cin, c = spec.in_channels, spec.out_channels
    ratio = s[:, None] / s[None, :]
    w2 = np.array(w["w2"], copy=True)
    w2[:, :cin] *= s[:, None, None, None]
    w2[:, cin:] *= ratio[:, :, None, None]
    s2 = np.concatenate([s, s])
    ratio2 = s2[:, None] / s[None, :]  # (2C, C)
    w3 = np.array(w["w3"], copy=True)
    w3[:, :cin] *= s2[:, None, None, None]
    w3[:, cin : cin + c] *= ratio2[:, :, None, None]
    w3[:, cin + c :] *= ratio2[:, :, None, None]
    return {"w1": w["w1"] * s[:, None, None, None], "w2": w2, "w3": w3}


def fold_affine(
    kind: str, weights: Mapping[str, np.ndarray], scale: np.ndarray, shift: np.ndarray
) -> dict[str, np.ndarray] | None:
    """Weights (float32) of the layer ``scale * layer(x) + shift`` (per output channel), or
    ``None`` when the kind cannot absorb it exactly (no ``fold`` in its registry entry, or a pixel
    kind with a zero scale).

    Raises:
        WeightError: the weights do not fit the kind, or ``scale``/``shift`` are not ``[C]``.
    """
    from ._specs import LayerSpec, get_kind

    if get_kind(kind).fold is None:  # nothing to fold into (a kind without weights, say)
        return None
    spec = LayerSpec.from_weights(kind, weights)
    w = {k: np.asarray(v, np.float64) for k, v in spec.check_weights(weights).items()}
    s = np.asarray(scale, np.float64).reshape(-1)
    t = np.asarray(shift, np.float64).reshape(-1)
    c = spec.out_channels
    if s.shape != (c,) or t.shape != (c,):
        raise WeightError(f"scale and shift must have shape ({c},), got {s.shape} and {t.shape}")
    fold = spec.info.fold
    out = None if fold is None else fold(spec, w, s)
    if out is None:
        return None
    out = dict(out)
    out["bias"] = s * w.get("bias", np.zeros(c)) + t
    return {k: v.astype(np.float32) for k, v in out.items()}
