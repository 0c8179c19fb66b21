"""Fixed bilinear x2 up-sampling (PyTorch ``interpolate(scale_factor=2, mode="bilinear",
align_corners=False)``): no weights, the channels kept (an optional bias aside).

Along each axis, output ``2i`` is ``0.25 x[i-1] + 0.75 x[i]`` and output ``2i + 1`` is
``0.75 x[i] + 0.25 x[i+1]``, the edges replicated: a fixed separable 2-tap stencil per phase.
Two ONNX forms, both with dynamic H and W:

- ``efficient``: ``Pad(mode="edge")`` by 1, one depthwise ``Conv`` whose four 3 x 3 kernels per
  channel are the outer products of those stencils (output channel ``4c + 2a + b`` is channel
  ``c`` at phase ``(a, b)``), then ``DepthToSpace(mode="CRD")``. No Resize.
- ``faithful``: ``Resize(mode="linear", coordinate_transformation_mode="half_pixel")``.

:func:`emit_bilinear_x2` and :func:`emit_resize_x2` are shared with ``bilinear_conv`` and
``bilinear_additive``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import reference as ref
from .._builder import GraphBuilder
from .._specs import KindInfo, LayerSpec, register_kind
from ._ops import add_bias, int64_const

__all__ = ["emit_bilinear_x2", "emit_resize_x2", "phase_stencils"]

#: Along one axis, the taps on ``x[i-1], x[i], x[i+1]`` of output ``2i + a`` (phase ``a``).
_TAPS = {0: (0.25, 0.75, 0.0), 1: (0.0, 0.75, 0.25)}


def phase_stencils() -> np.ndarray:
    """``[4, 3, 3]``: the 2-D stencil of phase ``(a, b)`` at index ``2a + b`` on the 3 x 3
    neighbourhood of ``x[i, j]`` (four non-zero taps each, summing to 1)."""
    return np.stack([np.outer(_TAPS[a], _TAPS[b]) for a in (0, 1) for b in (0, 1)])


def emit_bilinear_x2(b: GraphBuilder, x: str, channels: int, *, group_in: int = 1,
                     bias: np.ndarray | None = None) -> str:
    """Bilinear x2 of ``x [N, channels, H, W]`` as Pad(edge) + grouped Conv + DepthToSpace(CRD).

    With ``group_in > 1`` each group of ``group_in`` consecutive input channels is summed too
    (the Conv has ``channels / group_in`` groups): ``[N, channels / group_in, 2H, 2W]``.
    ``bias`` (one per output channel) rides on the Conv.
    """
    groups = channels // group_in
    w = np.repeat(phase_stencils()[:, None], group_in, axis=1)  # [4, group_in, 3, 3]
    w = np.tile(w, (groups, 1, 1, 1))  # [4 * groups, group_in, 3, 3]: channel 4c + 2a + b
    pads = int64_const(b, [0, 0, 1, 1, 0, 0, 1, 1], "pads")
    padded = b.op("Pad", [x, pads], {"mode": "edge"})  # (N, channels, H + 2, W + 2)
    inputs = [padded, b.initializer(w, "bilinear")]
    if bias is not None:
        inputs.append(b.initializer(np.repeat(bias, 4), "b"))
    z = b.op("Conv", inputs, {"group": groups, "kernel_shape": [3, 3], "pads": [0, 0, 0, 0],
                              "strides": [1, 1]})  # (N, 4 * groups, H, W)
    return b.op("DepthToSpace", [z], {"blocksize": 2, "mode": "CRD"})


def emit_resize_x2(b: GraphBuilder, x: str) -> str:
    """``Resize`` bilinear x2, half-pixel centres (PyTorch's align_corners=False)."""
    scales = b.initializer(np.array([1, 1, 2, 2], dtype=np.float32), "scales", cast=False)
    return b.op("Resize", [x, "", scales],
                {"mode": "linear", "coordinate_transformation_mode": "half_pixel"})


def bilinear_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Pad(edge) + depthwise Conv of the four phase stencils + DepthToSpace(CRD)."""
    return emit_bilinear_x2(b, x, spec.in_channels, bias=w.get("bias"))


def bilinear_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Resize(linear, half_pixel) x2 (+ bias)."""
    return add_bias(b, emit_resize_x2(b, x), w.get("bias"))


register_kind(KindInfo(
    name="bilinear",
    title="bilinear x2 (fixed, align_corners=False)",
    default_kernel=1,
    min_kernel=1,
    max_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {},
    # Four output pixels per input pixel, four non-zero taps each.
    macs_per_input_pixel=lambda cin, c, k: 16 * cin,
    reference=ref.bilinear,
    emitters={"efficient": bilinear_efficient, "faithful": bilinear_faithful},
    in_per_out=1,
    aliases=("bilinear_x2", "bilinear_upsample"),
    paper="bilinear interpolation, PyTorch interpolate(mode='bilinear', align_corners=False)",
))
