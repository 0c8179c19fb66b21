"""Fold a per-channel affine map (an eval-mode BatchNorm) into an up-sampling layer's weights.

Numpy only, in the core's weight layout. ``y' = scale * y + shift`` per output channel. Each kind
says how through its registry entry's ``fold`` (:data:`pixeldcn_core.KindInfo.fold`), written in
the kind's module (:mod:`pixeldcn_core.kinds`):

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

import numpy as np

from ._errors import WeightError
from ._specs import LayerSpec, get_kind

__all__ = ["MIN_SCALE", "batchnorm_affine", "fold_affine", "fold_out_channels"]

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
    """A conv ``weight [C, Cin, k, k]`` (output channels first): scale each output channel's
    kernel. The ``fold`` of any kind whose one weight is such a conv (``resize_conv``)."""
    return {"weight": w["weight"] * s[:, None, None, None]}


def fold_affine(
    kind: str, weights: Mapping[str, np.ndarray], scale: np.ndarray, shift: np.ndarray
) -> dict[str, np.ndarray] | None:
    """Weights (float32) of the layer ``scale * layer(x) + shift`` (per output channel), or
    ``None`` when the kind cannot absorb it exactly (no ``fold`` in its registry entry, or a pixel
    kind with a zero scale).

    Raises:
        WeightError: the weights do not fit the kind, or ``scale``/``shift`` are not ``[C]``.
    """
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
