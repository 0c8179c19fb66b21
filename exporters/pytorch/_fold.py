"""Fold a per-channel affine map (an eval-mode BatchNorm) into an up-sampling layer's weights.

Numpy only, in the core's weight layout. ``y' = scale * y + shift`` per output channel:

- ``dcl``, ``resize_conv``, ``subpixel_conv`` are linear in their weight per output channel, so
  the output channel's kernels are scaled and ``bias' = scale * bias + shift``.
- ``pixel_dcl`` and ``ipixel_dcl`` feed their own outputs F1, F2 back into later convs. Scaling
  F1 and F2 by ``scale`` means the convs that read them divide by the scale of the channel they
  read: ``w2'[o, i] = scale[o] / scale[i] * w2[o, i]`` and likewise for w3. Exact when no scale
  is zero; :func:`fold_affine` returns ``None`` when one is (too) small, and the caller keeps the
  affine map as Mul + Add instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pixeldcn_core import LayerSpec, WeightError

__all__ = ["batchnorm_affine", "fold_affine"]

#: Smallest |scale| the pixel kinds fold (they divide by it).
MIN_SCALE = 1e-6


def batchnorm_affine(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as ``scale * x + shift`` (float64)."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return scale, shift


def fold_affine(
    kind: str, weights: Mapping[str, np.ndarray], scale: np.ndarray, shift: np.ndarray
) -> dict[str, np.ndarray] | None:
    """Weights of the layer ``scale * layer(x) + shift`` (per output channel), or ``None`` when
    the kind cannot absorb it exactly (a pixel kind with a zero scale)."""
    spec = LayerSpec.from_weights(kind, weights)
    w = {k: np.asarray(v, np.float64) for k, v in spec.check_weights(weights).items()}
    s = np.asarray(scale, np.float64).reshape(-1)
    t = np.asarray(shift, np.float64).reshape(-1)
    c, cin = spec.out_channels, spec.in_channels
    if s.shape != (c,) or t.shape != (c,):
        raise WeightError(f"scale and shift must have shape ({c},), got {s.shape} and {t.shape}")
    out: dict[str, np.ndarray]
    if spec.kind == "dcl":
        out = {"weight": w["weight"] * s[None, :, None, None]}
    elif spec.kind == "resize_conv":
        out = {"weight": w["weight"] * s[:, None, None, None]}
    elif spec.kind == "subpixel_conv":
        out = {"weight": w["weight"] * np.repeat(s, 4)[:, None, None, None]}  # row 4c + p <- c
    elif spec.kind in ("pixel_dcl", "ipixel_dcl"):
        if np.any(np.abs(s) < MIN_SCALE):
            return None
        ratio = s[:, None] / s[None, :]  # (C_out, C_in): scale[o] / scale[i]
        if spec.kind == "pixel_dcl":
            out = {
                "w1": w["w1"] * s[:, None, None, None],
                "w2": w["w2"] * ratio[:, :, None, None],
                "w3": w["w3"] * ratio[:, :, None, None],
            }
        else:
            # w2 reads [x, F1]; w3 reads [x, F1, F2] and writes [F3, F4] (both scaled by s).
            w2 = w["w2"].copy()
            w2[:, :cin] *= s[:, None, None, None]
            w2[:, cin:] *= ratio[:, :, None, None]
            s2 = np.concatenate([s, s])
            ratio2 = s2[:, None] / s[None, :]  # (2C, C)
            w3 = w["w3"].copy()
            w3[:, :cin] *= s2[:, None, None, None]
            w3[:, cin : cin + c] *= ratio2[:, :, None, None]
            w3[:, cin + c :] *= ratio2[:, :, None, None]
            out = {"w1": w["w1"] * s[:, None, None, None], "w2": w2, "w3": w3}
    else:  # a new kind: not foldable until taught here
        return None
    out["bias"] = s * w.get("bias", np.zeros(c)) + t
    return {k: v.astype(np.float32) for k, v in out.items()}
