"""Resize-convolution (Odena et al. 2016): nearest-neighbour x2, then a 'same' k x k conv.

``x [N, Cin, H, W]`` -> ``y [N, C, 2H, 2W]``; ``weight [C, Cin, k, k]``, k odd (reference:
:func:`pixeldcn_core.reference.resize_conv`). Efficient form: each output phase is one conv at
input resolution whose kernel sums the taps that read the same input pixel
(:func:`resize_conv_phase_kernel`), interleaved. Faithful form: Resize then the conv at 2H x 2W.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import reference as ref
from .._fold import fold_out_channels
from .._specs import KindInfo, register_kind
from ._ops import conv, interleave_phases, same_pads

if TYPE_CHECKING:
    from .._builder import GraphBuilder
    from .._specs import LayerSpec

__all__ = ["INFO", "resize_conv_efficient", "resize_conv_faithful", "resize_conv_phase_kernel"]


def resize_conv_phase_kernel(w: np.ndarray, a: int, bb: int) -> tuple[np.ndarray, list[int]]:
    """Phase ``(a, bb)`` of nearest-x2-then-conv as one conv at input resolution.

    ``y[2i+a, 2j+b] = sum_rc w[r, c] . x[i + floor((a+r-p)/2), j + floor((b+c-p)/2)]``: taps that
    read the same input pixel add up. Returns the summed kernel and its ONNX pads.
    """
    k = w.shape[2]
    p = k // 2
    rows = [(a + r - p) // 2 for r in range(k)]
    cols = [(bb + c - p) // 2 for c in range(k)]
    r0, c0 = min(rows), min(cols)
    sub = np.zeros(
        (w.shape[0], w.shape[1], max(rows) - r0 + 1, max(cols) - c0 + 1), dtype=np.float64
    )
    for r in range(k):
        for c in range(k):
            sub[:, :, rows[r] - r0, cols[c] - c0] += w[:, :, r, c]
    return sub.astype(w.dtype), [-r0, -c0, max(rows), max(cols)]


def resize_conv_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Resize(nearest, x2) then the k x k conv at 2H x 2W."""
    bias = w.get("bias")
    scales = b.initializer(np.array([1, 1, 2, 2], dtype=np.float32), "scales", cast=False)
    up = b.op(
        "Resize",
        [x, "", scales],
        {"mode": "nearest", "nearest_mode": "floor",
         "coordinate_transformation_mode": "asymmetric"},
    )  # (N, Cin, 2H, 2W)
    return conv(b, up, w["weight"], same_pads(spec.k), bias)


def resize_conv_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Each phase one conv at input resolution with the summed sub-kernel, interleaved."""
    bias = w.get("bias")
    phases = []
    for a in (0, 1):
        for bb in (0, 1):
            sub, pads = resize_conv_phase_kernel(w["weight"], a, bb)
            phases.append(conv(b, x, sub, pads, bias))
    return interleave_phases(b, phases, interleave)


INFO = register_kind(KindInfo(
    name="resize_conv",
    title="resize-convolution (nearest x2 + conv)",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"weight": (c, cin, k, k)},
    # Nearest x2 then a k x k conv: each output phase is a ((k+1)/2)^2-tap conv at input
    # resolution (the k x k taps that read the same input pixel add up).
    macs_per_input_pixel=lambda cin, c, k: 4 * cin * c * ((k + 1) // 2) ** 2,
    reference=ref.resize_conv,
    emitters={"efficient": resize_conv_efficient, "faithful": resize_conv_faithful},
    interleaves=True,
    fold=fold_out_channels,
    aliases=("resize", "upsample_conv"),
    paper="Odena et al. 2016, Deconvolution and Checkerboard Artifacts",
))
