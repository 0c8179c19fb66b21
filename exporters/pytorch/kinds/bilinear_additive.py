"""Bilinear additive up-sampling (Wojna et al. 2017): :func:`bilinear_additive2d`,
:class:`BilinearAdditive2d`."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from .._base import UpsampleLayer, add_bias, check_input
from .._registry import register_module

__all__ = ["BilinearAdditive2d", "bilinear_additive2d"]


def bilinear_additive2d(x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear x2 (align_corners=False), then each group of 4 consecutive channels summed.

    The sum is taken first, at input resolution (both steps are linear and per channel, so the
    result is the same, with a quarter of the interpolation work).

    Args:
        x (Tensor[batch_size, 4 * channels, in_height, in_width]): input.
        bias (Tensor[channels], optional).

    Returns:
        Tensor[batch_size, channels, 2 * in_height, 2 * in_width]
    """
    n, c4, h, w = x.shape
    summed = x.reshape(n, c4 // 4, 4, h, w).sum(dim=2)
    y = F.interpolate(summed, scale_factor=2, mode="bilinear", align_corners=False)
    return add_bias(y, bias)


@register_module
class BilinearAdditive2d(UpsampleLayer):
    """Bilinear additive up-sampling: ``x [N, 4C, H, W] -> y [N, C, 2H, 2W]``; no weights,
    optional bias. ``in_channels`` must be ``4 * out_channels`` (``out_channels=None`` derives
    it); ``kernel_size`` is 1 (no kernel)."""

    kind = "bilinear_additive"
    function = staticmethod(bilinear_additive2d)
    param_names: ClassVar[dict[str, str]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, "BilinearAdditive2d")
        return bilinear_additive2d(x, self.bias)
