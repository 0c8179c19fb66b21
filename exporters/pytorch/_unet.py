"""The U-Net of the authors' PixelDCN code, with a choice of up-sampling layer."""

from __future__ import annotations

import torch
from torch import nn

from pixeldcn_core import InputShapeError, SpecError, get_kind

from ._registry import make_up_layers

__all__ = ["UNet", "conv_bn_relu", "require_x2_kind"]


def require_x2_kind(owner: str, kind: str) -> str:
    """The registered name of ``kind``; :class:`SpecError` unless it up-samples by exactly 2
    (``ipixel_cl`` keeps the size, so networks built of x2 blocks refuse it)."""
    info = get_kind(kind)
    if info.scale != 2:
        out = "H x W (it keeps the size)" if info.scale == 1 else f"{info.scale}H x {info.scale}W"
        raise SpecError(
            f"{owner}: up={info.name!r} maps H x W to {out}, while the network's blocks need an "
            "x2 up-sampling layer"
        )
    return info.name


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """3x3 'same' conv (no bias: BN follows) + BatchNorm + ReLU, the authors' ``ops.conv``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DownBlock(nn.Module):
    """conv + conv at one scale; the output is the skip, the pooled output goes down."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class UpBlock(nn.Module):
    """Up-sampling layer (C -> C, + BN + ReLU), concat with the skip, conv 2C -> C, conv C -> out.

    A kind whose channels cannot go C -> C (bilinear-additive: C = Cin / 4) gets a 1 x 1 conv
    C -> 4C before it (:func:`make_up_layers`)."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        up: str,
        up_kernel_size: int | None,
        *,
        final: bool = False,
        logits_bn_relu: bool = False,
    ) -> None:
        super().__init__()
        self.up = nn.Sequential(
            *make_up_layers(up, channels, channels, up_kernel_size),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.conv2 = conv_bn_relu(2 * channels, channels)
        if final and not logits_bn_relu:
            self.conv3: nn.Module = nn.Conv2d(channels, out_channels, 3, padding=1)
        else:
            self.conv3 = conv_bn_relu(channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.up(x), skip], dim=1)  # (N, 2C, 2H, 2W)
        return self.conv3(self.conv2(y))


class UNet(nn.Module):
    """U-Net of Gao et al.'s code: ``x [N, in_channels, H, W] -> logits [N, num_classes, H, W]``.

    ``depth - 1`` down blocks (two 3x3 conv + BN + ReLU each, channels ``base_channels`` doubling,
    2x2 max-pool between), a bottom block ``c -> 2c -> c``, then ``depth - 1`` up blocks: the
    up-sampling layer maps C -> C channels (+ BN + ReLU), is concatenated with the skip, and two
    convs bring the channels to C then C / 2 (``num_classes`` in the last block). H and W must be
    multiples of ``2 ** (depth - 1)``.

    Args:
        in_channels: image channels.
        num_classes: output channels (21 for PASCAL VOC, 81 for MS-COCO).
        base_channels: channels of the first level (64 in the paper).
        depth: levels including the bottom (5 in the paper), >= 2.
        up: up-sampling layer kind (see :func:`pixeldcn_core.layer_kinds`).
        up_kernel_size: its kernel size; ``None`` takes the kind's default (6 for ``dcl``, as in
            the paper's experiments; 3 for the others).
        logits_bn_relu: put BN + ReLU on the final logits as the authors' code does; the default
            is plain logits (a conv with bias).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 21,
        base_channels: int = 64,
        depth: int = 5,
        up: str = "pixel_dcl",
        *,
        up_kernel_size: int | None = None,
        logits_bn_relu: bool = False,
    ) -> None:
        super().__init__()
        for field, value, low in (
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 1),
            ("base_channels", base_channels, 2),
            ("depth", depth, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SpecError(f"UNet: {field} must be an int >= {low}, got {value!r}")
        if base_channels % 2:
            raise SpecError(f"UNet: base_channels must be even, got {base_channels}")
        self.up_kind = require_x2_kind("UNet", up)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        chans = [base_channels * 2**i for i in range(depth - 1)]  # skip channels per level
        self.down = nn.ModuleList(
            DownBlock(cin, cout) for cin, cout in zip([in_channels, *chans[:-1]], chans, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        c = chans[-1]
        self.bottom = nn.Sequential(conv_bn_relu(c, 2 * c), conv_bn_relu(2 * c, c))
        self.up = nn.ModuleList(
            UpBlock(
                ch,
                num_classes if level == 0 else ch // 2,
                up,
                up_kernel_size,
                final=level == 0,
                logits_bn_relu=logits_bn_relu,
            )
            for level, ch in reversed(list(enumerate(chans)))
        )

    @property
    def multiple(self) -> int:
        """H and W must be multiples of this."""
        return 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputShapeError(
                f"UNet: x must be [N, {self.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        m = self.multiple
        h, w = x.shape[2], x.shape[3]
        msg = f"UNet: got H x W = {h} x {w}, while depth={self.depth} needs multiples of {m}"
        if isinstance(h, int) and isinstance(w, int):
            if h % m or w % m:
                raise InputShapeError(msg)
        else:  # symbolic sizes (export, compile): a guard, checked on the example input
            sym = f"UNet: H and W must be multiples of {m} (depth={self.depth})"
            torch._check(h % m == 0, lambda: sym)
            torch._check(w % m == 0, lambda: sym)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for block in self.up:
            x = block(x, skips.pop())
        return x

    def extra_repr(self) -> str:
        return f"up={self.up_kind!r}, depth={self.depth}, num_classes={self.num_classes}"

