"""The reference itself, checked against the hand-written formulas of docs/design.md."""

from __future__ import annotations

import numpy as np
import pytest

import pixeldcn_core as pc
from pixeldcn_core import reference as R

from .conftest import fit_channels, fit_hw

TOL = 1e-12  # float64 reference vs float64 formulas: only summation order differs


def _shift(f: np.ndarray, di: int, dj: int) -> np.ndarray:
    """out[i, j] = f[i + di, j + dj], zero when out of range."""
    out = np.zeros_like(f)
    h, w = f.shape[-2:]
    src = f[..., max(di, 0) : h + min(di, 0), max(dj, 0) : w + min(dj, 0)]
    out[..., max(-di, 0) : h - max(di, 0), max(-dj, 0) : w - max(dj, 0)] = src
    return out


def _dot(w: np.ndarray, f: np.ndarray) -> np.ndarray:
    return np.einsum("oc,nchw->nohw", w, f)


def test_pixel_dcl_k3_equals_the_four_tap_formulas_of_design_md():
    """y01 = w3[1,0].F1[i,j] + w3[1,2].F1[i,j+1] + w3[0,1].F2[i-1,j] + w3[2,1].F2[i,j]; y10 alike."""
    w = pc.LayerSpec("pixel_dcl", 3, 4).random_weights(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    f1 = R.conv2d(x, w["w1"].astype(np.float64))
    f2 = R.conv2d(f1, w["w2"].astype(np.float64))
    w3 = w["w3"].astype(np.float64)
    y01 = (_dot(w3[:, :, 1, 0], f1) + _dot(w3[:, :, 1, 2], _shift(f1, 0, 1))
           + _dot(w3[:, :, 0, 1], _shift(f2, -1, 0)) + _dot(w3[:, :, 2, 1], f2))
    y10 = (_dot(w3[:, :, 0, 1], f1) + _dot(w3[:, :, 2, 1], _shift(f1, 1, 0))
           + _dot(w3[:, :, 1, 0], _shift(f2, 0, -1)) + _dot(w3[:, :, 1, 2], f2))
    y = R.pixel_dcl(x, **w)
    np.testing.assert_allclose(y[..., 0::2, 0::2], f1, atol=TOL)
    np.testing.assert_allclose(y[..., 1::2, 1::2], f2, atol=TOL)
    np.testing.assert_allclose(y[..., 0::2, 1::2], y01, atol=TOL)
    np.testing.assert_allclose(y[..., 1::2, 0::2], y10, atol=TOL)


def test_pixel_dcl_masked_taps_do_not_change_the_output():
    w = pc.LayerSpec("pixel_dcl", 2, 2, 5).random_weights(seed=1)
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4))
    w_changed = dict(w, w3=w["w3"] + 100.0 * (1.0 - R.pixel_dcl_mask(5)).astype(np.float32))
    np.testing.assert_allclose(R.pixel_dcl(x, **w), R.pixel_dcl(x, **w_changed), atol=TOL)


def test_pixel_dcl_mask_k3_is_the_four_neighbours():
    np.testing.assert_array_equal(R.pixel_dcl_mask(3), [[0, 1, 0], [1, 0, 1], [0, 1, 0]])


def test_ipixel_dcl_phases_are_f1_f4_f3_f2():
    w = pc.LayerSpec("ipixel_dcl", 2, 3).random_weights(seed=2)
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 5))
    f1 = R.conv2d(x, w["w1"].astype(np.float64))
    f2 = R.conv2d(np.concatenate([x, f1], 1), w["w2"].astype(np.float64))
    f34 = R.conv2d(np.concatenate([x, f1, f2], 1), w["w3"].astype(np.float64))
    y = R.ipixel_dcl(x, **w)
    np.testing.assert_allclose(y[..., 0::2, 0::2], f1, atol=TOL)
    np.testing.assert_allclose(y[..., 1::2, 1::2], f2, atol=TOL)
    np.testing.assert_allclose(y[..., 1::2, 0::2], f34[:, :3], atol=TOL)
    np.testing.assert_allclose(y[..., 0::2, 1::2], f34[:, 3:], atol=TOL)


