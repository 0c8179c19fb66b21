"""CARAFE x2 (Wang et al. 2019): :func:`carafe2d` and :class:`CARAFE2d`, mmcv-compatible.

:class:`CARAFE2d` holds mmcv's ``CARAFEPack`` parameters under mmcv's names (two ``nn.Conv2d``
submodules), so a state dict trained with ``mmcv.ops.CARAFEPack(channels=C, scale_factor=2,
up_kernel=k, up_group=1, encoder_kernel=k_enc, encoder_dilation=1, compressed_channels=Cm)``
loads with ``load_state_dict`` as it is::

    mmcv key                      CARAFE2d key                  core weight (ONNX)
    channel_compressor.weight     channel_compressor.weight     compressor_weight [Cm, C, 1, 1]
    channel_compressor.bias       channel_compressor.bias       compressor_bias   [Cm]
    content_encoder.weight        content_encoder.weight        encoder_weight    [4k^2, Cm, ke, ke]
    content_encoder.bias          content_encoder.bias          encoder_bias      [4k^2]

(:meth:`CARAFE2d.from_mmcv` builds the layer from such a state dict, prefix allowed.) The
computation is mmcv's too: ``pixel_shuffle`` of the encoder output (channel ``4t + 2a + b`` = tap
t of phase (a, b)), softmax over the ``k^2`` taps, tap ``t = (dy + r) k + (dx + r)`` weighting
input pixel ``(i + dy, j + dx)`` of output pixel ``(2i + a, 2j + b)``, zero outside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core import LayerSpec, SpecError, WeightError

from .._base import UpsampleLayer, add_bias, check_init, check_input, kaiming_normal_
from .._registry import register_module

__all__ = ["CARAFE2d", "carafe2d"]

_MMCV_KEYS = {
    "compressor_weight": "channel_compressor.weight",
    "compressor_bias": "channel_compressor.bias",
    "encoder_weight": "content_encoder.weight",
    "encoder_bias": "content_encoder.bias",
}


def carafe2d(
    x: torch.Tensor,
    compressor_weight: torch.Tensor,
    compressor_bias: torch.Tensor,
    encoder_weight: torch.Tensor,
    encoder_bias: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """CARAFE x2: compressor, content encoder, softmax-normalised ``k x k`` kernels per output
    pixel, reassembly of the input's neighbourhoods. The kernels are used at input resolution
    (``[N, k^2, 4, H, W]``, one set per output phase) and the reassembly is a sum over the
    ``k^2`` taps of shifted views of the zero-padded input, so neither a ``2H x 2W`` kernel map
    nor the ``k^2``-fold neighbourhood tensor of ``unfold`` is built (3.7x faster than
    ``unfold`` + ``einsum`` in eager inference, 3.0x per training step, at 64 channels, 64 x 64,
    k = 5, one CPU thread: medians of 10 paired rounds).

    Args:
        x (Tensor[batch_size, channels, in_height, in_width]): input.
        compressor_weight (Tensor[compressed_channels, channels, 1, 1]), compressor_bias.
        encoder_weight (Tensor[4 * k * k, compressed_channels, k_enc, k_enc]), encoder_bias;
            k (the reassembly kernel) and k_enc odd.
        bias (Tensor[channels], optional): added to every output pixel.

    Returns:
        Tensor[batch_size, channels, 2 * in_height, 2 * in_width]
    """
    n, c, h, w = x.shape
    k = math.isqrt(int(encoder_weight.shape[0]) // 4)
    ke = int(encoder_weight.shape[-1])
    z = F.conv2d(x, compressor_weight, compressor_bias)
    logits = F.conv2d(z, encoder_weight, encoder_bias, padding=ke // 2)  # (N, 4k^2, H, W)
    kernels = F.softmax(logits.view(n, k * k, 4, h, w), dim=1)  # channel 4t + phase
    r = k // 2
    padded = F.pad(x, (r, r, r, r))[:, :, None]  # (N, C, 1, H + 2r, W + 2r)
    y = x.new_zeros(n, c, 4, h, w)
    for t in range(k * k):  # tap t = row * k + col weights input pixel (i + row - r, j + col - r)
        row, col = divmod(t, k)
        y = y + padded[..., row:row + h, col:col + w] * kernels[:, None, t]
    return add_bias(F.pixel_shuffle(y.reshape(n, 4 * c, h, w), 2), bias)


class CARAFE2d(UpsampleLayer):
    """CARAFE: ``x [N, C, H, W] -> y [N, C, 2H, 2W]`` by content-aware reassembly.

    Parameters (mmcv ``CARAFEPack``'s, under its names): ``channel_compressor`` (1 x 1 conv
    ``C -> Cm``) and ``content_encoder`` (``k_enc x k_enc`` conv ``Cm -> 4 k^2``); optional
    ``bias [C]`` (not in the paper). Initialisation ``"box"`` (default, mmcv's): compressor
    Xavier uniform, encoder normal with std 0.001, biases zero, so the kernels start near
    uniform (a ``k x k`` box filter of the nearest x2 map); ``"default"``: He normal.

    Args:
        in_channels: C.
        out_channels: must equal ``in_channels`` (``None``: the same).
        kernel_size: the reassembly kernel k_up, odd (default 5).
        bias: add a learnable per-channel bias after the reassembly.
        compressed_channels: Cm (default ``min(C, 64)``; mmcv's default is 64).
        encoder_kernel: k_enc, odd (default 3).
        init: ``"box"`` or ``"default"``.
        device, dtype: where and in which dtype the parameters are created.
    """

    kind = "carafe"
    function = staticmethod(carafe2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | None = None,
        bias: bool = False,
        *,
        compressed_channels: int | None = None,
        encoder_kernel: int | None = None,
        init: str | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        # Not UpsampleLayer.__init__: that one makes flat parameters; CARAFE keeps mmcv's two
        # Conv2d submodules, so that mmcv state dicts load as they are.
        nn.Module.__init__(self)
        params = {"compressed_channels": compressed_channels, "encoder_kernel": encoder_kernel}
        spec = LayerSpec(self.kind, in_channels,
                         in_channels if out_channels is None else out_channels, kernel_size,
                         bias=bias, params={k: v for k, v in params.items() if v is not None})
        shapes = spec.weight_shapes()  # checks encoder_kernel's oddness
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.kernel_size = spec.k
        self.compressed_channels = spec.param_values["compressed_channels"]
        self.encoder_kernel = spec.param_values["encoder_kernel"]
        self.init = check_init(self.kind, init, self.inits)
        factory = {"device": device, "dtype": dtype}
        cm, ke = self.compressed_channels, self.encoder_kernel
        self.channel_compressor = nn.Conv2d(spec.in_channels, cm, 1, **factory)
        self.content_encoder = nn.Conv2d(cm, shapes["encoder_weight"][0], ke, padding=ke // 2,
                                         **factory)
        self._make_bias(bias, **factory)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        comp, enc = self.channel_compressor, self.content_encoder
        if self.init == "box":  # mmcv CARAFEPack.init_weights
            nn.init.xavier_uniform_(comp.weight)
            nn.init.normal_(enc.weight, 0.0, 0.001)
        else:
            kaiming_normal_(comp.weight, self.in_channels)
            kaiming_normal_(enc.weight, self.compressed_channels * self.encoder_kernel**2)
        for b in (comp.bias, enc.bias, self.bias):
            if b is not None:
                b.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each class has its own forward (not the base's): torch.compile caches per code object.
        check_input(x, self.in_channels, "CARAFE2d")
        return carafe2d(x, self.channel_compressor.weight, self.channel_compressor.bias,
                        self.content_encoder.weight, self.content_encoder.bias, self.bias)

    @property
    def spec(self) -> LayerSpec:
        return LayerSpec(self.kind, self.in_channels, self.out_channels, self.kernel_size,
                         bias=self.bias is not None,
                         params={"compressed_channels": self.compressed_channels,
                                 "encoder_kernel": self.encoder_kernel})

    def _onnx_tensors(self) -> dict[str, torch.Tensor]:
        comp, enc = self.channel_compressor, self.content_encoder
        return {"compressor_weight": comp.weight, "compressor_bias": comp.bias,
                "encoder_weight": enc.weight, "encoder_bias": enc.bias}

    @classmethod
    def from_onnx_weights(cls, weights: Mapping[str, Any], **kwargs: Any) -> CARAFE2d:
        """A CARAFE2d holding ``weights`` (core layout); Cm and k_enc are read from them."""
        spec = LayerSpec.from_weights(cls.kind, weights, in_channels=kwargs.pop("in_channels", None))
        layer = cls(spec.in_channels, spec.out_channels, spec.k, bias=spec.bias,
                    **spec.param_values, **kwargs)
        layer.load_onnx_weights(weights)
        return layer

    @classmethod
    def from_mmcv(cls, state_dict: Mapping[str, Any], prefix: str = "", **kwargs: Any) -> CARAFE2d:
        """The layer of an mmcv ``CARAFEPack(scale_factor=2, up_group=1, encoder_dilation=1)``
        state dict (keys ``<prefix>channel_compressor.weight`` ...); k, Cm and k_enc from the
        shapes, no output bias.

        Raises:
            WeightError: a key is missing or the shapes do not fit (e.g. another scale factor).
        """
        missing = [prefix + key for key in _MMCV_KEYS.values() if prefix + key not in state_dict]
        if missing:
            raise WeightError(f"from_mmcv: missing keys {missing} (prefix={prefix!r})")
        weights = {name: _np(state_dict[prefix + key]) for name, key in _MMCV_KEYS.items()}
        return cls.from_onnx_weights(weights, **kwargs)

    @classmethod
    def from_deconv(cls, old: nn.ConvTranspose2d, **kwargs: Any) -> tuple[UpsampleLayer, str]:
        """A fresh CARAFE2d of the deconvolution's channels; CARAFE keeps the channels, so only
        a ``ConvTranspose2d`` with ``in_channels == out_channels`` can be replaced."""
        if old.in_channels != old.out_channels:
            raise SpecError(
                f"carafe keeps the channels, so it replaces only a ConvTranspose2d with "
                f"in_channels == out_channels; got {old.in_channels} -> {old.out_channels} "
                f"(pick a kind with a conv, e.g. resize_conv, or add a 1x1 conv)"
            )
        return super().from_deconv(old, **kwargs)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, kernel_size={self.kernel_size}, compressed_channels="
                f"{self.compressed_channels}, encoder_kernel={self.encoder_kernel}, "
                f"bias={self.bias is not None}")


def _np(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to(device="cpu", dtype=torch.float32).numpy().copy()
    return np.asarray(t, dtype=np.float32)


register_module(CARAFE2d)
