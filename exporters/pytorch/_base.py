"""What every up-sampling module shares: spec, weight export, input checks, phase interleave."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core import InputShapeError, LayerSpec, SpecError, WeightError, get_kind

__all__ = ["Kernel", "UpsampleLayer", "check_init", "check_input", "interleave", "kaiming_normal_"]


def check_input(x: torch.Tensor, in_channels: int, name: str) -> None:
    """Raise :class:`InputShapeError` unless ``x`` is ``[N, in_channels, H, W]``."""
    if x.dim() != 4:
        raise InputShapeError(
            f"{name}: x must be 4-D [N, C, H, W], got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise InputShapeError(
            f"{name}: got x.shape[1]={x.shape[1]} channels, while in_channels={in_channels}"
        )


def interleave(
    y00: torch.Tensor, y01: torch.Tensor, y10: torch.Tensor, y11: torch.Tensor
) -> torch.Tensor:
    """Place four ``[N, C, H, W]`` phases into ``[N, C, 2H, 2W]``: ``y[..., a::2, b::2] = y_ab``.

    Stacking on a new axis after the channels makes channel ``4c + 2a + b`` hold (c, phase a, b),
    which is the order ``pixel_shuffle`` (DepthToSpace CRD) reads.
    """
    stacked = torch.stack([y00, y01, y10, y11], dim=2)  # (N, C, 4, H, W)
    return F.pixel_shuffle(stacked.flatten(1, 2), 2)  # (N, 4C, H, W) -> (N, C, 2H, 2W)


def add_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return y if bias is None else y + bias.view(1, -1, 1, 1)


@torch.no_grad()
def kaiming_normal_(w: torch.Tensor, fan_in: int) -> torch.Tensor:
    """He normal init for a layer followed by ReLU: std = sqrt(2 / fan_in), fan_in counted as the
    number of weights that actually reach one output value (masked taps excluded)."""
    return w.normal_(0.0, math.sqrt(2.0 / max(fan_in, 1)))


class Kernel(nn.Module):
    """Holds one conv kernel as ``weight``; the owning layer decides how it is applied.

    The layers keep the paper's parameterisation (``conv1.weight`` = w1 ...), not ``nn.Conv2d``
    modules, because some kernels (PixelDCL's masked ``w3``) are not applied as an ordinary conv.
    """

    def __init__(self, shape: tuple[int, ...], **factory: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shape, **factory))

    def extra_repr(self) -> str:
        return f"weight: {tuple(self.weight.shape)}"


def check_init(kind: str, init: str | None, inits: Sequence[str]) -> str:
    """``init`` normalised (``None`` -> the first, i.e. default, of ``inits``), or SpecError."""
    if init is None:
        return inits[0]
    if not isinstance(init, str) or init.strip().lower() not in inits:
        raise SpecError(f"{kind}: unknown init {init!r}; expected one of {', '.join(inits)}")
    return init.strip().lower()


class _RegistryInits:
    """``cls.inits``: the kind's initialisations, read from the core registry (one list)."""

    def __get__(self, obj: object, cls: type[UpsampleLayer]) -> tuple[str, ...]:
        return get_kind(cls.kind).inits


class UpsampleLayer(nn.Module):
    """Base of every up-sampling module: ``x [N, Cin, H, W] -> y [N, C, s*H, s*W]``.

    A subclass sets :attr:`kind` (a kind registered in the core), :attr:`function` (its
    functional form) and, when its weights are not one ``weight`` parameter, :attr:`param_names`.
    The base builds the parameters from the registry's weight shapes, checks the spec and the
    ``init`` name, runs ``forward`` through ``function`` and maps the weights to and from the
    core's layout. Override :meth:`reset_parameters` for another initialisation than He normal
    with the registry's fan-in, and :meth:`from_deconv` to take over a deconvolution's weights.

    Args:
        in_channels: Cin.
        out_channels: C (``None``: derived, for a kind whose channels follow Cin).
        kernel_size: k (``None``: the kind's default).
        bias: add a learnable per-channel bias (zero at init).
        init: one of :attr:`inits` (``None``: the first, the kind's default).
        device, dtype: where and in which dtype the parameters are created.
    """

    kind: ClassVar[str]
    #: The functional form ``f(x, *weights, bias)`` (weights in the core's order).
    function: ClassVar[Callable[..., torch.Tensor]]
    #: Core weight name -> attribute: ``"weight"`` (a parameter) or a submodule name holding a
    #: :class:`Kernel` (state_dict key ``<name>.weight``), e.g. ``{"w1": "conv1", ...}``.
    param_names: ClassVar[Mapping[str, str]] = {"weight": "weight"}
    #: The initialisations this kind accepts (the registry's ``KindInfo.inits``).
    inits: ClassVar[tuple[str, ...]] = _RegistryInits()  # type: ignore[assignment]

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | None = None,
        bias: bool = False,
        *,
        init: str | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        # LayerSpec checks everything up front and raises SpecError (a ValueError).
        spec = LayerSpec(self.kind, in_channels, out_channels, kernel_size, bias=bias)
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.kernel_size = spec.k
        self.init = check_init(self.kind, init, self.inits)
        factory = {"device": device, "dtype": dtype}
        for name, shape in spec.weight_shapes().items():
            if name == "bias":
                continue
            attr = self.param_names[name]
            if attr == "weight":
                self.weight = nn.Parameter(torch.empty(shape, **factory))
            else:
                setattr(self, attr, Kernel(shape, **factory))
        self._make_bias(bias, **factory)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He normal, std = sqrt(2 / fan_in) with the registry's fan-in of each weight; bias 0."""
        fan_in = get_kind(self.kind).fan_in
        for name, w in self._onnx_tensors().items():
            kaiming_normal_(w, fan_in(name, tuple(w.shape)))
        if self.bias is not None:
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, type(self).__name__)
        return self.function(x, *self._onnx_tensors().values(), self.bias)

    @property
    def spec(self) -> LayerSpec:
        """The layer as a :class:`pixeldcn_core.LayerSpec` (what the ONNX emitter builds)."""
        return LayerSpec(
            self.kind, self.in_channels, self.out_channels, self.kernel_size,
            bias=self.bias is not None,
        )

    bias: nn.Parameter | None

    def _make_bias(self, bias: bool, **factory: Any) -> None:
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.out_channels, **factory))
        else:
            self.register_parameter("bias", None)

    def onnx_weights(self) -> dict[str, np.ndarray]:
        """The weights in the core's layout (see :meth:`LayerSpec.weight_shapes`), float32."""
        out = {name: _np(t) for name, t in self._onnx_tensors().items()}
        if self.bias is not None:
            out["bias"] = _np(self.bias)
        return out

    def _onnx_tensors(self) -> dict[str, torch.Tensor]:
        """The weight tensors (parameters, not copies) by core name, in the core's order."""
        out = {}
        for name, attr in self.param_names.items():
            held = getattr(self, attr)
            out[name] = held if attr == "weight" else held.weight
        return out

    @torch.no_grad()
    def load_onnx_weights(self, weights: Mapping[str, Any]) -> None:
        """Copy weights given in the core's layout into this module (all checked first).

        Raises:
            WeightError: a weight is missing, unexpected or mis-shaped (all listed at once).
        """
        checked = self.spec.check_weights(weights)
        if "bias" in checked and self.bias is None:
            raise WeightError(f"{self.kind}: got a 'bias' but this layer was built with bias=False")
        for name, target in self._onnx_tensors().items():
            target.copy_(torch.as_tensor(checked[name]))
        if self.bias is not None:
            self.bias.copy_(torch.as_tensor(checked.get("bias", np.zeros(self.out_channels))))

    @classmethod
    def from_onnx_weights(cls, weights: Mapping[str, Any], **kwargs: Any) -> UpsampleLayer:
        """A module of this kind holding ``weights`` (core layout); the spec is inferred
        (a kind without weights also takes ``in_channels=``)."""
        spec = LayerSpec.from_weights(cls.kind, weights, in_channels=kwargs.pop("in_channels", None))
        layer = cls(spec.in_channels, spec.out_channels, spec.k, bias=spec.bias, **kwargs)
        layer.load_onnx_weights(weights)
        return layer

    @classmethod
    def from_deconv(cls, old: nn.ConvTranspose2d, **kwargs: Any) -> tuple[UpsampleLayer, str]:
        """The replacement of an x2 ``ConvTranspose2d`` (see :func:`convert_deconvs`): same
        channels, bias, device and dtype, freshly initialised. Returns the layer and a note.

        A kind that can reproduce the deconvolution exactly (DCL) overrides this to copy it.
        """
        w = old.weight
        layer = cls(old.in_channels, old.out_channels, bias=old.bias is not None,
                    device=w.device, dtype=w.dtype, **kwargs)
        return layer, "freshly initialised"

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}"
        )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float32).numpy().copy()
