"""Bilinear resize-convolution: bilinear x2 (align_corners=False), then a k x k 'same' conv
(``weight [C, Cin, k, k]``, k odd, zero padding at 2H x 2W).

- ``efficient``: the bilinear x2 as Pad(edge) + depthwise Conv + DepthToSpace (no Resize, see
  :mod:`pixeldcn_core.kinds.bilinear`), then the conv.
- ``faithful``: ``Resize(mode="linear", half_pixel)``, then the conv.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import reference as ref
from .._builder import GraphBuilder
from .._specs import KindInfo, LayerSpec, register_kind
from ._ops import conv, same_pads
from .bilinear import emit_bilinear_x2, emit_resize_x2

__all__: list[str] = []


def _conv_same(b: GraphBuilder, x: str, w: np.ndarray, bias: np.ndarray | None) -> str:
    return conv(b, x, w, same_pads(int(w.shape[2])), bias)


def bilinear_conv_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    up = emit_bilinear_x2(b, x, spec.in_channels)
    return _conv_same(b, up, w["weight"], w.get("bias"))


def bilinear_conv_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    return _conv_same(b, emit_resize_x2(b, x), w["weight"], w.get("bias"))


def _fold(spec: LayerSpec, w: Mapping[str, np.ndarray], s: np.ndarray) -> dict[str, np.ndarray]:
    return {"weight": w["weight"] * s[:, None, None, None]}


register_kind(KindInfo(
    name="bilinear_conv",
    title="bilinear resize-convolution (bilinear x2 + conv)",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"weight": (c, cin, k, k)},
    # The bilinear stencil (16 taps per input pixel and channel), then the conv at 2H x 2W.
    macs_per_input_pixel=lambda cin, c, k: 16 * cin + 4 * k * k * cin * c,
    reference=ref.bilinear_conv,
    emitters={"efficient": bilinear_conv_efficient, "faithful": bilinear_conv_faithful},
    fold=_fold,
    # "identity": the conv starts as a copy of input channel c mod Cin (the layer then starts as
    # plain bilinear x2, artifact-free); He stays the default.
    inits=("default", "identity"),
    aliases=("bilinear_resize_conv",),
    paper="Odena et al. 2016 (resize-convolution), with bilinear instead of nearest",
))
