"""Kind name -> PyTorch module class: the torch side of the core's kind registry.

The core (:func:`pixeldcn_core.register_kind`) describes a kind without torch; this registry adds
its ``nn.Module`` (a subclass of :class:`UpsampleLayer` whose ``kind`` names the core entry and
whose ``function`` is the functional form). Networks, :func:`convert_deconvs` and the exporter
read both registries, so a kind registered in both reaches all of them.

The built-in kinds' modules (:mod:`exporters.pytorch.kinds`, one file per kind) register their
classes with the :func:`register_module` decorator when imported; this module names no kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from pixeldcn_core import UnknownKindError, get_kind

from ._base import UpsampleLayer

__all__ = ["FUNCTIONS", "MODULES", "make_layer", "make_up_layers", "module_for", "register_module",
           "unregister_module"]

_Layer = TypeVar("_Layer", bound=type[UpsampleLayer])

#: Every kind with a PyTorch module -> its ``nn.Module`` class (fill with :func:`register_module`).
MODULES: dict[str, type[UpsampleLayer]] = {}


class _Functions(Mapping[str, Callable[..., torch.Tensor]]):
    """Kind -> functional form ``f(x, *weights, bias=None)``, weights in the order of
    :meth:`pixeldcn_core.LayerSpec.weight_shapes`; a live view of :data:`MODULES`."""

    def __getitem__(self, kind: str) -> Callable[..., torch.Tensor]:
        return MODULES[kind].function

    def __iter__(self) -> Iterator[str]:
        return iter(MODULES)

    def __len__(self) -> int:
        return len(MODULES)


FUNCTIONS: Mapping[str, Callable[..., torch.Tensor]] = _Functions()


def register_module(cls: _Layer) -> _Layer:
    """Register ``cls`` as the PyTorch module of the core kind ``cls.kind`` (usable as a decorator).

    Raises:
        UnknownKindError: ``cls.kind`` is not registered in the core.
        TypeError: ``cls`` is not an :class:`UpsampleLayer` with a ``function``.
    """
    if not (isinstance(cls, type) and issubclass(cls, UpsampleLayer)):
        raise TypeError(f"register_module expects an UpsampleLayer subclass, got {cls!r}")
    if not callable(getattr(cls, "function", None)):
        raise TypeError(f"{cls.__name__}.function must be the layer's functional form")
    MODULES[get_kind(cls.kind).name] = cls
    return cls


def unregister_module(kind: str) -> None:
    """Forget the module of ``kind`` (tests and plugins)."""
    MODULES.pop(get_kind(kind).name, None)


def module_for(kind: str) -> type[UpsampleLayer]:
    """The module class of ``kind`` (aliases accepted).

    Raises:
        UnknownKindError: the kind is unknown to the core, or has no PyTorch module yet.
    """
    info = get_kind(kind)
    if info.name not in MODULES:
        raise UnknownKindError(
            f"kind {info.name!r} has no PyTorch module; expected one of {', '.join(MODULES)} "
            "(register one with exporters.pytorch.register_module)"
        )
    return MODULES[info.name]


def make_layer(
    kind: str,
    in_channels: int,
    out_channels: int | None = None,
    kernel_size: int | None = None,
    bias: bool = False,
    **kwargs: Any,
) -> UpsampleLayer:
    """Build an up-sampling layer by kind name (aliases such as ``"PixelDCL"`` accepted).

    ``out_channels=None`` derives C for a kind whose channels follow Cin (``KindInfo.in_per_out``:
    ``bilinear`` keeps them, ``bilinear_additive`` divides them by 4).

    Raises:
        UnknownKindError: ``kind`` is not registered; the message lists the valid kinds.
        SpecError: channels or kernel size are invalid for the kind.
    """
    info = get_kind(kind)
    k = info.default_kernel if kernel_size is None else kernel_size
    return module_for(info.name)(in_channels, out_channels, k, bias, **kwargs)


def make_up_layers(
    kind: str, in_channels: int, out_channels: int, kernel_size: int | None = None, **kwargs: Any
) -> list[nn.Module]:
    """The modules of a network's up-sampling step ``in_channels -> out_channels``: the layer
    alone, or, for a kind whose channel rule cannot map them (``KindInfo.in_per_out``: bilinear
    keeps the channels, bilinear-additive divides them by 4), a 1 x 1 conv (no bias) to
    ``in_per_out * out_channels`` channels first, then the layer."""
    r = get_kind(kind).in_per_out
    if r is None or in_channels == r * out_channels:
        return [make_layer(kind, in_channels, out_channels, kernel_size, **kwargs)]
    return [nn.Conv2d(in_channels, r * out_channels, 1, bias=False),
            make_layer(kind, r * out_channels, out_channels, kernel_size, **kwargs)]
