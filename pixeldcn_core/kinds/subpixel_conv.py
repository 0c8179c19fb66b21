"""Sub-pixel convolution (Shi et al. 2016, ESPCN): one conv to 4C channels, then pixel shuffle.

``x [N, Cin, H, W]`` -> ``y [N, C, 2H, 2W]``; ``weight [4C, Cin, k, k]`` in ``pixel_shuffle``
order, k odd (reference: :func:`pixeldcn_core.reference.subpixel_conv`). One form: a Conv and
``DepthToSpace(mode="CRD")`` whatever the interleave.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import reference as ref
from .._errors import WeightError
from .._specs import KindInfo, register_kind
from ._ops import conv, same_pads

if TYPE_CHECKING:
    from .._builder import GraphBuilder
    from .._specs import LayerSpec

__all__ = ["INFO", "fold_subpixel_conv", "subpixel_conv_efficient"]


def subpixel_conv_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """One conv to 4C channels, then DepthToSpace CRD (pixel shuffle) whatever ``interleave``."""
    bias = w.get("bias")
    # Conv channel 4c + 2a + b is output channel c at phase (a, b): pixel_shuffle's CRD order.
    z = conv(b, x, w["weight"], same_pads(spec.k), None if bias is None else np.repeat(bias, 4))
    return b.op("DepthToSpace", [z], {"blocksize": 2, "mode": "CRD"})


def fold_subpixel_conv(spec: LayerSpec, w: Mapping[str, np.ndarray], s: np.ndarray
                       ) -> dict[str, np.ndarray]:
    """``weight [4C, Cin, k, k]``: row ``4c + p`` feeds output channel c."""
    return {"weight": w["weight"] * np.repeat(s, 4)[:, None, None, None]}


def _channels(shape: tuple[int, ...]) -> tuple[int, int]:
    if shape[0] % 4:
        raise WeightError(
            f"subpixel_conv: weight.shape[0] must be 4*C (a multiple of 4), got {shape[0]}"
        )
    return shape[1], shape[0] // 4  # [4C, Cin, k, k]


INFO = register_kind(KindInfo(
    name="subpixel_conv",
    title="sub-pixel convolution (conv + pixel shuffle)",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"weight": (4 * c, cin, k, k)},
    macs_per_input_pixel=lambda cin, c, k: 4 * c * cin * k * k,
    reference=ref.subpixel_conv,
    emitters={"efficient": subpixel_conv_efficient},
    channels=_channels,
    fold=fold_subpixel_conv,
    inits=("icnr", "default"),
    aliases=("subpixel", "pixel_shuffle", "pixelshuffle"),
    paper="Shi et al. 2016 (ESPCN); ICNR init from Aitken et al. 2017",
))
