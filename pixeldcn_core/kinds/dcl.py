"""DCL, the baseline deconvolution: TF ``conv2d_transpose(stride=2, padding='SAME')``.

``x [N, Cin, H, W]`` -> ``y [N, C, 2H, 2W]``; ``weight [Cin, C, k, k]`` (PyTorch ConvTranspose2d
layout). Reference: :func:`pixeldcn_core.reference.dcl`. One form: a ConvTranspose whatever the
interleave (the kind does not interleave phases).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import reference as ref
from .._specs import KindInfo, register_kind
from ._ops import int64_const

if TYPE_CHECKING:
    from .._builder import GraphBuilder
    from .._specs import LayerSpec

__all__ = ["INFO", "dcl_efficient", "fold_dcl"]


def dcl_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """One ConvTranspose with TF 'SAME' pads whatever ``interleave``."""
    k = spec.k
    begin, end = ref.dcl_padding(k)
    inputs = [x, b.initializer(w["weight"], "w")]
    if w.get("bias") is not None:
        inputs.append(b.initializer(w["bias"], "b"))
    if begin == end or b.target.asymmetric_conv_transpose:
        # Output size 2(H-1) + k - begin - end = 2H: TF 'SAME', including the asymmetric k = 3.
        return b.op(
            "ConvTranspose",
            inputs,
            {"kernel_shape": [k, k], "strides": [2, 2], "pads": [begin, begin, end, end]},
        )
    # The target lacks asymmetric pads: pad ``begin`` on both sides (2H + end - begin rows and
    # columns), then drop the last ``end - begin``.
    full = b.op("ConvTranspose", inputs,
                {"kernel_shape": [k, k], "strides": [2, 2], "pads": [begin] * 4})
    cut = end - begin
    return b.op("Slice", [full, int64_const(b, [0, 0], "starts"),
                          int64_const(b, [-cut, -cut], "ends"), int64_const(b, [2, 3], "axes")])


def fold_dcl(spec: LayerSpec, w: Mapping[str, np.ndarray], s: np.ndarray) -> dict[str, np.ndarray]:
    """ConvTranspose ``weight [Cin, C, k, k]``: output channels are axis 1."""
    return {"weight": w["weight"] * s[None, :, None, None]}


def _channels(shape: tuple[int, ...]) -> tuple[int, int]:
    return shape[0], shape[1]  # [Cin, C, k, k]


def _fan_in(name: str, shape: tuple[int, ...]) -> int:
    # Each output pixel of a stride-2 transposed conv receives about k^2 / 4 taps per input channel.
    return shape[0] * shape[2] ** 2 // 4


INFO = register_kind(KindInfo(
    name="dcl",
    title="deconvolution (transposed conv, TF 'SAME')",
    default_kernel=6,
    min_kernel=2,
    odd_kernel=False,
    weight_shapes=lambda cin, c, k: {"weight": (cin, c, k, k)},
    macs_per_input_pixel=lambda cin, c, k: cin * c * k * k,
    reference=ref.dcl,
    emitters={"efficient": dcl_efficient},
    channels=_channels,
    fold=fold_dcl,
    fan_in=_fan_in,
    # He stays the default: "bilinear" trained better on SR x4 and the x4 decoder, but not on
    # SR x2 at k = 3 and 4 (`pixeldcn bench quality`, 3 seeds).
    inits=("default", "bilinear"),
    aliases=("deconv", "deconvolution", "conv_transpose"),
    paper="the baseline: TF conv2d_transpose, stride 2, 'SAME'",
))
