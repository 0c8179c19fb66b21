"""DySample (Liu et al. 2023), x2, "lp" style with the static scope factor: :func:`dysample2d`,
:class:`DySample2d`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core import LayerSpec
from pixeldcn_core import reference as ref

from .._base import UpsampleLayer, add_bias, check_init, check_input
from .._registry import register_module

__all__ = ["DySample2d", "dysample2d"]


def _init_pos(groups: int, like: torch.Tensor) -> torch.Tensor:
    """The authors' ``_init_pos`` (scale 2) as ``[1, 8 groups, 1, 1]``."""
    pos = torch.as_tensor(ref.dysample_init_pos(groups), dtype=like.dtype, device=like.device)
    return pos.view(1, -1, 1, 1)


def dysample2d(
    x: torch.Tensor,
    offset_weight: torch.Tensor,
    offset_bias: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """DySample x2 ("lp", static scope), computed as the authors' ``DySample.sample``:
    ``offset = 0.25 conv1x1(x) + init_pos``, pixel shuffle of the sampling grid, then
    ``F.grid_sample(mode="bilinear", align_corners=False, padding_mode="border")`` per group.

    Args:
        x (Tensor[batch_size, channels, in_height, in_width]): input.
        offset_weight (Tensor[8 * groups, channels, 1, 1]): the offset conv (groups from its
            shape; channel ``c 4G + 4g + 2a + b`` is coordinate ``c`` (x, y) of group ``g`` at
            output phase ``(a, b)``).
        offset_bias (Tensor[8 * groups]): the offset conv's bias.
        bias (Tensor[channels], optional): added to the output.

    Returns:
        Tensor[batch_size, channels, 2 * in_height, 2 * in_width]
    """
    n, c, h, w = x.shape
    groups = int(offset_weight.shape[0]) // 8
    offset = F.conv2d(x, offset_weight, offset_bias) * ref.DYSAMPLE_SCOPE + _init_pos(groups, x)
    offset = offset.view(n, 2, -1, h, w)  # (N, 2, 4G, H, W): (x, y)
    rows = torch.arange(h, device=x.device, dtype=x.dtype) + 0.5
    cols = torch.arange(w, device=x.device, dtype=x.dtype) + 0.5
    centres = torch.stack(torch.meshgrid(cols, rows, indexing="xy"))  # (2, H, W): (x, y)
    coords = centres.view(1, 2, 1, h, w) + offset
    normalizer = torch.tensor([w, h], dtype=x.dtype, device=x.device).view(1, 2, 1, 1, 1)
    coords = 2 * coords / normalizer - 1  # grid_sample's [-1, 1] (align_corners=False)
    coords = F.pixel_shuffle(coords.reshape(n, -1, h, w), 2)  # (N, 2G, 2H, 2W)
    grid = coords.view(n, 2, groups, 2 * h, 2 * w).permute(0, 2, 3, 4, 1)  # (N, G, 2H, 2W, 2)
    y = F.grid_sample(x.reshape(n * groups, -1, h, w), grid.reshape(n * groups, 2 * h, 2 * w, 2),
                      mode="bilinear", align_corners=False, padding_mode="border")
    return add_bias(y.view(n, c, 2 * h, 2 * w), bias)


@register_module
class DySample2d(UpsampleLayer):
    """DySample: ``x [N, C, H, W] -> y [N, C, 2H, 2W]``, content-aware point sampling.

    Each output pixel bilinearly samples ``x`` at its bilinear-x2 position moved by an offset
    that a 1 x 1 conv predicts from ``x`` (scaled by 0.25, the paper's static scope). Channels
    come in ``groups`` (default: 4, the authors', when C is a multiple of 4, else 2 or 1; see
    :func:`pixeldcn_core.reference.dysample_groups`), each with its own offsets.

    Parameters: ``offset.weight [8 G, C, 1, 1]``, ``offset.bias [8 G]`` (the authors' names:
    their ``DySample(C, style="lp")`` state dict loads with ``strict=False``, its ``init_pos``
    buffer being a constant here), ``bias [C]`` (optional, zero at init).

    Initialisation: ``"default"``, the authors': offset weight normal with std 0.001, offset bias
    0, so the layer starts as bilinear x2 up-sampling.

    Args:
        in_channels: C.
        out_channels: C again (``None``: ``in_channels``); DySample keeps the channels.
        kernel_size: 1 or ``None`` (the offset conv is 1 x 1).
        bias: add a learnable per-channel bias to the output.
        groups: sampling groups G, dividing C (the authors' ``groups``; ``None``: the default).
        init: ``"default"``.
        device, dtype: where and in which dtype the parameters are created.
    """

    kind = "dysample"
    function = staticmethod(dysample2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | None = None,
        bias: bool = False,
        *,
        groups: int | None = None,
        init: str | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        nn.Module.__init__(self)  # not UpsampleLayer's: the offset conv is an nn.Conv2d
        # LayerSpec checks everything up front (C = Cin, kernel_size 1, G | C): SpecError.
        spec = LayerSpec(self.kind, in_channels, out_channels, kernel_size, bias=bias,
                         params={} if groups is None else {"groups": groups})
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.kernel_size = spec.k
        self.init = check_init(self.kind, init, self.inits)
        shapes = spec.weight_shapes()
        factory = {"device": device, "dtype": dtype}
        self.offset = nn.Conv2d(self.in_channels, shapes["offset_bias"][0], 1, **factory)
        self._make_bias(bias, **factory)
        self.reset_parameters()

    @property
    def groups(self) -> int:
        return int(self.offset.weight.shape[0]) // 8

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' init: offset weight ~ N(0, 0.001^2), offset bias 0, output bias 0."""
        nn.init.normal_(self.offset.weight, 0.0, 0.001)
        nn.init.zeros_(self.offset.bias)
        if self.bias is not None:
            self.bias.zero_()

    def _onnx_tensors(self) -> dict[str, torch.Tensor]:
        return {"offset_weight": self.offset.weight, "offset_bias": self.offset.bias}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "DySample2d")
        return dysample2d(x, self.offset.weight, self.offset.bias, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, groups={self.groups}, bias={self.bias is not None}"
