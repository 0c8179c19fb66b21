"""PixelDCL (Gao et al., Eqn. 3 / Figure 6): :func:`pixel_dcl2d` and :class:`PixelDCL2d`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from pixeldcn_core import pixel_dcl_phase_taps
from pixeldcn_core.reference import pixel_dcl_mask

from .._base import UpsampleLayer, add_bias, check_input, interleave, kaiming_normal_
from .._inits import pixel_dcl_bilinear_
from .._registry import register_module

__all__ = ["PixelDCL2d", "pixel_dcl2d"]

# (first tap, number of taps, (top, bottom, left, right) zero padding) of one phase sub-kernel.
_SubKernel = tuple[int, int, int, int, tuple[int, int, int, int]]


def _phase_plan(k: int) -> dict[str, _SubKernel]:
    """For each (phase, source) of ``pixel_dcl_phase_taps``: the strided slice of ``w3`` it reads
    (taps of one parity are every other row/column) and the padding that aligns its offsets.
    Plain Python on ints, cheap enough to run per call (and traced away by torch.compile)."""
    plan = {}
    for name, (rows, cols) in pixel_dcl_phase_taps(k).items():
        pads = (-rows[0][1], rows[-1][1], -cols[0][1], cols[-1][1])
        plan[name] = (rows[0][0], len(rows), cols[0][0], len(cols), pads)
    return plan


def _phase_conv(f: torch.Tensor, w3: torch.Tensor, sub: _SubKernel) -> torch.Tensor:
    r0, nr, c0, nc, (top, bottom, left, right) = sub
    w = w3[:, :, r0 : r0 + 2 * nr - 1 : 2, c0 : c0 + 2 * nc - 1 : 2]  # (C, C, nr, nc) taps only
    return F.conv2d(F.pad(f, (left, right, top, bottom)), w)  # (N, C, H, W)


def pixel_dcl2d(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel deconvolution, computed at input resolution (the efficient form).

    ``F1 = conv(x, w1)``, ``F2 = conv(F1, w2)``; ``y00 = F1``, ``y11 = F2``, and ``y01``, ``y10``
    come from the taps of ``w3`` with ``r + c`` odd over their F1 / F2 neighbours (docs/design.md).
    Only those taps are read, so the masked taps of ``w3`` get exactly zero gradient.

    Args:
        x (Tensor[batch_size, in_channels, in_height, in_width]): input.
        w1 (Tensor[out_channels, in_channels, k, k]): kernel of F1.
        w2 (Tensor[out_channels, out_channels, k, k]): kernel of F2.
        w3 (Tensor[out_channels, out_channels, k, k]): the masked kernel; k odd.
        bias (Tensor[out_channels], optional): added to every output pixel.

    Returns:
        Tensor[batch_size, out_channels, 2 * in_height, 2 * in_width]
    """
    k = int(w1.shape[-1])
    plan = _phase_plan(k)
    f1 = F.conv2d(x, w1, padding=k // 2)  # (N, C, H, W)
    f2 = F.conv2d(f1, w2, padding=k // 2)  # (N, C, H, W)
    y01 = _phase_conv(f1, w3, plan["01_from_f1"]) + _phase_conv(f2, w3, plan["01_from_f2"])
    y10 = _phase_conv(f1, w3, plan["10_from_f1"]) + _phase_conv(f2, w3, plan["10_from_f2"])
    return add_bias(interleave(f1, y01, y10, f2), bias)


@register_module
class PixelDCL2d(UpsampleLayer):
    """PixelDCL: ``x [N, Cin, H, W] -> y [N, C, 2H, 2W]``, adjacent output pixels made dependent.

    Parameters (the paper's parameterisation; state_dict keys):
        ``conv1.weight [C, Cin, k, k]`` (w1), ``conv2.weight [C, C, k, k]`` (w2),
        ``conv3.weight [C, C, k, k]`` (w3, only taps with ``r + c`` odd are used), ``bias [C]``.

    Initialisation: ``init="bilinear"`` (the default): w1 He-random, w2 and w3 fixed averages so
    that the layer starts as a conv followed by bilinear x2 interpolation, free of checkerboard
    artifacts (see ``exporters.pytorch._inits``; it trained at least as well as He init in
    ``pixeldcn bench quality``). ``init="default"``: He normal (std = sqrt(2 / fan_in)) where
    fan_in counts the weights reaching one output value: ``Cin k^2`` for w1, ``C k^2`` for w2 and
    ``C * (k^2 // 2)`` for the used taps of w3. Either way the masked taps of w3 start at zero
    and, receiving zero gradient, stay there.

    Args:
        in_channels: Cin.
        out_channels: C.
        kernel_size: odd k >= 3 (default 3).
        bias: add a learnable per-channel bias.
        init: one of :attr:`inits` (``None``: the first).
    """

    kind = "pixel_dcl"
    function = staticmethod(pixel_dcl2d)
    param_names: ClassVar[Mapping[str, str]] = {"w1": "conv1", "w2": "conv2", "w3": "conv3"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "PixelDCL2d")
        return pixel_dcl2d(x, self.conv1.weight, self.conv2.weight, self.conv3.weight, self.bias)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        c, cin, k = self.out_channels, self.in_channels, self.kernel_size
        if self.init == "bilinear":
            pixel_dcl_bilinear_(self.conv1.weight, self.conv2.weight, self.conv3.weight)
        else:
            kaiming_normal_(self.conv1.weight, cin * k * k)
            kaiming_normal_(self.conv2.weight, c * k * k)
            kaiming_normal_(self.conv3.weight, c * (k * k // 2))
        mask = torch.as_tensor(pixel_dcl_mask(k), dtype=torch.bool, device=self.conv3.weight.device)
        self.conv3.weight.masked_fill_(~mask, 0.0)
        if self.bias is not None:
            self.bias.zero_()
