"""Kind name -> module class and functional form; the factory the networks and converters use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pixeldcn_core import get_kind, layer_kinds

from ._base import UpsampleLayer
from ._dcl import DCL2d, dcl2d
from ._ipixel_dcl import IPixelDCL2d, ipixel_dcl2d
from ._pixel_dcl import PixelDCL2d, pixel_dcl2d
from ._resize_conv import ResizeConv2d, resize_conv2d
from ._subpixel_conv import SubPixelConv2d, subpixel_conv2d

__all__ = ["FUNCTIONS", "MODULES", "make_layer"]

#: Every registered kind -> its ``nn.Module`` class.
MODULES: dict[str, type[UpsampleLayer]] = {
    "dcl": DCL2d,
    "pixel_dcl": PixelDCL2d,
    "ipixel_dcl": IPixelDCL2d,
    "resize_conv": ResizeConv2d,
    "subpixel_conv": SubPixelConv2d,
}

#: Every registered kind -> its functional form ``f(x, *weights, bias=None)``, weights in the
#: order of :meth:`pixeldcn_core.LayerSpec.weight_shapes`.
FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "dcl": dcl2d,
    "pixel_dcl": pixel_dcl2d,
    "ipixel_dcl": ipixel_dcl2d,
    "resize_conv": resize_conv2d,
    "subpixel_conv": subpixel_conv2d,
}

_missing = set(layer_kinds()) ^ set(MODULES)
if _missing:  # pragma: no cover - caught by the registry test as well
    raise ImportError(f"exporters.pytorch has no module for kinds {sorted(_missing)}")


def make_layer(
    kind: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int | None = None,
    bias: bool = False,
    **kwargs: Any,
) -> UpsampleLayer:
    """Build an up-sampling layer by kind name (aliases such as ``"PixelDCL"`` accepted).

    Raises:
        UnknownKindError: ``kind`` is not registered; the message lists the valid kinds.
        SpecError: channels or kernel size are invalid for the kind.
    """
    info = get_kind(kind)
    k = info.default_kernel if kernel_size is None else kernel_size
    return MODULES[info.name](in_channels, out_channels, k, bias, **kwargs)
