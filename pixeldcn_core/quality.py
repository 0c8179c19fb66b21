"""Up-sampling quality: the checkerboard index of an image and the overlap map of a layer kind.

Numpy only, like the rest of the core, so it measures any model's output whichever runtime made it.

The **checkerboard index** of an image is the share of its AC power (mean removed per channel,
power summed over channels and batch) that lies within ``radius`` (default 1/8) cycle per pixel,
on each axis, of the ``stride**2 - 1`` aliasing frequencies ``(k1/stride, k2/stride)``,
``(k1, k2) != (0, 0)``, distances taken periodically on the unit frequency circle. A
period-``stride`` pattern lives exactly there (index ~1); interpolation puts almost nothing there
(bilinear/bicubic x2 of a photograph: < 0.02); a natural photograph has little there (~0.005);
white noise gets the band's area share (``3 * (2/8)**2 = 0.1875`` at stride 2).

Equivalent view: the band around the aliasing frequencies is what a period-``stride`` modulation
of a smooth image occupies, so the index is the power of the low-passed imbalance between the
``stride**2`` phase sub-images ``image[..., a::stride, b::stride]`` relative to the whole image.

>>> import numpy as np
>>> y = np.indices((64, 64)).sum(0) % 2 * 1.0   # a pure checkerboard
>>> round(checkerboard_index(y), 6)
1.0
>>> round(checkerboard_index(np.add.outer(np.arange(64.0), np.arange(64.0))), 3) < 0.05
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import InputShapeError, SpecError
from ._specs import LayerSpec, get_kind

__all__ = ["checkerboard_index", "checkerboard_map", "overlap_map"]

#: Default half-width of the band around each aliasing frequency, in cycles per pixel.
DEFAULT_RADIUS = 1 / 8


def _check_stride_radius(stride: Any, radius: Any) -> tuple[int, float]:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 2:
        raise SpecError(f"stride must be an int >= 2 (the up-sampling factor), got {stride!r}")
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.floating, np.integer)):
        raise SpecError(f"radius must be a float in (0, 0.5] cycles per pixel, got {radius!r}")
    r = float(radius)
    if not (0.0 < r <= 0.5):
        raise SpecError(f"radius must be in (0, 0.5] cycles per pixel, got {r}")
    return int(stride), r


def _as_image(image: Any, stride: int) -> np.ndarray:
    """``image`` as a float64 ``[N, C, H, W]`` array, every documented input problem rejected."""
    arr = np.asarray(image)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == bool
    ):
        raise InputShapeError(
            f"image must be a real (float, int or bool) array, got dtype {arr.dtype}"
        )
    if not 2 <= arr.ndim <= 4:
        raise InputShapeError(
            f"image must be (H, W), (C, H, W) or (N, C, H, W), got {arr.ndim}-D with shape "
            f"{tuple(arr.shape)}"
        )
    h, w = arr.shape[-2:]
    if min(h, w) < 2 * stride:
        raise InputShapeError(
            f"image of height x width {h} x {w} is too small for stride {stride}: each side must "
            f"be >= 2 * stride = {2 * stride}"
        )
    if arr.size == 0:
        raise InputShapeError(f"image is empty, shape {tuple(arr.shape)}")
    x = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputShapeError("image holds NaN or Inf values; expected finite values only")
    return x.reshape((-1, h, w))  # (N*C, H, W)


def _axis_band(n: int, stride: int, radius: float) -> np.ndarray:
    """``band[k, m]``: bin ``m`` of an ``n``-point DFT lies within ``radius`` of ``k / stride``.

    Bin ``m`` has frequency ``m / n``; the periodic distance to ``k / stride`` is computed in exact
    integers (units of ``1 / (n * stride)``), so bins exactly on the edge are counted: the band
    is closed.
    """
    m = np.arange(n)[None, :]
    k = np.arange(stride)[:, None]
    period = n * stride
    d = np.abs(m * stride - k * n) % period
    d = np.minimum(d, period - d)  # (stride, n) periodic distance in units of 1/(n*stride)
    return d <= radius * period * (1 + 1e-12)


def _band_mask(h: int, w: int, stride: int, radius: float, *, half: bool) -> np.ndarray:
    """Boolean ``(h, w)`` (or ``(h, w//2 + 1)`` when ``half``) mask of the aliasing band."""
    rows = _axis_band(h, stride, radius)  # (stride, h)
    cols = _axis_band(w, stride, radius)  # (stride, w)
    if half:
        cols = cols[:, : w // 2 + 1]
    mask = np.zeros((h, cols.shape[1]), dtype=bool)
    for k1 in range(stride):
        for k2 in range(stride):
            if k1 or k2:
                mask |= rows[k1][:, None] & cols[k2][None, :]
    return mask


def checkerboard_index(image: Any, stride: int = 2, *, radius: float = DEFAULT_RADIUS) -> float:
    """The share of an image's AC power that lies near the aliasing frequencies of ``stride``.

    Args:
        image: a real array (H, W), (C, H, W) or (N, C, H, W); computed in float64. Each side must
            be at least ``2 * stride``.
        stride: the up-sampling factor whose artifacts are measured (2 for x2 layers).
        radius: half-width of the band around each aliasing frequency, in cycles per pixel, on
            each axis (the band is a square per frequency). Bins exactly on the edge count (the
            band is closed): 256 x 256 white noise gives ``3 * 65**2 / 256**2 = 0.193`` on average
            at stride 2 (0.182 if the edge were excluded; the continuous area share is 0.1875).

    Returns:
        A float in [0, 1]: 0 when no AC power lies in the band, ~1 for a pure period-``stride``
        pattern. A constant image (no AC power at all) gives 0.0. Unchanged by scaling the image
        or adding a constant.

    Raises:
        InputShapeError: rank not 2-4, a side smaller than ``2 * stride``, a complex, object or
            string array, NaN or Inf values.
        SpecError: ``stride`` not an int >= 2, or ``radius`` outside (0, 0.5].
    """
    stride, radius = _check_stride_radius(stride, radius)
    x = _as_image(image, stride)  # (B, H, W)
    h, w = x.shape[-2:]
    spec = np.fft.rfft2(x)  # (B, H, W//2 + 1)
    power = (spec.real**2 + spec.imag**2).sum(axis=0)  # (H, W//2 + 1)
    # rfft keeps one of each conjugate pair: columns 1 .. ceil(W/2)-1 stand for two bins.
    weight = np.full(power.shape[1], 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    power = power * weight
    power[0, 0] = 0.0  # the mean (DC) of each channel is removed
    total = float(power.sum())
    if total <= 0.0 or total <= 1e-300:
        return 0.0
    band = float(power[_band_mask(h, w, stride, radius, half=True)].sum())
    return min(max(band / total, 0.0), 1.0)


def _box_blur(e: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size`` x ``size`` window (edges replicated), via cumulative sums."""
    p = size // 2
    padded = np.pad(e, ((p, size - 1 - p), (p, size - 1 - p)), mode="edge")
    c = np.cumsum(np.cumsum(padded, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    s = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return s / (size * size)


def checkerboard_map(
    image: Any, stride: int = 2, *, radius: float = DEFAULT_RADIUS, window: int = 16
) -> np.ndarray:
    """Where the checkerboard is: the local share of AC energy in the aliasing band, per pixel.

    The image (mean removed per channel) is split by the same band mask as
    :func:`checkerboard_index`; the band part's energy and the whole AC energy, summed over
    channels and batch, are each averaged over a ``window`` x ``window`` box, and their ratio is
    the map. By Parseval, ``band_energy.sum() / total_energy.sum()`` of the unsmoothed maps is
    exactly the index.

    Returns:
        float64 ``(H, W)`` array >= 0; ~0 where the image is smooth, ~1 where a period-``stride``
        pattern dominates. Not clipped: with a small window a pixel's band energy can exceed its
        total energy (the band part is not bounded pointwise), so values slightly above 1 occur.
    """
    stride, radius = _check_stride_radius(stride, radius)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise SpecError(f"window must be a positive int (pixels), got {window!r}")
    x = _as_image(image, stride)  # (B, H, W)
    h, w = x.shape[-2:]
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    mask = _band_mask(h, w, stride, radius, half=True)
    band = np.fft.irfft2(np.fft.rfft2(x) * mask, s=(h, w))  # (B, H, W)
    e_band = _box_blur((band**2).sum(axis=0), int(window))
    e_all = _box_blur((x**2).sum(axis=0), int(window))
    scale = float(e_all.max()) if e_all.size else 0.0
    out = np.where(e_all > 1e-12 * max(scale, 1e-300), e_band / np.maximum(e_all, 1e-300), 0.0)
    return out


def overlap_map(kind: str, kernel_size: int | None = None, *, size: int = 8) -> np.ndarray:
    """Odena et al.'s overlap picture of a layer kind: how unevenly kernel taps reach each output.

    The layer (1 output channel, the registry's weight shapes, every weight 1, no bias) applied by the
    core's reference to a constant ``size`` x ``size`` input of ones. Where every output pixel gets
    the same number of taps the map is flat (apart from the zero-padded border); a stride-2
    deconvolution whose kernel size is not a multiple of 2 shows the checkerboard.

    Args:
        kind: a registered layer kind (see :func:`pixeldcn_core.layer_kinds`).
        kernel_size: the kernel size; ``None`` takes the kind's default.
        size: side of the input (the output is ``2 * size``); at least 1.

    Returns:
        float64 ``(scale * size, scale * size)`` array (``scale`` of the kind: 2 for the
        up-sampling kinds).

    Raises:
        UnknownKindError: ``kind`` is not registered.
        SpecError: a kernel size the kind does not accept, or a bad ``size``.
    """
    from . import reference  # reference imports _specs only; imported here to keep this light

    info = get_kind(kind)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise SpecError(f"size must be a positive int (input side in pixels), got {size!r}")
    cin = info.in_per_out or 1  # 1 output channel: the input channels the kind's rule needs
    spec = LayerSpec(info.name, cin, 1, kernel_size)
    weights = {name: np.ones(shape) for name, shape in spec.weight_shapes().items()}
    y = reference.apply(spec.kind, np.ones((1, cin, int(size), int(size))), weights)
    return np.asarray(y[0, 0], dtype=np.float64)
