"""Sub-pixel convolution (conv to 4C, then pixel shuffle; Shi et al.) with ICNR initialisation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pixeldcn_core import SpecError

from .._base import UpsampleLayer, add_bias, check_input, kaiming_normal_
from .._registry import register_module

__all__ = ["SubPixelConv2d", "icnr_", "subpixel_conv2d"]


def subpixel_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """One 'same' conv to ``4C`` channels, then ``pixel_shuffle(2)`` (DepthToSpace CRD): output
    channel ``c`` at phase ``(a, b)`` is conv channel ``4c + 2a + b``.

    Args:
        x (Tensor[batch_size, in_channels, in_height, in_width]): input.
        weight (Tensor[4 * out_channels, in_channels, k, k]): in ``pixel_shuffle`` order, k odd.
        bias (Tensor[out_channels], optional): added to every output pixel.

    Returns:
        Tensor[batch_size, out_channels, 2 * in_height, 2 * in_width]
    """
    z = F.conv2d(x, weight, padding=int(weight.shape[-1]) // 2)  # (N, 4C, H, W)
    return add_bias(F.pixel_shuffle(z, 2), bias)  # (N, C, 2H, 2W)


@torch.no_grad()
def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR (Aitken et al. 2017), as fastai's ``PixelShuffle_ICNR``: He-initialise one kernel per
    output channel and repeat it for the ``scale**2`` phases, so the layer starts as conv followed
    by nearest-neighbour up-sampling (no checkerboard). ``weight [scale^2 C, Cin, k, k]`` in
    ``pixel_shuffle`` order: rows ``4c .. 4c + 3`` all get kernel ``c``."""
    n = scale * scale
    c4, cin, kh, kw = weight.shape
    base = kaiming_normal_(weight.new_empty(c4 // n, cin, kh, kw), cin * kh * kw)
    return weight.copy_(base.repeat_interleave(n, dim=0))  # (C, ...) -> (4C, ...), 4c + p <- c


@register_module
class SubPixelConv2d(UpsampleLayer):
    """Sub-pixel convolution: ``x [N, Cin, H, W] -> y [N, C, 2H, 2W]``.

    Parameters: ``weight [4C, Cin, k, k]`` in ``pixel_shuffle`` channel order (weights trained with
    ``nn.Conv2d`` + ``nn.PixelShuffle(2)`` map over unchanged), ``bias [C]``.

    Initialisation (``init``): ``"icnr"`` (default) or ``"default"``, plain He normal (fan_in =
    Cin * k^2). ``icnr=False`` is the older spelling of ``init="default"``.

    Args:
        in_channels: Cin.
        out_channels: C.
        kernel_size: odd k (default 3).
        bias: add a learnable per-channel bias.
        icnr: initialise with ICNR (``False``: ``init="default"``); ignored when ``init`` is given.
        init: one of :attr:`inits` (``None``: ``"icnr"`` unless ``icnr=False``).
    """

    kind = "subpixel_conv"
    function = staticmethod(subpixel_conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "SubPixelConv2d")
        return subpixel_conv2d(x, self.weight, self.bias)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | None = None,
        bias: bool = False,
        icnr: bool = True,
        *,
        init: str | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if not isinstance(icnr, bool):
            raise SpecError(f"icnr must be a bool, got {icnr!r}")
        if init is None and not icnr:
            init = "default"
        super().__init__(in_channels, out_channels, kernel_size, bias, init=init,
                         device=device, dtype=dtype)

    @property
    def icnr(self) -> bool:
        return self.init == "icnr"

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.icnr:
            icnr_(self.weight)
            if self.bias is not None:
                self.bias.zero_()
        else:
            super().reset_parameters()  # fan_in = Cin * k^2
