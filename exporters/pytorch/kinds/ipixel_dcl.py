"""iPixelDCL (Gao et al., Eqn. 2, F3 and F4 in parallel): :func:`ipixel_dcl2d`, :class:`IPixelDCL2d`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from .._base import UpsampleLayer, add_bias, check_input, interleave
from .._inits import ipixel_dcl_bilinear_
from .._registry import register_module

__all__ = ["IPixelDCL2d", "ipixel_dcl2d"]


def ipixel_dcl2d(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Input pixel deconvolution at input resolution.

    ``F1 = conv(x, w1)``; ``F2 = conv([x, F1], w2)``; ``F3, F4 = split(conv([x, F1, F2], w3))``;
    ``y00 = F1``, ``y01 = F4``, ``y10 = F3``, ``y11 = F2``.

    Args:
        x (Tensor[batch_size, in_channels, in_height, in_width]): input.
        w1 (Tensor[out_channels, in_channels, k, k]): kernel of F1.
        w2 (Tensor[out_channels, in_channels + out_channels, k, k]): kernel of F2.
        w3 (Tensor[2 * out_channels, in_channels + 2 * out_channels, k, k]): kernel of F3, F4.
        bias (Tensor[out_channels], optional): added to every output pixel.

    Returns:
        Tensor[batch_size, out_channels, 2 * in_height, 2 * in_width]
    """
    p = int(w1.shape[-1]) // 2
    c = int(w1.shape[0])
    f1 = F.conv2d(x, w1, padding=p)  # (N, C, H, W)
    f2 = F.conv2d(torch.cat([x, f1], dim=1), w2, padding=p)  # (N, C, H, W)
    f34 = F.conv2d(torch.cat([x, f1, f2], dim=1), w3, padding=p)  # (N, 2C, H, W)
    f3, f4 = f34[:, :c], f34[:, c:]
    return add_bias(interleave(f1, f4, f3, f2), bias)


@register_module
class IPixelDCL2d(UpsampleLayer):
    """iPixelDCL: ``x [N, Cin, H, W] -> y [N, C, 2H, 2W]``; every phase also sees the input.

    Parameters (state_dict keys): ``conv1.weight [C, Cin, k, k]`` (w1),
    ``conv2.weight [C, Cin + C, k, k]`` (w2), ``conv3.weight [2C, Cin + 2C, k, k]`` (w3),
    ``bias [C]``.

    Initialisation: ``init="bilinear"`` (the default): w1 He-random, w2 and w3 fixed averages of
    F1 so that the layer starts as a conv followed by exact bilinear x2 interpolation, free of
    checkerboard artifacts (see ``exporters.pytorch._inits``; it trained at least as well as He
    init in ``pixeldcn bench quality``). ``init="default"``: He normal, std = sqrt(2 / fan_in) with
    fan_in = input channels x k^2 of each kernel. Bias zero.

    Args:
        in_channels: Cin.
        out_channels: C.
        kernel_size: odd k (default 3).
        bias: add a learnable per-channel bias.
        init: one of :attr:`inits` (``None``: the first).
    """

    kind = "ipixel_dcl"
    function = staticmethod(ipixel_dcl2d)
    param_names: ClassVar[Mapping[str, str]] = {"w1": "conv1", "w2": "conv2", "w3": "conv3"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "IPixelDCL2d")
        return ipixel_dcl2d(x, self.conv1.weight, self.conv2.weight, self.conv3.weight, self.bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init == "bilinear":
            ipixel_dcl_bilinear_(self.conv1.weight, self.conv2.weight, self.conv3.weight)
            if self.bias is not None:
                self.bias.zero_()
        else:
            super().reset_parameters()  # fan_in = input channels x k^2 of each kernel
