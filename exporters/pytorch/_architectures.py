"""Architecture name -> how to build that network with any up-sampling kind: one registry.

``pixeldcn export --arch NAME``, the benchmarks' networks (``bench network``, ``bench quality``)
and Python code build networks here, so a network added with :func:`register_architecture`
reaches all of them. Every builder takes the up-sampling kind, its kernel size, its init (for
the architectures that take one) and the architecture's own options (:attr:`Architecture.options`,
with their defaults).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from pixeldcn_core import SpecError, get_kind

from ._deeplab import DeepLabResNet
from ._registry import make_layer
from ._sr import SRNet
from ._unet import UNet
from ._vae import VAE

__all__ = ["ARCHITECTURES", "Architecture", "architecture", "build_network",
           "register_architecture"]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A network family built with any registered up-sampling kind.

    Attributes:
        name: its ``--arch`` name, e.g. ``"unet"``.
        title: its name in reports, e.g. ``"U-Net"``.
        build: ``build(up, up_kernel_size, init, **options) -> nn.Module`` (``init`` is ``None``
            unless given; an architecture without ``takes_init`` never gets one).
        options: option name -> default; the keyword arguments :meth:`make` accepts.
        example_input: ``options -> input shape`` of one example (batch 1).
        size_multiple: ``options -> n``: input height and width must be multiples of ``n``.
        takes_init: whether the up-sampling layers' init can be chosen.
    """

    name: str
    title: str
    build: Callable[..., nn.Module]
    options: Mapping[str, Any]
    example_input: Callable[[Mapping[str, Any]], tuple[int, ...]]
    size_multiple: Callable[[Mapping[str, Any]], int] = lambda options: 1
    takes_init: bool = False

    def resolve(self, **options: Any) -> dict[str, Any]:
        """The defaults updated with ``options`` (``None`` values keep the default).

        Raises:
            SpecError: an option this architecture does not have.
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise SpecError(f"{unknown[0]}: not an option of --arch {self.name}; expected some of "
                            f"{', '.join(self.options) or 'none'}")
        return {**self.options, **{k: v for k, v in options.items() if v is not None}}

    def make(self, up: str = "pixel_dcl", *, up_kernel_size: int | None = None,
             init: str | None = None, **options: Any) -> nn.Module:
        """This network with ``up`` layers (kernel ``up_kernel_size``, init ``init``).

        Raises:
            SpecError: an unknown option, an init for an architecture without one, or a bad value
                (from the network's constructor); UnknownKindError for an unknown kind.
        """
        if init is not None and not self.takes_init:
            raise SpecError(f"init: not an option of --arch {self.name} (its layers use their "
                            "kind's default init)")
        return self.build(up, up_kernel_size, init, **self.resolve(**options))


def _unet(up: str, k: int | None, init: str | None, *, in_channels: int, num_classes: int,
          base_channels: int, depth: int) -> nn.Module:
    return UNet(in_channels, num_classes, base_channels, depth, up, up_kernel_size=k)


def _deeplab(up: str, k: int | None, init: str | None, *, in_channels: int, num_classes: int,
             depth: int, base_channels: int, blocks: tuple[int, ...] | None) -> nn.Module:
    return DeepLabResNet(in_channels, num_classes, depth, up, up_kernel_size=k,
                         base_width=base_channels, blocks=blocks)


def _vae_decoder(up: str, k: int | None, init: str | None, *, latent_dim: int,
                 base_channels: int, image_channels: int) -> nn.Module:
    return VAE(latent_dim, base_channels, up, up_kernel_size=k,
               image_channels=image_channels).decoder


def _sr(up: str, k: int | None, init: str | None, *, scale: int, channels: int,
        base_channels: int, depth: int) -> nn.Module:
    return SRNet(up, scale, channels, base_channels, depth, k, init)


def _autoencoder(up: str, k: int | None, init: str | None, *, channels: int,
                 base_channels: int, bottleneck: int) -> nn.Module:
    """Two stride-2 convs down to a ``bottleneck``-channel code at 1/4 resolution, then two x2
    up-sampling layers (each after a 3x3 conv): nothing can be copied from the input, which is
    where up-sampling artifacts show most (the paper's VAE setting)."""
    w = base_channels
    c = w // (getattr(get_kind(up), "in_per_out", None) or 1)  # a kind may fix C by Cin
    return nn.Sequential(
        nn.Conv2d(channels, w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w, bottleneck, 1),
        nn.Conv2d(bottleneck, w, 3, padding=1), nn.ReLU(),
        make_layer(up, w, c, k, init=init), nn.ReLU(),
        nn.Conv2d(c, w, 3, padding=1), nn.ReLU(),
        make_layer(up, w, c, k, init=init), nn.ReLU(),
        nn.Conv2d(c, channels, 3, padding=1),
    )


#: ``--arch`` name -> :class:`Architecture`, in the order of ``pixeldcn export --help``.
ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    """Add ``arch`` (replacing one of the same name); returns it."""
    ARCHITECTURES[arch.name] = arch
    return arch


def architecture(name: str) -> Architecture:
    """The architecture called ``name``.

    Raises:
        SpecError: no such architecture; the message lists the registered ones.
    """
    if name not in ARCHITECTURES:
        raise SpecError(f"--arch: got {name!r}, expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def build_network(name: str, up: str = "pixel_dcl", *, up_kernel_size: int | None = None,
                  init: str | None = None, **options: Any) -> nn.Module:
    """``architecture(name).make(up, ...)``: e.g. ``build_network("unet", "dcl", depth=4)``."""
    return architecture(name).make(up, up_kernel_size=up_kernel_size, init=init, **options)


for _arch in (
    Architecture("unet", "U-Net", _unet,
                 {"in_channels": 3, "num_classes": 21, "base_channels": 64, "depth": 5},
                 lambda o: (1, o["in_channels"], 256, 256),
                 size_multiple=lambda o: 2 ** (o["depth"] - 1)),
    Architecture("vae-decoder", "VAE decoder", _vae_decoder,
                 {"latent_dim": 128, "base_channels": 32, "image_channels": 3},
                 lambda o: (1, o["latent_dim"])),
    Architecture("deeplab", "DeepLab-ResNet", _deeplab,
                 {"in_channels": 3, "num_classes": 21, "depth": 101, "base_channels": 64,
                  "blocks": None},
                 lambda o: (1, o["in_channels"], 512, 512), size_multiple=lambda o: 8),
    Architecture("sr", "super-resolution net", _sr,
                 {"scale": 2, "channels": 1, "base_channels": 16, "depth": 2},
                 lambda o: (1, o["channels"], 128, 128), takes_init=True),
    Architecture("autoencoder", "x4 autoencoder", _autoencoder,
                 {"channels": 1, "base_channels": 16, "bottleneck": 4},
                 lambda o: (1, o["channels"], 128, 128), size_multiple=lambda o: 4,
                 takes_init=True),
):
    register_architecture(_arch)
