"""Initialisations of the up-sampling modules: artifact-free starts, measured with the index.

The index at init is measured as issue 11 states it: C -> C layers between two fixed random 1x1
convs, on a photograph down-sampled x2 (smaller here: 16 channels, 96 x 96, 3 seeds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exporters.pytorch import MODULES
from pixeldcn_core import SpecError, checkerboard_index, get_kind

from .conftest import fit_channels

skimage = pytest.importorskip("skimage")
from skimage import data as skdata  # noqa: E402
from skimage.transform import resize  # noqa: E402

KINDS = sorted(MODULES)
#: (kind, init) pairs meant to start free of checkerboard artifacts.
ARTIFACT_FREE = [
    ("dcl", "bilinear"), ("pixel_dcl", "bilinear"), ("ipixel_dcl", "bilinear"),
    ("resize_conv", "default"), ("subpixel_conv", "icnr"),
    # CARAFE: every output pixel is a convex combination of its input neighbourhood, whatever
    # the init (measured 0.005 with "box", 0.010 with He)
    ("carafe", "box"), ("carafe", "default"),
]
#: (kind, init) pairs that start checkerboarded (He-random phases).
CHECKERBOARDED = [("dcl", "default"), ("pixel_dcl", "default"), ("ipixel_dcl", "default"),
                  ("subpixel_conv", "default")]


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    im = skdata.astronaut()[64:256, 160:352].astype(np.float64) / 255.0  # a face, 192 x 192
    small = resize(im, (96, 96), anti_aliasing=True)  # (96, 96, 3)
    return torch.from_numpy(small.transpose(2, 0, 1)[None].astype(np.float32))  # (1, 3, 96, 96)


def index_at_init(kind: str, init: str, photo: torch.Tensor, kernel_size=None, seeds=3) -> float:
    values = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        first, last = torch.nn.Conv2d(3, 16, 1), torch.nn.Conv2d(16, 3, 1)
        kw = {} if kernel_size is None else {"kernel_size": kernel_size}
        layer = MODULES[kind](16, 16, init=init, **kw)
        with torch.no_grad():
            values.append(checkerboard_index(last(layer(first(photo))).numpy()))
    return float(np.mean(values))


@pytest.mark.parametrize("kind", KINDS)
def test_every_init_a_module_lists_builds_and_the_default_is_first(kind):
    cls = MODULES[kind]
    assert cls.inits and len(set(cls.inits)) == len(cls.inits)
    cin, c = fit_channels(kind, 2, 3)
    assert cls(cin, c).init == cls.inits[0]
    for init in cls.inits:
        assert cls(cin, c, init=init).init == init


@pytest.mark.parametrize("kind", KINDS)
def test_the_core_registry_lists_the_modules_inits_default_first(kind):
    registered = getattr(get_kind(kind), "inits", None)
    if registered is None:
        pytest.skip("the core registry has no inits field yet")
    assert tuple(registered) == MODULES[kind].inits


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_init_raises_spec_error_listing_the_valid_names(kind):
    cls = MODULES[kind]
    with pytest.raises(SpecError, match=f"unknown init 'xavier'; expected one of {cls.inits[0]}"):
        cls(*fit_channels(kind, 2, 3), init="xavier")


@pytest.mark.parametrize("kind,init", ARTIFACT_FREE)
def test_artifact_free_inits_start_below_0_02_on_a_photograph(kind, init, photo):
    assert index_at_init(kind, init, photo) < 0.02


@pytest.mark.parametrize("k", [3, 4, 6])
def test_dcl_bilinear_starts_artifact_free_for_every_kernel_size(k, photo):
    assert index_at_init("dcl", "bilinear", photo, kernel_size=k) < 0.02
    assert index_at_init("dcl", "default", photo, kernel_size=k, seeds=1) > 0.5


@pytest.mark.parametrize("kind,init", CHECKERBOARDED)
def test_he_random_phases_start_checkerboarded_above_0_5(kind, init, photo):
    assert index_at_init(kind, init, photo) > 0.5


def second_differences(y: torch.Tensor, margin: int) -> float:
    """max |y[i-1] - 2 y[i] + y[i+1]| along both axes, away from the zero-padded border."""
    inner = y[..., margin:-margin, margin:-margin]
    d2h = inner[..., 2:, :] - 2 * inner[..., 1:-1, :] + inner[..., :-2, :]
    d2w = inner[..., :, 2:] - 2 * inner[..., :, 1:-1] + inner[..., :, :-2]
    return float(max(d2h.abs().max(), d2w.abs().max()))


@pytest.mark.parametrize(
    "kind,k", [("dcl", 3), ("dcl", 4), ("dcl", 6), ("pixel_dcl", 3), ("pixel_dcl", 5),
               ("ipixel_dcl", 3), ("ipixel_dcl", 5)],
)
def test_bilinear_init_maps_a_linear_input_to_a_linear_output_so_phases_agree_exactly(kind, k):
    # y = bilinear interpolation of a conv of x: linear in, linear out, whatever the random conv.
    torch.manual_seed(0)
    layer = MODULES[kind](4, 5, kernel_size=k, init="bilinear", dtype=torch.float64)
    ii, jj = torch.meshgrid(torch.arange(24.0, dtype=torch.float64),
                            torch.arange(20.0, dtype=torch.float64), indexing="ij")
    x = torch.stack([0.3 * ii - 0.7 * jj + c for c in range(4)])[None]  # (1, 4, 24, 20)
    with torch.no_grad():
        y = layer(x)
    scale = float(y.abs().max())
    assert second_differences(y, margin=2 * k) <= 1e-12 * scale
    const = layer(torch.ones(1, 4, 12, 12, dtype=torch.float64)).detach()
    inner = const[..., 2 * k : -2 * k, 2 * k : -2 * k]
    torch.testing.assert_close(inner, inner[..., :1, :1].expand_as(inner), rtol=1e-12, atol=0)


def test_icnr_gives_equal_phases_on_a_constant_input():
    torch.manual_seed(0)
    layer = MODULES["subpixel_conv"](4, 5, init="icnr", dtype=torch.float64)
    y = layer(torch.ones(1, 4, 10, 10, dtype=torch.float64)).detach()[..., 2:-2, 2:-2]
    torch.testing.assert_close(y, y[..., :1, :1].expand_as(y), rtol=1e-12, atol=0)


def test_subpixel_icnr_false_still_means_the_default_init():
    assert MODULES["subpixel_conv"](2, 3, icnr=False).init == "default"
    assert MODULES["subpixel_conv"](2, 3, icnr=False, init="icnr").icnr
