"""Bilinear resize-convolution (bilinear x2, then conv): :func:`bilinear_conv2d`,
:class:`BilinearConv2d`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._base import UpsampleLayer, check_input
from .._registry import register_module

__all__ = ["BilinearConv2d", "bilinear_conv2d"]


def bilinear_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Bilinear x2 up-sampling (align_corners=False) followed by a 'same' k x k conv.

    Args:
        x (Tensor[batch_size, in_channels, in_height, in_width]): input.
        weight (Tensor[out_channels, in_channels, k, k]): conv kernel, k odd.
        bias (Tensor[out_channels], optional).

    Returns:
        Tensor[batch_size, out_channels, 2 * in_height, 2 * in_width]
    """
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return F.conv2d(up, weight, bias, padding=int(weight.shape[-1]) // 2)


@register_module
class BilinearConv2d(UpsampleLayer):
    """Bilinear resize-convolution: ``x [N, Cin, H, W] -> y [N, C, 2H, 2W]``.

    Parameters: ``weight [C, Cin, k, k]``, ``bias [C]``. Initialisation: ``"default"``, He
    normal with fan_in = Cin * k^2; or ``"identity"``, output channel ``c`` copies input channel
    ``c mod Cin`` through the centre tap, so the layer starts as plain bilinear x2. Bias zero.
    """

    kind = "bilinear_conv"
    function = staticmethod(bilinear_conv2d)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init != "identity":
            super().reset_parameters()
            return
        c, cin, k, _ = self.weight.shape
        self.weight.zero_()
        for o in range(c):
            self.weight[o, o % cin, k // 2, k // 2] = 1.0
        if self.bias is not None:
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, "BilinearConv2d")
        return bilinear_conv2d(x, self.weight, self.bias)
