"""pixeldcn_core.quality: the checkerboard index, its map, and the overlap map of every kind.

Every property of the index is measured twice: with the core's function and with an independent
transcription of the definition written here (explicit DFT matrices, float periodic distances,
a loop over the aliasing frequencies), and the two must agree to 1e-9.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pixeldcn_core import (
    InputShapeError,
    SpecError,
    UnknownKindError,
    checkerboard_index,
    checkerboard_map,
    get_kind,
    layer_kinds,
    overlap_map,
)

skimage = pytest.importorskip("skimage")
from skimage import data as skdata  # noqa: E402
from skimage.color import rgb2gray  # noqa: E402
from skimage.transform import rescale, resize  # noqa: E402


def dft_index(image: np.ndarray, stride: int = 2, radius: float = 1 / 8) -> float:
    """index = sum of |DFT|^2 over bins within radius (closed, periodic, per axis) of some
    (k1/s, k2/s) != (0, 0), over the sum of |DFT|^2 of every bin; mean removed per channel."""
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape[-2:]
    x = x.reshape(-1, h, w)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    dh = np.exp(-2j * np.pi * np.outer(np.arange(h), np.arange(h)) / h)  # DFT matrix
    dw = np.exp(-2j * np.pi * np.outer(np.arange(w), np.arange(w)) / w)
    power = sum(np.abs(dh @ c @ dw.T) ** 2 for c in x)  # (H, W)
    fy = np.arange(h)[:, None] / h
    fx = np.arange(w)[None, :] / w

    def near(f: np.ndarray, centre: float) -> np.ndarray:
        d = np.abs(f - centre) % 1.0
        return np.minimum(d, 1.0 - d) <= radius + 1e-12

    band = np.zeros((h, w), dtype=bool)
    for k1 in range(stride):
        for k2 in range(stride):
            if (k1, k2) != (0, 0):
                band |= near(fy, k1 / stride) & near(fx, k2 / stride)
    return float(power[band].sum() / power.sum())


def both(image: np.ndarray, stride: int = 2, radius: float = 1 / 8) -> float:
    got = checkerboard_index(image, stride, radius=radius)
    want = dft_index(image, stride, radius)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    return got


def gray(name: str) -> np.ndarray:
    im = getattr(skdata, name)()
    return rgb2gray(im) if im.ndim == 3 else im.astype(np.float64) / 255.0


def crop(x: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = x.shape
    return x[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]


def upsampled(name: str, s: int, order: int, side: int = 240) -> np.ndarray:
    """A photograph down-sampled by s (anti-aliased), then up-sampled by s (order 0/1/3)."""
    g = crop(gray(name), side)
    small = resize(g, (side // s, side // s), anti_aliasing=True)
    return rescale(small, s, order=order, anti_aliasing=False)


ORDINARY = ("astronaut", "camera", "coffee")


@pytest.mark.parametrize("stride", [2, 3])
def test_pure_period_stride_pattern_gives_at_least_0_99(stride):
    rng = np.random.default_rng(stride)
    tile = rng.standard_normal((stride, stride))
    image = np.tile(tile, (48 // stride * 1, 48 // stride * 1))  # sides multiples of the stride
    assert both(image, stride) >= 0.99


@pytest.mark.parametrize("name", ORDINARY)
@pytest.mark.parametrize("s", [2, 3])
@pytest.mark.parametrize("order", [1, 3])
def test_bilinear_and_bicubic_upsampling_of_photographs_give_at_most_0_02(name, s, order):
    assert both(upsampled(name, s, order), s) <= 0.02


@pytest.mark.parametrize("name", ORDINARY)
def test_nearest_x2_of_ordinary_photographs_gives_at_most_0_02(name):
    assert both(upsampled(name, 2, 0), 2) <= 0.02


def test_nearest_x2_of_grass_stays_below_0_05():
    assert both(upsampled("grass", 2, 0), 2) <= 0.05


@pytest.mark.parametrize("name", [*ORDINARY, "chelsea", "coins", "moon"])
def test_an_ordinary_photograph_itself_gives_at_most_0_05(name):
    assert both(crop(gray(name)), 2) <= 0.05


def test_white_noise_gives_the_closed_bands_area_share_about_0_193():
    # Closed band: 65 of 256 bins per axis within 1/8 (32 bins) of each centre: 3 * 65^2 / 256^2.
    rng = np.random.default_rng(0)
    values = [checkerboard_index(rng.standard_normal((256, 256))) for _ in range(8)]
    assert np.mean(values) == pytest.approx(3 * 65**2 / 256**2, abs=0.005)
    assert both(rng.standard_normal((64, 64))) == pytest.approx(3 * 17**2 / 64**2, abs=0.05)


def checker(h: int, w: int) -> np.ndarray:
    return np.where(np.indices((h, w)).sum(0) % 2 == 0, 1.0, -1.0)


def test_index_strictly_increases_with_the_amplitude_of_an_added_checkerboard():
    up = upsampled("camera", 2, 3, side=128)
    values = [both(up + a * checker(*up.shape)) for a in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3)]
    assert all(b > a for a, b in itertools.pairwise(values)), values


def test_index_is_unchanged_by_scaling_and_adding_a_constant():
    up = upsampled("astronaut", 2, 1, side=128) + 0.05 * checker(128, 128)
    base = both(up)
    assert checkerboard_index(3.7 * up) == pytest.approx(base, rel=1e-9)
    assert checkerboard_index(up + 42.0) == pytest.approx(base, rel=1e-9)
    assert checkerboard_index(-0.5 * up - 7.0) == pytest.approx(base, rel=1e-9)


def test_a_checkerboard_of_1_5_std_over_half_an_upsampled_photo_gives_at_least_0_3():
    up = upsampled("coffee", 2, 3, side=128)
    pattern = 1.5 * up.std() * checker(*up.shape)
    pattern[:, 64:] = 0.0
    assert both(up + pattern) >= 0.3


@pytest.mark.parametrize(
    "shape,stride,radius",
    [((17, 23), 2, 1 / 8), ((3, 20, 16), 2, 1 / 8), ((2, 3, 12, 18), 3, 1 / 8), ((16, 16), 4, 0.05),
     ((24, 20), 2, 0.2)],
)
def test_index_matches_the_independent_dft_definition_on_any_shape(shape, stride, radius):
    x = np.random.default_rng(1).standard_normal(shape) + np.linspace(0, 3, shape[-1])
    both(x, stride, radius)


def test_constant_image_has_index_zero_and_integer_images_are_accepted():
    assert checkerboard_index(np.full((8, 8), 3.0)) == 0.0
    ints = np.indices((8, 8)).sum(0) % 2
    assert checkerboard_index(ints) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "image,match",
    [
        (np.full((8, 8), np.nan), "NaN or Inf"),
        (np.array([[np.inf] * 8] * 8), "NaN or Inf"),
        (np.zeros(8), "got 1-D"),
        (np.zeros((1, 1, 1, 8, 8)), "got 5-D"),
        (np.zeros((3, 8)), "too small for stride 2: each side must be >= 2 \\* stride = 4"),
        (np.zeros((8, 8), dtype=complex), "real .* got dtype complex128"),
        (np.zeros((8, 8), dtype=object), "got dtype object"),
        (np.array([["a"] * 8] * 8), "got dtype <U1"),
    ],
)
def test_bad_images_raise_input_shape_error_saying_what_was_expected(image, match):
    with pytest.raises(InputShapeError, match=match):
        checkerboard_index(image)
    with pytest.raises(ValueError, match=match):
        checkerboard_map(image)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"stride": 1}, "stride must be an int >= 2.*got 1"),
        ({"stride": 2.0}, "stride must be an int >= 2.*got 2.0"),
        ({"stride": True}, "stride must be an int >= 2"),
        ({"radius": 0.0}, "radius must be in \\(0, 0.5\\].*got 0.0"),
        ({"radius": 0.7}, "radius must be in \\(0, 0.5\\].*got 0.7"),
        ({"radius": "wide"}, "radius must be a float"),
    ],
)
def test_bad_stride_or_radius_raise_spec_error(kwargs, match):
    with pytest.raises(SpecError, match=match):
        checkerboard_index(np.zeros((16, 16)), **kwargs)


def test_checkerboard_map_sums_to_the_index_and_finds_the_checkerboarded_half():
    up = upsampled("camera", 2, 3, side=128)
    x = up + 0.05 * checker(128, 128) * (np.arange(128) < 64)[None, :]
    # window=1 is no smoothing: by Parseval the energy ratio of the sums is the index itself.
    m1 = checkerboard_map(x, window=1)
    assert m1.shape == (128, 128)
    centred = x - x.mean()
    # band energy per pixel = m1 * total energy per pixel
    assert float((m1 * centred**2).sum() / (centred**2).sum()) == pytest.approx(
        checkerboard_index(x), rel=1e-6
    )
    m = checkerboard_map(x)
    assert m[:, 8:56].mean() > 5 * m[:, 72:120].mean()
    assert m.min() >= 0.0 and m.max() <= 1.5


def taps_per_output_dcl(k: int, size: int) -> np.ndarray:
    """DCL with all-one weights on ones: count, per output pixel, the (input, tap) pairs that
    reach it under TF 'SAME' (docs/design.md: the first 0, 1, 2 rows cropped for k = 3, 4, 6)."""
    begin = {3: 0, 4: 1, 6: 2}[k]
    out = np.zeros(2 * size)
    for o in range(2 * size):
        out[o] = sum(1 for i in range(size) for r in range(k) if 2 * i + r - begin == o)
    return np.outer(out, out)


@pytest.mark.parametrize("k", [3, 4, 6])
def test_dcl_overlap_map_counts_the_taps_reaching_each_output(k):
    got = overlap_map("dcl", k, size=6)
    np.testing.assert_array_equal(got, taps_per_output_dcl(k, 6))
    interior = got[4:-4, 4:-4]
    assert (interior.min() == interior.max()) == (k % 2 == 0)  # uneven exactly for odd k


@pytest.mark.parametrize("kind", layer_kinds())
def test_overlap_map_exists_for_every_registered_kind(kind):
    scale = getattr(get_kind(kind), "scale", 2)  # 1 for a size-keeping kind (ipixel_cl)
    m = overlap_map(kind, size=6)
    assert m.shape == (6 * scale, 6 * scale)
    assert np.all(np.isfinite(m)) and m[2:4, 2:4].min() > 0


def test_overlap_maps_of_resize_and_subpixel_are_flat_inside():
    for kind in ("resize_conv", "subpixel_conv"):
        m = overlap_map(kind, 3, size=6)
        assert np.all(m[2:-2, 2:-2] == 9.0), kind


def test_overlap_map_rejects_unknown_kind_bad_kernel_and_size():
    with pytest.raises(UnknownKindError, match="unknown up-sampling layer kind 'deconv9'"):
        overlap_map("deconv9")
    with pytest.raises(SpecError, match="kernel_size must be an odd integer"):
        overlap_map("pixel_dcl", 4)
    with pytest.raises(SpecError, match="size must be a positive int"):
        overlap_map("dcl", size=0)
