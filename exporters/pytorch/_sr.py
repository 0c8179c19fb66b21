"""A small super-resolution network (VDSR-style residual over bicubic) built on any up-sampling kind."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core import SpecError, get_kind

from ._base import UpsampleLayer
from ._registry import make_up_layers, module_for

__all__ = ["SRNet"]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} must be a positive int, got {value!r}")
    return value


class SRNet(nn.Module):
    """``x [N, channels, H, W]`` in [0, 1] -> ``y [N, channels, scale*H, scale*W]``.

    ``y = bicubic(x) + tail(up(... up(head(x))))`` when ``residual`` (VDSR's residual learning,
    so that the network starts near the interpolation floor and only learns the detail bicubic
    misses): ``head`` is ``depth`` 3x3 conv + ReLU at input resolution, then ``log2(scale)``
    stacked x2 up-sampling layers of the chosen kind (each followed by ReLU; a 3x3 conv + ReLU
    between two of them), then a 3x3 conv ``tail`` to ``channels``.

    Args:
        up: a registered layer kind (``"pixel_dcl"``, ``"dcl"``, ...).
        scale: 2 or 4 (a power of two: one x2 layer per factor of 2).
        channels: image channels (1 for luminance).
        width: feature channels.
        depth: 3x3 convs before the first up-sampling layer.
        up_kernel_size: kernel size of the up-sampling layers (``None``: the kind's default).
        init: initialisation of the up-sampling layers (one of the kind's ``inits``).
        residual: add the bicubic up-sampling of ``x`` to the output.
    """

    def __init__(
        self,
        up: str = "pixel_dcl",
        scale: int = 2,
        channels: int = 1,
        width: int = 32,
        depth: int = 2,
        up_kernel_size: int | None = None,
        init: str | None = None,
        residual: bool = True,
    ) -> None:
        super().__init__()
        scale = _positive("scale", scale)
        if scale < 2 or scale & (scale - 1):
            raise SpecError(f"scale must be a power of two >= 2, got {scale}")
        self.up_kind = get_kind(up).name
        self.scale = scale
        self.channels = _positive("channels", channels)
        self.width = _positive("width", width)
        self.residual = bool(residual)
        module_for(self.up_kind)  # refuses a kind without a PyTorch module, naming the known ones
        layers: list[nn.Module] = []
        cin = self.channels
        for _ in range(_positive("depth", depth)):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        n_up = int(math.log2(scale))
        for i in range(n_up):
            # a kind whose channels cannot go width -> width (bilinear_additive) gets a 1x1 conv first
            ups = make_up_layers(self.up_kind, width, width, up_kernel_size, init=init)
            layers += [*ups, nn.ReLU(inplace=True)]
            if i < n_up - 1:
                layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.tail = nn.Conv2d(width, self.channels, 3, padding=1)
        self.init = next(m for m in layers if isinstance(m, UpsampleLayer)).init

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network (for model cards)."""
        up = next(m for m in self.body if isinstance(m, UpsampleLayer))
        convs3 = sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in self.body)
        return {"up": self.up_kind, "scale": self.scale, "channels": self.channels,
                "width": self.width, "depth": convs3 - (int(math.log2(self.scale)) - 1),
                "up_kernel_size": up.kernel_size,
                "init": self.init, "residual": self.residual}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tail(self.body(x))  # (N, channels, sH, sW)
        if self.residual:
            y = y + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return y
