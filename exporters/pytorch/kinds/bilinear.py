"""Fixed bilinear x2 up-sampling (no weights): :func:`bilinear2d`, :class:`Bilinear2d`."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from .._base import UpsampleLayer, add_bias, check_input
from .._registry import register_module

__all__ = ["Bilinear2d", "bilinear2d"]


def bilinear2d(x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear x2 up-sampling, ``align_corners=False`` (edges replicated).

    Args:
        x (Tensor[batch_size, channels, in_height, in_width]): input.
        bias (Tensor[channels], optional).

    Returns:
        Tensor[batch_size, channels, 2 * in_height, 2 * in_width]
    """
    y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return add_bias(y, bias)


@register_module
class Bilinear2d(UpsampleLayer):
    """Fixed bilinear x2: ``x [N, C, H, W] -> y [N, C, 2H, 2W]``; no weights, optional bias.

    ``out_channels`` must equal ``in_channels`` (``None`` takes it); ``kernel_size`` is 1 (no
    kernel). Exported without Resize (Pad + depthwise Conv + DepthToSpace).
    """

    kind = "bilinear"
    function = staticmethod(bilinear2d)
    param_names: ClassVar[dict[str, str]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, "Bilinear2d")
        return bilinear2d(x, self.bias)
