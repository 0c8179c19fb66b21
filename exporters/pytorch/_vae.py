"""A VAE for 64 x 64 images whose decoder up-samples with a chosen layer kind."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from pixeldcn_core import InputShapeError, SpecError

from ._registry import make_up_layers
from ._unet import require_x2_kind

__all__ = ["VAE", "VAEDecoder", "VAEEncoder"]

IMAGE_SIZE = 64
_START = 4  # the decoder starts at 4 x 4 and up-samples 4 times: 4 -> 8 -> 16 -> 32 -> 64


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"VAE: {name} must be an int >= {low}, got {value!r}")
    return value


class VAEEncoder(nn.Module):
    """``x [N, C, 64, 64] -> (mu, logvar)``, each ``[N, latent_dim]``: four stride-2 4x4 convs
    (+ BN + ReLU) to ``8 * base_channels`` channels at 4 x 4, then two linear heads."""

    def __init__(self, latent_dim: int, base_channels: int, image_channels: int = 3) -> None:
        super().__init__()
        c = base_channels
        chans = [image_channels, c, 2 * c, 4 * c, 8 * c]
        self.image_channels = image_channels
        self.convs = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )
                for cin, cout in itertools.pairwise(chans)
            )
        )
        self.mu = nn.Linear(8 * c * _START * _START, latent_dim)
        self.logvar = nn.Linear(8 * c * _START * _START, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Element by element (not as tuples): under export this pins H and W to 64.
        if (
            x.dim() != 4
            or x.shape[1] != self.image_channels
            or x.shape[2] != IMAGE_SIZE
            or x.shape[3] != IMAGE_SIZE
        ):
            raise InputShapeError(
                f"VAE: x must be [N, {self.image_channels}, {IMAGE_SIZE}, {IMAGE_SIZE}], "
                f"got shape {tuple(x.shape)}"
            )
        h = self.convs(x).flatten(1)  # (N, 8c * 4 * 4)
        return self.mu(h), self.logvar(h)


class VAEDecoder(nn.Module):
    """``z [N, latent_dim] -> image [N, C, 64, 64]`` in [0, 1].

    Linear to ``8c x 4 x 4`` (+ BN + ReLU), four x2 up-sampling layers of the chosen kind
    (``8c -> 4c -> 2c -> c -> c``, each + BN + ReLU), a 3x3 conv to the image channels, sigmoid.
    Exportable alone for serving: ``export_onnx(vae.decoder, path, input_shape=(1, latent_dim))``.
    """

    def __init__(
        self,
        latent_dim: int,
        base_channels: int,
        up: str = "pixel_dcl",
        *,
        up_kernel_size: int | None = None,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        c = base_channels
        self.latent_dim = latent_dim
        self.start_channels = 8 * c
        self.up_kind = require_x2_kind("VAEDecoder", up)
        self.fc = nn.Linear(latent_dim, 8 * c * _START * _START, bias=False)
        self.fc_bn = nn.BatchNorm2d(8 * c)
        chans = [8 * c, 4 * c, 2 * c, c, c]
        self.ups = nn.Sequential(
            *(
                nn.Sequential(
                    *make_up_layers(up, cin, cout, up_kernel_size),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )
                for cin, cout in itertools.pairwise(chans)
            )
        )
        self.head = nn.Conv2d(c, image_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise InputShapeError(
                f"VAE decoder: z must be [N, {self.latent_dim}], got shape {tuple(z.shape)}"
            )
        h = self.fc(z).view(-1, self.start_channels, _START, _START)  # (N, 8c, 4, 4)
        h = F.relu(self.fc_bn(h))
        h = self.ups(h)  # (N, c, 64, 64)
        return torch.sigmoid(self.head(h))


class VAE(nn.Module):
    """Variational auto-encoder for ``[N, 3, 64, 64]`` images in [0, 1].

    ``forward(x) -> (recon, mu, logvar)``; in training mode ``z = mu + eps * exp(logvar / 2)``,
    in eval mode ``z = mu`` (deterministic, what export uses). :attr:`decoder` maps
    ``z [N, latent_dim]`` to an image and is exportable alone.

    Args:
        latent_dim: size of z.
        base_channels: channels of the first encoder conv / last decoder layer (x2, x4, x8 deeper).
        up: up-sampling layer kind of the decoder.
        up_kernel_size: its kernel size; ``None`` takes the kind's default.
        image_channels: image channels (3).
    """

    #: Output names of the exported ONNX model (see :func:`exporters.pytorch.export_onnx`).
    onnx_output_names = ("recon", "mu", "logvar")

    def __init__(
        self,
        latent_dim: int = 128,
        base_channels: int = 32,
        up: str = "pixel_dcl",
        *,
        up_kernel_size: int | None = None,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        _check_int("latent_dim", latent_dim, 1)
        _check_int("base_channels", base_channels, 1)
        _check_int("image_channels", image_channels, 1)
        self.latent_dim = latent_dim
        self.encoder = VAEEncoder(latent_dim, base_channels, image_channels)
        self.decoder = VAEDecoder(
            latent_dim, base_channels, up, up_kernel_size=up_kernel_size,
            image_channels=image_channels,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar

    @staticmethod
    def loss(
        recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> torch.Tensor:
        """Negative ELBO per image: binary cross-entropy (summed over pixels) + KL(q(z|x) || N(0, I))."""
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return (bce + kl) / x.shape[0]
