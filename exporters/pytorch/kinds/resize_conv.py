"""Resize-convolution (nearest x2, then conv; Odena et al.): :func:`resize_conv2d`, :class:`ResizeConv2d`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._base import UpsampleLayer, add_bias, check_input, interleave
from .._registry import register_module

__all__ = ["ResizeConv2d", "resize_conv2d"]


def _phase_groups(k: int, a: int) -> tuple[tuple[tuple[int, int], ...], int, int]:
    """Phase ``a`` of nearest-x2-then-conv along one axis.

    Output ``2i + a`` reads input ``i + (a + r - k//2) // 2`` through tap ``r``: consecutive taps
    that read the same input pixel add up. Returns the tap ranges ``[start, stop)`` of each summed
    tap, and the zero padding (before, after) that aligns the offsets.
    """
    p = k // 2
    offsets = [(a + r - p) // 2 for r in range(k)]
    groups = []
    for off in range(offsets[0], offsets[-1] + 1):
        taps = [r for r in range(k) if offsets[r] == off]
        groups.append((taps[0], taps[-1] + 1))
    return tuple(groups), -offsets[0], offsets[-1]


def _phase(x: torch.Tensor, weight: torch.Tensor, a: int, b: int) -> torch.Tensor:
    k = int(weight.shape[-1])
    rows, top, bottom = _phase_groups(k, a)
    cols, left, right = _phase_groups(k, b)
    w = torch.stack([weight[:, :, s:e].sum(2) for s, e in rows], dim=2)  # (C, Cin, nr, k)
    w = torch.stack([w[..., s:e].sum(3) for s, e in cols], dim=3)  # (C, Cin, nr, nc)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w)  # (N, C, H, W)


def resize_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Nearest-neighbour x2 up-sampling followed by a 'same' k x k conv, computed at input
    resolution: each output phase is one small conv whose kernel sums the taps that read the
    same input pixel (2 x 2 for k = 3), so the 2H x 2W up-sampled map is never built.

    Args:
        x (Tensor[batch_size, in_channels, in_height, in_width]): input.
        weight (Tensor[out_channels, in_channels, k, k]): conv kernel, k odd.
        bias (Tensor[out_channels], optional).

    Returns:
        Tensor[batch_size, out_channels, 2 * in_height, 2 * in_width]
    """
    phases = [_phase(x, weight, a, b) for a in (0, 1) for b in (0, 1)]
    return add_bias(interleave(*phases), bias)


@register_module
class ResizeConv2d(UpsampleLayer):
    """Resize-convolution: ``x [N, Cin, H, W] -> y [N, C, 2H, 2W]``, free of checkerboard artifacts.

    Parameters: ``weight [C, Cin, k, k]``, ``bias [C]``. Initialisation: He normal, fan_in =
    Cin * k^2 (the conv as applied to the up-sampled map); bias zero.

    Args:
        in_channels: Cin.
        out_channels: C.
        kernel_size: odd k (default 3).
        bias: add a learnable per-channel bias.
        init: ``"default"`` (the only one: nearest up-sampling already starts it artifact-free).
    """

    kind = "resize_conv"
    function = staticmethod(resize_conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "ResizeConv2d")
        return resize_conv2d(x, self.weight, self.bias)
