"""Initialisations that start an up-sampling layer free of checkerboard artifacts.

A randomly (He) initialised deconvolution, PixelDCL or iPixelDCL paints a checkerboard from the
first step: its four output phases are four unrelated functions of the input (measured with
:func:`pixeldcn_core.checkerboard_index` on a photograph between fixed 1x1 convs: 0.94-0.96, the
photograph itself 0.004). The ``"bilinear"`` initialisations below make every layer start as
*a He-random convolution followed by bilinear x2 interpolation* (or preceded by it, for DCL), so
all four phases are samples of one smooth function: on a constant or linear input they are
exactly equal to the linear interpolation (interior pixels; the zero padding touches the border).

- DCL ``"bilinear"``: ``weight = bilinear (3 x 3) * g`` (full 2-D convolution) with ``g`` a
  He-random ``(k-2) x (k-2)`` kernel: zero-insertion, then the bilinear kernel (= bilinear
  interpolation), then ``g``. For ``k = 2`` the 2 x 2 box (nearest) replaces the bilinear kernel.
- PixelDCL ``"bilinear"``: ``w1`` He-random; ``w2`` the 2 x 2 average of ``F1``'s down-right
  neighbourhood per channel (``F2`` = the bilinear value at phase 11); ``w3`` 1/4 on its four used
  taps per channel (phases 01 and 10 = the mean of their four neighbours, exact on linear inputs).
- iPixelDCL ``"bilinear"``: ``w1`` He-random; ``w2`` as PixelDCL's on the ``F1`` channels;
  ``w3`` the horizontal (``F4``) and vertical (``F3``) pair means of ``F1``: exactly bilinear
  interpolation of ``F1``. For ``k = 1`` every phase copies ``F1`` (nearest).
- Sub-pixel ``"icnr"`` (Aitken et al. 2017): see :func:`icnr_`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._base import check_init, kaiming_normal_

__all__ = [
    "check_init",
    "dcl_bilinear_",
    "ipixel_dcl_bilinear_",
    "pixel_dcl_bilinear_",
]


@torch.no_grad()
def dcl_bilinear_(weight: torch.Tensor) -> torch.Tensor:
    """``weight [Cin, C, k, k]`` (ConvTranspose2d layout) := bilinear kernel (full-conv) g."""
    cin, c, k, _ = weight.shape
    if k >= 3:
        t = torch.tensor([0.5, 1.0, 0.5], dtype=weight.dtype, device=weight.device)
    else:  # k = 2: the box (nearest) is the only smooth hold that fits
        t = torch.tensor([1.0, 1.0], dtype=weight.dtype, device=weight.device)
    base = torch.outer(t, t)  # (3, 3) or (2, 2), every phase sums to 1
    g_side = k - base.shape[0] + 1
    g = kaiming_normal_(weight.new_empty(cin * c, 1, g_side, g_side), cin * g_side * g_side)
    full = F.conv2d(g, base.view(1, 1, *base.shape), padding=base.shape[0] - 1)  # (CinC, 1, k, k)
    return weight.copy_(full.view(cin, c, k, k))


def _quad_mean_(w: torch.Tensor, out: int, src: int, p: int) -> None:
    """Taps (p, p), (p, p+1), (p+1, p), (p+1, p+1) of ``w[out, src]`` := 1/4 each."""
    w[out, src, p : p + 2, p : p + 2] = 0.25


@torch.no_grad()
def pixel_dcl_bilinear_(w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor) -> None:
    """PixelDCL starting as a He-random conv followed by (near-)bilinear x2 interpolation."""
    c, cin, k, _ = w1.shape
    p = k // 2
    kaiming_normal_(w1, cin * k * k)
    w2.zero_()
    w3.zero_()
    for ch in range(c):
        _quad_mean_(w2, ch, ch, p)  # F2[i, j] = mean of F1 at (i..i+1, j..j+1)
        for r, s in ((p, p - 1), (p, p + 1), (p - 1, p), (p + 1, p)):
            w3[ch, ch, r, s] = 0.25  # y01, y10 = mean of their four neighbours


@torch.no_grad()
def ipixel_dcl_bilinear_(w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor) -> None:
    """iPixelDCL starting as a He-random conv followed by exact bilinear x2 interpolation."""
    c, cin, k, _ = w1.shape
    p = k // 2
    kaiming_normal_(w1, cin * k * k)
    w2.zero_()
    w3.zero_()
    for ch in range(c):
        f1 = cin + ch  # channel of F1 in concat(x, F1[, F2])
        if k == 1:
            w2[ch, f1, 0, 0] = w3[ch, f1, 0, 0] = w3[c + ch, f1, 0, 0] = 1.0
            continue
        _quad_mean_(w2, ch, f1, p)  # F2 (phase 11): mean of the 2 x 2 block
        w3[ch, f1, p, p] = w3[ch, f1, p + 1, p] = 0.5  # F3 (phase 10): vertical pair
        w3[c + ch, f1, p, p] = w3[c + ch, f1, p, p + 1] = 0.5  # F4 (phase 01): horizontal pair
