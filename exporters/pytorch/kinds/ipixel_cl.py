"""iPixelCL (the authors' ``ipixel_cl``): :func:`ipixel_cl2d`, :class:`IPixelCL2d`.

Unlike every other kind here it keeps the size: ``x [N, Cin, H, W]`` (H, W even) ->
``y [N, C, H, W]``. It is therefore not an x2 up-sampling layer: the U-Net, the VAE decoder,
DeepLab's decoder and :func:`convert_deconvs` refuse it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core import InputShapeError, SpecError
from pixeldcn_core.reference import same_padding_s2

from .._base import UpsampleLayer, add_bias, check_input, interleave
from .._registry import register_module

__all__ = ["IPixelCL2d", "ipixel_cl2d"]


def _taps(k: int, parity: int) -> tuple[int, int, int]:
    """Taps of a stride-2 TF-'SAME' conv landing on input rows of ``parity``: the first tap (they
    go by 2), and the (before, after) zero padding of the stride-1 conv at half resolution that
    applies them (count 0 when there are none)."""
    begin = same_padding_s2(k)[0]
    first = (begin + parity) % 2
    taps = list(range(first, k, 2))
    if not taps:
        return first, 0, 0
    offsets = [(r - begin - parity) // 2 for r in taps]
    return first, -offsets[0], offsets[-1]


def _phase_conv(t: torch.Tensor, w: torch.Tensor, parity: int) -> torch.Tensor:
    """``conv_s2`` of a map that is non-zero only on phase (parity, parity), where it holds ``t``:
    a stride-1 conv of ``t`` with every second tap of ``w``."""
    first, before, after = _taps(int(w.shape[-1]), parity)
    sub = w[:, :, first::2, first::2]
    return F.conv2d(F.pad(t, (before, after, before, after)), sub)  # (N, Co, h, w)


def _conv_s2_shifted(x: torch.Tensor, w: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """``conv_s2(shift(x, a, b), w)``: the slice ``x[.., a:, b:]`` with its zero end restored."""
    begin, end = same_padding_s2(int(w.shape[-1]))
    src = x[:, :, a:, b:]  # (N, Cin, H - a, W - b)
    return F.conv2d(F.pad(src, (begin, end + b, begin, end + a)), w, stride=2)


def ipixel_cl2d(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    w4: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """iPixelCL at half resolution, in the core's efficient form.

    ``T1 = conv_s2(x, w1)``; ``T2 = conv_s2([shift(x,1,1), D1], w2)``;
    ``T3 = conv_s2([shift(x,1,0), S], w3)``; ``T4 = conv_s2([shift(x,0,1), S], w4)`` with
    ``D1 = place(T1, 0, 0)``, ``S = D1 + place(T2, 1, 1)``; ``y00 = T1``, ``y01 = T4``,
    ``y10 = T3``, ``y11 = T2``. The convs over the sparse D1, S only apply the taps that land on
    their non-zero phase.

    Args:
        x (Tensor[batch_size, in_channels, in_height, in_width]): input; height, width even.
        w1 (Tensor[out_channels, in_channels, k, k]): the authors' conv1.
        w2, w3, w4 (Tensor[out_channels, in_channels + out_channels, k, k]): conv2, conv4, conv5.
        bias (Tensor[out_channels], optional): added to every output pixel.

    Returns:
        Tensor[batch_size, out_channels, in_height, in_width]
    """
    cin = int(w1.shape[1])
    h, w = x.shape[2], x.shape[3]
    if isinstance(h, int) and isinstance(w, int):
        if h % 2 or w % 2:
            raise InputShapeError(f"ipixel_cl: H and W must be even, got H x W = {h} x {w}")
    else:  # symbolic (export, compile): a guard on the example input
        torch._check(h % 2 == 0, lambda: "ipixel_cl: H and W must be even")
        torch._check(w % 2 == 0, lambda: "ipixel_cl: H and W must be even")
    t1 = _conv_s2_shifted(x, w1, 0, 0)  # (N, C, H/2, W/2)
    c = int(w1.shape[0])
    # T1 on phase 00 of D1 (w2) and of S (w4, w3): one conv with the three kernels stacked.
    z = _phase_conv(t1, torch.cat([w2[:, cin:], w4[:, cin:], w3[:, cin:]], dim=0), 0)  # (N, 3C, ..)
    t2 = _conv_s2_shifted(x, w2[:, :cin], 1, 1) + z[:, :c]
    t43 = torch.cat([_conv_s2_shifted(x, w4[:, :cin], 0, 1),
                     _conv_s2_shifted(x, w3[:, :cin], 1, 0)], dim=1) + z[:, c:]  # (N, 2C, ..)
    if int(w1.shape[-1]) > 1:  # T2 on phase 11 of S (k = 1 has no tap there)
        t43 = t43 + _phase_conv(t2, torch.cat([w4[:, cin:], w3[:, cin:]], dim=0), 1)
    t4, t3 = t43[:, :c], t43[:, c:]
    return add_bias(interleave(t1, t4, t3, t2), bias)  # (N, C, H, W)


@register_module
class IPixelCL2d(UpsampleLayer):
    """iPixelCL: ``x [N, Cin, H, W] -> y [N, C, H, W]`` (H, W even); keeps the size.

    Parameters (state_dict keys): ``conv1.weight [C, Cin, k, k]`` (w1), ``conv2.weight``,
    ``conv3.weight``, ``conv4.weight`` (w2, w3, w4; each ``[C, Cin + C, k, k]``; the authors'
    conv2, conv4, conv5), ``bias [C]``.

    Initialisation: He normal, std = sqrt(2 / fan_in), fan_in = input channels x k^2 of each
    kernel; bias zero.

    Args:
        in_channels: Cin.
        out_channels: C.
        kernel_size: k >= 1 (default 3; TF 'SAME' padding, so even k works too).
        bias: add a learnable per-channel bias.
        init: one of :attr:`inits` (``None``: the first).
    """

    kind = "ipixel_cl"
    function = staticmethod(ipixel_cl2d)
    param_names: ClassVar[Mapping[str, str]] = {"w1": "conv1", "w2": "conv2", "w3": "conv3", "w4": "conv4"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "IPixelCL2d")
        return ipixel_cl2d(x, self.conv1.weight, self.conv2.weight, self.conv3.weight,
                           self.conv4.weight, self.bias)

    @classmethod
    def from_deconv(cls, old: nn.ConvTranspose2d, **kwargs: Any) -> tuple[UpsampleLayer, str]:
        """Refused: iPixelCL keeps the size, so it cannot replace an x2 deconvolution."""
        raise SpecError(
            "convert_deconvs: kind 'ipixel_cl' maps H x W to H x W (it keeps the size), so it "
            "cannot replace an x2 ConvTranspose2d; use an x2 kind"
        )
