"""Regular deconvolution with TensorFlow 'SAME' output size: :func:`dcl2d` and :class:`DCL2d`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core.reference import dcl_padding

from .._base import UpsampleLayer, check_input
from .._inits import dcl_bilinear_
from .._registry import register_module

__all__ = ["DCL2d", "dcl2d"]


def dcl2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Stride-2 transposed conv equal to TF ``conv2d_transpose(..., padding='SAME')``.

    The full transposed conv has ``2(H-1) + k`` rows; 'SAME' keeps ``[begin, begin + 2H)`` with
    ``(begin, end) = dcl_padding(k)``: (2, 2) for k = 6, (1, 1) for k = 4, (0, 1) for k = 3.
    ``padding=begin`` crops ``begin`` on both sides, leaving ``2H + end - begin`` rows; the slice
    drops the extra last row of the asymmetric case (odd k).

    Args:
        x (Tensor[batch_size, in_channels, in_height, in_width]): input.
        weight (Tensor[in_channels, out_channels, k, k]): ConvTranspose2d layout.
        bias (Tensor[out_channels], optional).

    Returns:
        Tensor[batch_size, out_channels, 2 * in_height, 2 * in_width]
    """
    begin, end = dcl_padding(int(weight.shape[-1]))
    y = F.conv_transpose2d(x, weight, bias, stride=2, padding=begin)  # (N, C, 2H+e-b, 2W+e-b)
    if end != begin:
        y = y[:, :, : 2 * x.shape[2], : 2 * x.shape[3]]  # (N, C, 2H, 2W)
    return y


@register_module
class DCL2d(UpsampleLayer):
    """Deconvolution (the baseline): ``x [N, Cin, H, W] -> y [N, C, 2H, 2W]``, TF 'SAME'.

    Parameters: ``weight [Cin, C, k, k]`` (as ``nn.ConvTranspose2d``), ``bias [C]``.

    Initialisation (``init``): ``"default"``, He normal with fan_in = Cin * k^2 / 4, the number of
    weights reaching one output pixel of a stride-2 transposed conv (each output phase sees a
    quarter of the taps); or ``"bilinear"``, bilinear interpolation then a He-random
    ``(k-2) x (k-2)`` conv, which starts the layer free of checkerboard artifacts (see
    ``exporters.pytorch._inits``).

    Args:
        in_channels: Cin.
        out_channels: C.
        kernel_size: k >= 2 (default 6, as in the paper's experiments).
        bias: add a learnable per-channel bias.
        init: one of :attr:`inits` (``None``: the first).
    """

    kind = "dcl"
    function = staticmethod(dcl2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "DCL2d")
        return dcl2d(x, self.weight, self.bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init == "bilinear":
            dcl_bilinear_(self.weight)
            if self.bias is not None:
                self.bias.zero_()
        else:
            super().reset_parameters()  # fan_in = Cin * k^2 / 4 (the registry's)

    @classmethod
    def from_deconv(cls, old: nn.ConvTranspose2d, **kwargs: Any) -> tuple[UpsampleLayer, str]:
        """Keeps the deconvolution's (square) kernel size unless ``kernel_size`` is given, and its
        weights when it already computes the same function (padding ``dcl_padding(k)``)."""
        ks = tuple(old.kernel_size)
        if "kernel_size" not in kwargs and ks[0] == ks[1]:
            kwargs = {**kwargs, "kernel_size": ks[0]}
        layer, note = super().from_deconv(old, **kwargs)
        assert isinstance(layer, DCL2d)
        pad = tuple(old.padding)
        if layer.kernel_size == ks[0] == ks[1] and dcl_padding(ks[0])[0] == pad[0] == pad[1]:
            with torch.no_grad():
                layer.weight.copy_(old.weight)
                if old.bias is not None and layer.bias is not None:
                    layer.bias.copy_(old.bias)
            note = "weights copied (same function)"
        return layer, note
