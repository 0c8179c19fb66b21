"""Bilinear additive up-sampling (Wojna et al. 2017, "The Devil is in the Decoder"): bilinear x2
(align_corners=False), then each group of 4 consecutive channels summed. No weights;
``x [N, 4C, H, W] -> y [N, C, 2H, 2W]``.

- ``efficient``: the sum and the bilinear stencils in one grouped Conv (C groups of 4 channels,
  four 3 x 3 phase kernels each) after Pad(edge), then DepthToSpace(CRD): the sum is done at
  input resolution (both are linear, so the order does not change the result).
- ``faithful``: the paper's order: ``Resize(mode="linear", half_pixel)``, then a grouped 1 x 1
  Conv of ones (the group sum) at 2H x 2W.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import reference as ref
from .._builder import GraphBuilder
from .._specs import KindInfo, LayerSpec, register_kind
from .bilinear import emit_bilinear_x2, emit_resize_x2

__all__: list[str] = []

GROUP = 4


def bilinear_additive_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    return emit_bilinear_x2(b, x, spec.in_channels, group_in=GROUP, bias=w.get("bias"))


def bilinear_additive_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    c = spec.out_channels
    up = emit_resize_x2(b, x)  # (N, 4C, 2H, 2W)
    inputs = [up, b.initializer(np.ones((c, GROUP, 1, 1), np.float32), "sum")]
    if w.get("bias") is not None:
        inputs.append(b.initializer(w["bias"], "b"))
    return b.op("Conv", inputs, {"group": c, "kernel_shape": [1, 1], "pads": [0, 0, 0, 0],
                                 "strides": [1, 1]})


register_kind(KindInfo(
    name="bilinear_additive",
    title="bilinear additive (bilinear x2 + sum of 4 channels)",
    default_kernel=1,
    min_kernel=1,
    max_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {},
    # Per input pixel and input channel: four output pixels, four non-zero taps each.
    macs_per_input_pixel=lambda cin, c, k: 16 * cin,
    reference=ref.bilinear_additive,
    emitters={"efficient": bilinear_additive_efficient, "faithful": bilinear_additive_faithful},
    in_per_out=GROUP,
    aliases=("bilinear_additive_upsampling", "bilinear_add"),
    paper="Wojna et al. 2017, The Devil is in the Decoder (bilinear additive up-sampling)",
))
