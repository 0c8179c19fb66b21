"""DeepLab-ResNet with the paper's up-sampling decoder, and torchvision-layout backbone loading.

Gao et al. evaluate their layers in DeepLab-ResNet fine-tuned from ResNet-101 (Table 1): the
network's output is 8x smaller than its input, and three up-sampling blocks (an x2 up-sampling
layer followed by a convolution) bring it back to full resolution.

torchvision cannot be imported beside the CPU torch of this project, so the ResNet here is our
own, written so that its ``state_dict`` has exactly the names and shapes of torchvision's
``resnet50`` / ``resnet101`` (``conv1``, ``bn1``, ``layer1`` .. ``layer4`` of Bottleneck blocks
with ``conv1/bn1/conv2/bn2/conv3/bn3`` and ``downsample.0/.1``; no ``fc``). The ASPP module has the
names of torchvision's DeepLabV3 ``classifier.0``. :func:`load_backbone` loads an ImageNet
ResNet or a DeepLabV3 checkpoint into it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from pixeldcn_core import InputShapeError, SpecError

from ._errors import CheckpointError
from ._registry import make_up_layers
from ._unet import require_x2_kind
from ._weights import read_checkpoint, tensor_mismatches

__all__ = [
    "ASPP",
    "BackboneReport",
    "Bottleneck",
    "DeepLabResNet",
    "ResNetBackbone",
    "load_backbone",
]

#: Blocks per stage of torchvision's resnet50 and resnet101.
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: DeepLabV3's atrous rates at output stride 8 (6, 12, 18 at output stride 16, doubled), as
#: torchvision's ``deeplabv3_resnet*`` heads use them.
DEFAULT_RATES = (12, 24, 36)
#: H and W of the input must be multiples of this (output stride of the backbone).
OUTPUT_STRIDE = 8


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 Bottleneck: 1x1, 3x3 (stride, dilation), 1x1 (x4), + shortcut.

    ``x [N, inplanes, H, W] -> [N, 4 planes, H / stride, W / stride]``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """torchvision's ResNet-50/101 without ``avgpool`` / ``fc``, last two stages dilated.

    As ``torchvision.models.resnet101(replace_stride_with_dilation=[False, True, True])``:
    ``layer3`` and ``layer4`` keep stride 1 and dilate their 3x3 convs by 2 and 4 (the first block
    of each keeps the previous dilation, as torchvision does), so the output stride is 8:
    ``x [N, in_channels, H, W] -> [N, 32 base_width, H / 8, W / 8]`` (2048 channels at the default
    ``base_width=64``). Parameter names and shapes equal torchvision's (``fc`` excepted).

    Args:
        depth: 50 or 101 (blocks per stage 3-4-6-3 or 3-4-23-3).
        in_channels: image channels (3 for torchvision's weights).
        base_width: stem channels; stage ``i`` has ``base_width * 2**i`` planes (64 in
            torchvision; smaller values give reduced-width variants for tests).
        blocks: blocks per stage, overriding ``depth`` (reduced variants; not torchvision's).
    """

    def __init__(
        self,
        depth: int = 101,
        in_channels: int = 3,
        *,
        base_width: int = 64,
        blocks: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or depth not in RESNET_BLOCKS:
            raise SpecError(
                f"ResNetBackbone: depth must be one of {sorted(RESNET_BLOCKS)}, got {depth!r}"
            )
        if blocks is None:
            blocks = RESNET_BLOCKS[depth]
        blocks = tuple(blocks)
        if len(blocks) != 4 or not all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks
        ):
            raise SpecError(f"ResNetBackbone: blocks must be 4 ints >= 1, got {blocks!r}")
        _check_int("ResNetBackbone", "in_channels", in_channels, 1)
        _check_int("ResNetBackbone", "base_width", base_width, 1)
        self.depth = depth
        self.blocks = blocks
        self.conv1 = nn.Conv2d(in_channels, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._inplanes = base_width
        self._dilation = 1
        self.layer1 = self._make_layer(base_width, blocks[0])
        self.layer2 = self._make_layer(base_width * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(base_width * 4, blocks[2], stride=2, dilate=True)
        self.layer4 = self._make_layer(base_width * 8, blocks[3], stride=2, dilate=True)
        self.out_channels = base_width * 8 * Bottleneck.expansion
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False
                    ) -> nn.Sequential:
        previous_dilation = self._dilation
        if dilate:  # torchvision's replace_stride_with_dilation
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, 1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, previous_dilation, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes, dilation=self._dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, w, H/4, W/4)
        x = self.layer2(self.layer1(x))  # (N, 8w, H/8, W/8)
        return self.layer4(self.layer3(x))  # (N, 32w, H/8, W/8), dilated


def _conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average pool, 1x1 conv + BN + ReLU, broadcast back to H x W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        y = super().forward(x)  # (N, C, 1, 1)
        # torchvision up-samples the 1 x 1 map bilinearly, which is a broadcast: expand is exact
        # and exports as one Expand instead of a Resize.
        return y.expand(n, y.shape[1], h, w)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLabV3, names as torchvision's ``classifier.0``.

    Branches: one 1x1 conv, one 3x3 conv per rate (dilated by the rate), and the image-level
    pooling branch; each conv + BN + ReLU to ``out_channels``; concatenated and projected by a
    1x1 conv + BN + ReLU (+ dropout in training).
    ``x [N, in_channels, h, w] -> [N, out_channels, h, w]``.
    """

    def __init__(
        self,
        in_channels: int,
        rates: Sequence[int] = DEFAULT_RATES,
        out_channels: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        rates = tuple(rates)
        if not rates or not all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates
        ):
            raise SpecError(f"ASPP: rates must be one or more ints >= 1, got {rates!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise SpecError(f"ASPP: dropout must be in [0, 1), got {dropout!r}")
        self.rates = rates
        branches: list[nn.Module] = [_conv_bn_relu(in_channels, out_channels)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, r) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))

    def extra_repr(self) -> str:
        return f"rates={self.rates}"


class DecoderBlock(nn.Module):
    """The paper's block: x2 up-sampling layer C -> C (+ BN + ReLU), then a 3x3 conv C -> out.

    The conv is conv + BN + ReLU, except in the last block where it gives plain logits (a conv
    with bias), as the U-Net's last block does by default.
    """

    def __init__(self, channels: int, out_channels: int, up: str, up_kernel_size: int | None,
                 *, final: bool = False) -> None:
        super().__init__()
        self.up = nn.Sequential(
            *make_up_layers(up, channels, channels, up_kernel_size),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.conv: nn.Module = (
            nn.Conv2d(channels, out_channels, 3, padding=1) if final
            else _conv_bn_relu(channels, out_channels, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))  # (N, out, 2h, 2w)


class DeepLabResNet(nn.Module):
    """DeepLab-ResNet with the paper's decoder: ``x [N, in_channels, H, W] -> [N, num_classes, H, W]``.

    A dilated ResNet (:class:`ResNetBackbone`, output stride 8, torchvision's parameter names),
    the DeepLabV3 ASPP head (:class:`ASPP`, rates ``aspp_rates``, default (12, 24, 36) at output
    stride 8), then three decoder blocks (:class:`DecoderBlock`): an x2 up-sampling layer of kind
    ``up`` mapping C -> C (+ BN + ReLU) and a 3x3 conv, with C = ``aspp_channels``, then
    ``decoder_channels[0]``, then ``decoder_channels[1]``; the last conv gives the logits. H and W
    must be multiples of 8.

    Args:
        in_channels: image channels.
        num_classes: output channels (21 for PASCAL VOC).
        depth: ResNet depth, 50 or 101 (the paper fine-tunes ResNet-101).
        up: up-sampling layer kind (see :func:`pixeldcn_core.layer_kinds`); it must up-sample x2.
        up_kernel_size: its kernel size; ``None`` takes the kind's default.
        aspp_rates: atrous rates of the ASPP's 3x3 branches.
        aspp_channels: channels of every ASPP branch and of its output (256 in DeepLabV3).
        decoder_channels: output channels of the first two decoder blocks' convs.
        base_width: the backbone's stem channels (64 = torchvision's; less for tests).
        blocks: the backbone's blocks per stage, overriding ``depth`` (reduced variants).
        aspp_dropout: dropout after the ASPP projection (training only).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 21,
        depth: int = 101,
        up: str = "pixel_dcl",
        *,
        up_kernel_size: int | None = None,
        aspp_rates: Sequence[int] = DEFAULT_RATES,
        aspp_channels: int = 256,
        decoder_channels: Sequence[int] = (128, 64),
        base_width: int = 64,
        blocks: Sequence[int] | None = None,
        aspp_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_int("DeepLabResNet", "num_classes", num_classes, 1)
        _check_int("DeepLabResNet", "aspp_channels", aspp_channels, 1)
        decoder_channels = tuple(decoder_channels)
        if len(decoder_channels) != 2:
            raise SpecError(
                f"DeepLabResNet: decoder_channels must be 2 ints (the first two blocks' conv "
                f"outputs; the third gives num_classes), got {decoder_channels!r}"
            )
        for c in decoder_channels:
            _check_int("DeepLabResNet", "decoder_channels", c, 1)
        self.up_kind = require_x2_kind("DeepLabResNet", up)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.backbone = ResNetBackbone(depth, in_channels, base_width=base_width, blocks=blocks)
        self.depth = depth if blocks is None else None
        self.aspp = ASPP(self.backbone.out_channels, aspp_rates, aspp_channels, aspp_dropout)
        chans = (aspp_channels, *decoder_channels, num_classes)
        self.decoder = nn.ModuleList(
            DecoderBlock(chans[i], chans[i + 1], self.up_kind, up_kernel_size, final=i == 2)
            for i in range(3)
        )

    @property
    def multiple(self) -> int:
        """H and W must be multiples of this."""
        return OUTPUT_STRIDE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputShapeError(
                f"DeepLabResNet: x must be [N, {self.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        m = self.multiple
        h, w = x.shape[2], x.shape[3]
        if isinstance(h, int) and isinstance(w, int):
            if h % m or w % m:
                raise InputShapeError(
                    f"DeepLabResNet: got H x W = {h} x {w}, while the output stride {m} needs "
                    f"multiples of {m}"
                )
        else:  # symbolic sizes (export, compile): a guard, checked on the example input
            sym = f"DeepLabResNet: H and W must be multiples of {m}"
            torch._check(h % m == 0, lambda: sym)
            torch._check(w % m == 0, lambda: sym)
        y = self.aspp(self.backbone(x))  # (N, aspp_channels, H/8, W/8)
        for block in self.decoder:
            y = block(y)  # x2 each
        return y  # (N, num_classes, H, W)

    def extra_repr(self) -> str:
        depth = self.depth if self.depth is not None else f"blocks={self.backbone.blocks}"
        return f"up={self.up_kind!r}, depth={depth}, num_classes={self.num_classes}"


def _check_int(owner: str, field: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{owner}: {field} must be an int >= {low}, got {value!r}")


# -- loading torchvision-layout weights --------------------------------------------------------
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)


@dataclasses.dataclass
class BackboneReport:
    """What :func:`load_backbone` did.

    Attributes:
        path: the checkpoint.
        loaded: the model's keys that were written (``backbone.*``, and ``aspp.*`` when the
            checkpoint held a DeepLabV3 ASPP).
        unexpected: checkpoint keys that were not used (e.g. ``fc.*`` of an ImageNet ResNet,
            ``classifier.4.*`` of a DeepLabV3 head); an error with ``strict=True``.
        missing_optional: model keys the checkpoint lacked that do not change outputs
            (BatchNorm's ``num_batches_tracked``).
    """

    path: str
    loaded: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    missing_optional: list[str] = dataclasses.field(default_factory=list)

    @property
    def loaded_aspp(self) -> bool:
        return any(k.startswith("aspp.") for k in self.loaded)

    def __str__(self) -> str:
        n_backbone = sum(k.startswith("backbone.") for k in self.loaded)
        n_aspp = len(self.loaded) - n_backbone
        lines = [
            f"load_backbone({Path(self.path).name}): loaded {n_backbone} backbone tensors"
            + (f" and {n_aspp} ASPP tensors" if n_aspp else " (ASPP, decoder: left as they were)")
        ]
        if self.unexpected:
            lines.append(f"  ignored {len(self.unexpected)} unexpected keys: "
                         + _abbrev(self.unexpected))
        if self.missing_optional:
            lines.append(f"  absent (optional, kept): {_abbrev(self.missing_optional)}")
        return "\n".join(lines)


def _abbrev(keys: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


_BLOCK = re.compile(r"^(?:backbone\.)?(layer[1-4])\.(\d+)\.")


def _stage_blocks(keys: Sequence[str]) -> dict[str, int]:
    """layer name -> number of blocks the keys hold."""
    found: dict[str, int] = {}
    for k in keys:
        m = _BLOCK.match(k)
        if m:
            found[m.group(1)] = max(found.get(m.group(1), 0), int(m.group(2)) + 1)
    return found


def _map_key(key: str, ours: dict[str, torch.Tensor], include_aspp: bool) -> str | None:
    """Our key for a checkpoint key, or ``None`` when it is not ours to load."""
    candidates = []
    if key.startswith("backbone."):  # DeepLabV3 of torchvision, or our own full checkpoint
        candidates.append(key)
    elif key.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")):
        candidates.append("backbone." + key)  # torchvision resnet50/101
    if include_aspp:
        if key.startswith("classifier.0."):  # torchvision DeepLabV3's ASPP
            candidates.append("aspp." + key[len("classifier.0."):])
        elif key.startswith("aspp."):
            candidates.append(key)
    for c in candidates:
        if c in ours:
            return c
    return None


def load_backbone(
    model: DeepLabResNet,
    path: str | os.PathLike[str],
    *,
    include_aspp: bool = True,
    strict: bool = False,
) -> BackboneReport:
    """Load a torchvision-layout ResNet (or DeepLabV3) checkpoint into ``model``'s backbone.

    Accepted layouts: torchvision's ``resnet50`` / ``resnet101`` state dict (``conv1.weight``,
    ``layer1.0.conv1.weight`` ..., ``fc.*`` ignored), torchvision's ``deeplabv3_resnet50/101``
    (``backbone.*``, and its ASPP ``classifier.0.*`` loaded into ``model.aspp`` when
    ``include_aspp``), or a full :class:`DeepLabResNet` checkpoint (``backbone.*``, ``aspp.*``).
    Files: ``.safetensors``, or a torch file read with ``torch.load(weights_only=True)``; a
    ``module.`` prefix and a nesting under ``state_dict`` / ``model`` are accepted.

    All or nothing: every backbone key must be present with its shape (BatchNorm's
    ``num_batches_tracked`` may be absent), and the ASPP is loaded only when all of its keys are;
    any problem raises before the model is touched. Keys that are not used are listed in the
    returned report (and raise with ``strict=True``). The decoder is never loaded from here: use
    :func:`load_weights` for a full checkpoint of this class.

    Returns:
        A :class:`BackboneReport` (``print`` it for a summary).

    Raises:
        CheckpointError: unreadable / unsafe file, missing or mis-shaped keys (all listed, with
            the depth the checkpoint looks like when the block counts differ), or unexpected keys
            with ``strict=True``.
    """
    if not isinstance(model, DeepLabResNet):
        raise CheckpointError(
            f"load_backbone: model must be a DeepLabResNet, got {type(model).__name__}"
        )
    data = read_checkpoint(path)
    name = Path(path).name
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in data.items():
        target = _map_key(key, ours, include_aspp)
        if target is None:
            unexpected.append(key)
        else:
            mapped[target] = value
    aspp_given = any(k.startswith("aspp.") for k in mapped)
    groups = ("backbone.", "aspp.") if aspp_given else ("backbone.",)
    missing_optional: list[str] = []
    missing: list[str] = []
    for key in ours:
        if not key.startswith(groups) or key in mapped:
            continue
        (missing_optional if key.endswith(_OPTIONAL_SUFFIXES) else missing).append(key)
    problems = _missing_problems(model, missing, data, mapped) if missing else []
    problems += _value_problems(mapped, ours)
    if strict and unexpected:
        problems.append(f"unexpected keys (strict=True): {_abbrev(sorted(unexpected))}")
    if problems:
        raise CheckpointError(
            f"load_backbone: {name} does not fit {model.backbone.__class__.__name__}"
            f"{'' if not aspp_given else ' + ASPP'} (nothing was loaded): " + " | ".join(problems)
        )
    with torch.no_grad():
        for key, value in mapped.items():
            ours[key].copy_(value.to(ours[key].dtype))
    return BackboneReport(
        path=str(path),
        loaded=sorted(mapped),
        unexpected=sorted(unexpected),
        missing_optional=sorted(missing_optional),
    )


def _missing_problems(model: DeepLabResNet, missing: list[str], data: dict[str, torch.Tensor],
                      mapped: dict[str, torch.Tensor]) -> list[str]:
    """What to say about ``missing`` keys: which, and the depth the checkpoint looks like."""
    which = "backbone" if all(k.startswith("backbone.") for k in missing) else "backbone/ASPP"
    problems = [f"missing {len(missing)} {which} keys: {_abbrev(sorted(missing))}"]
    theirs, mine = _stage_blocks(list(data)), _stage_blocks(list(model.state_dict()))
    if theirs and theirs != mine:
        counts = tuple(theirs.get(f"layer{i}", 0) for i in range(1, 5))
        looks = {v: k for k, v in RESNET_BLOCKS.items()}.get(counts)
        problems.append(
            f"the checkpoint's stages hold {counts} blocks"
            + (f" (ResNet-{looks})" if looks else "")
            + f", the model's {model.backbone.blocks}"
            + (f" (depth={model.depth})" if model.depth else "")
        )
    elif not any(k.startswith("backbone.") for k in mapped):
        problems.append(
            "no key of the checkpoint is a ResNet key (expected torchvision names such as "
            f"'conv1.weight', 'layer1.0.conv1.weight' or 'backbone.conv1.weight'); got "
            f"{_abbrev(sorted(data), 5)}"
        )
    return problems


def _value_problems(mapped: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> list[str]:
    """Mis-shaped, mis-typed and non-finite tensors among the ``mapped`` ones."""
    misshaped, nonfinite = tensor_mismatches(mapped, ours)  # mapped keys are all in ours
    problems = []
    if misshaped:
        problems.append(f"mis-shaped {len(misshaped)}: " + "; ".join(misshaped[:8])
                        + (f" ... (+{len(misshaped) - 8} more)" if len(misshaped) > 8 else ""))
    if nonfinite:
        problems.append(f"NaN/Inf in {_abbrev(nonfinite)}")
    return problems
