"""What every up-sampling module shares: spec, weight export, input checks, phase interleave."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core import InputShapeError, LayerSpec, WeightError

__all__ = ["Kernel", "UpsampleLayer", "check_input", "interleave", "kaiming_normal_"]


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


class UpsampleLayer(nn.Module):
    """Base of every up-sampling module: ``x [N, Cin, H, W] -> y [N, C, 2H, 2W]``.

    Subclasses set :attr:`kind` (a registered kind), create their parameters and implement
    ``forward``, :meth:`reset_parameters`, :meth:`onnx_weights` and :meth:`_load_onnx_weights`.
    """

    kind: ClassVar[str]
    #: The functional form ``f(x, *weights, bias)`` (weights in the core's order).
    function: ClassVar[Callable[..., torch.Tensor]]

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | None, bias: bool
    ) -> None:
        super().__init__()
        # LayerSpec checks everything up front and raises SpecError (a ValueError).
        spec = LayerSpec(self.kind, in_channels, out_channels, kernel_size, bias=bias)
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.kernel_size = spec.k

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

    def _onnx_tensors(self) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

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
        """A module of this kind holding ``weights`` (core layout); the spec is inferred."""
        spec = LayerSpec.from_weights(cls.kind, weights)
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