@pytest.mark.parametrize("k,begin", [(3, 0), (4, 1), (6, 2), (2, 0), (5, 1)])
def test_dcl_of_a_unit_impulse_places_the_kernel_at_tf_same_offset(k, begin):
    """x = delta at (1, 1) -> y[2 + p - begin, 2 + q - begin] = w[p, q] (TF 'SAME' crop)."""
    assert R.dcl_padding(k)[0] == begin
    assert sum(R.dcl_padding(k)) == max(k - 2, 0)
    w = np.arange(k * k, dtype=np.float64).reshape(1, 1, k, k) + 1
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = 1
    y = R.dcl(x, w)
    assert y.shape == (1, 1, 8, 8)
    for p in range(k):
        for q in range(k):
            i, j = 2 + p - begin, 2 + q - begin
            if 0 <= i < 8 and 0 <= j < 8:
                assert y[0, 0, i, j] == w[0, 0, p, q]
    assert y.sum() == sum(
        w[0, 0, p, q] for p in range(k) for q in range(k)
        if 0 <= 2 + p - begin < 8 and 0 <= 2 + q - begin < 8
    )


def _full_transposed_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Stride-2 transposed conv with no cropping: ``2(H-1) + k`` rows (input (i, j) scatters its
    kernel to (2i + p, 2j + q)), written independently of the reference."""
    n, _, h, wd = x.shape
    k = w.shape[2]
    full = np.zeros((n, w.shape[1], 2 * (h - 1) + k, 2 * (wd - 1) + k))
    for i in range(h):
        for j in range(wd):
            full[:, :, 2 * i : 2 * i + k, 2 * j : 2 * j + k] += np.einsum(
                "ni,iopq->nopq", x[:, :, i, j], w
            )
    return full


def test_dcl_k3_is_not_pytorch_padding1_output_padding1():
    """TF 'SAME' keeps rows [0, 2H) of the full k = 3 transposed conv; the tempting PyTorch
    padding=1, output_padding=1 keeps rows [1, 2H + 1): same size, shifted by one pixel."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((2, 3, 3, 3))
    full = _full_transposed_conv(x, w)
    tempting = full[:, :, 1 : 1 + 10, 1 : 1 + 8]  # padding=1 cropped at the start, +1 at the end
    y = R.dcl(x, w)
    assert y.shape == tempting.shape == (1, 3, 10, 8)
    np.testing.assert_allclose(y, full[:, :, :10, :8], rtol=0, atol=TOL)
    assert np.abs(y - tempting).max() > 0.1  # not the same map ...
    np.testing.assert_allclose(y[:, :, 1:, 1:], tempting[:, :, :-1, :-1], rtol=0, atol=TOL)  # ... shifted


def test_pixel_shuffle_takes_channel_4c_plus_2a_plus_b():
    z = np.arange(8, dtype=np.float64).reshape(1, 8, 1, 1)  # C = 2
    y = R.pixel_shuffle(z)
    assert y.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(y[0, 0], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(y[0, 1], [[4, 5], [6, 7]])


def test_resize_conv_with_a_1x1_identity_kernel_is_nearest_upsampling():
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 4))
    y = R.resize_conv(x, np.eye(2).reshape(2, 2, 1, 1))
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))


def test_bias_is_added_to_every_output_pixel_of_every_kind():
    for kind in pc.layer_kinds():
        spec = pc.LayerSpec(kind, *fit_channels(kind, 2, 3), bias=True)
        w = spec.random_weights(seed=4)
        x = np.random.default_rng(4).standard_normal((1, spec.in_channels, *fit_hw(kind, 3, 3)))
        no_bias = {n: v for n, v in w.items() if n != "bias"}
        diff = R.apply(kind, x, w) - R.apply(kind, x, no_bias)
        np.testing.assert_allclose(diff, np.broadcast_to(w["bias"][None, :, None, None], diff.shape),
                                   atol=1e-6)
