"""PyTorch up-sampling modules against the numpy reference (the registry drives the matrix).

Tolerances are relative to the output's scale (max |y_ref|): float32 1e-5 (conftest.REL_TOL),
float16 5e-3 and bfloat16 3e-2 on CPU (measured worst: 1.1e-3 and 7.1e-3). float64 modules are
compared at 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pixeldcn_core as pc
from exporters.pytorch import FUNCTIONS, MODULES, PixelDCL2d, SubPixelConv2d, make_layer
from pixeldcn_core import reference as R

from .conftest import assert_close_to_reference, fit_channels, fit_hw, fit_kernels

LOW_PRECISION_TOL = {torch.float16: 5e-3, torch.bfloat16: 3e-2}


def _kernels(kind: str) -> list[int]:
    return fit_kernels(kind, (3, 4, 6) if kind == "dcl" else (3, 5))


CASES = [
    pytest.param(kind, k, id=f"{kind}-k{k}") for kind in pc.layer_kinds() for k in _kernels(kind)
]
# (batch, H, W): odd, even, non-square
SHAPES = [(2, 7, 7), (1, 6, 8), (3, 5, 9)]


def _weights_of(layer) -> dict[str, np.ndarray]:
    """The layer's weights in the core layout at their own precision, as float64."""
    tensors = dict(layer._onnx_tensors())
    if layer.bias is not None:
        tensors["bias"] = layer.bias
    return {k: v.detach().double().cpu().numpy() for k, v in tensors.items()}


def test_modules_cover_every_registered_kind():
    assert set(MODULES) == set(pc.layer_kinds()) == set(FUNCTIONS)
    for kind, cls in MODULES.items():
        assert cls.kind == kind


@pytest.mark.parametrize("kind,k", CASES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_float32_forward_matches_reference_within_1e5_of_output_scale(kind, k, bias):
    cin, c = fit_channels(kind, 5, 3)
    spec = pc.LayerSpec(kind, cin, c, k, bias=bias)
    weights = spec.random_weights(seed=k)
    layer = MODULES[kind].from_onnx_weights(weights, in_channels=cin)
    assert layer.spec == spec
    rng = np.random.default_rng(0)
    s = spec.info.scale
    for n, h, w in SHAPES:
        h, w = fit_hw(kind, h, w)
        x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
        with torch.no_grad():
            y = layer(torch.from_numpy(x)).numpy()
        assert y.dtype == np.float32 and y.shape == (n, c, s * h, s * w)
        assert_close_to_reference(y, R.apply(kind, x, weights), "float32")


@pytest.mark.parametrize("kind,k", CASES)
def test_float64_forward_equals_reference_to_1e12(kind, k):
    cin, c = fit_channels(kind, 4, 6)
    layer = make_layer(kind, cin, c, k, bias=True).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = np.random.default_rng(1).standard_normal((2, cin, *fit_hw(kind, 6, 5)))
    y = layer(torch.from_numpy(x)).detach().numpy()
    ref = R.apply(kind, x, _weights_of(layer))
    assert np.abs(y - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_low_precision_forward_matches_reference_on_the_rounded_weights(kind, dtype):
    cin, c = fit_channels(kind, 6, 4)
    layer = make_layer(kind, cin, c, bias=True).to(dtype)
    with torch.no_grad():
        layer.bias.normal_(0, 0.1)
    h, w = fit_hw(kind, 7, 10)
    s = pc.get_kind(kind).scale
    x = torch.randn(2, cin, h, w, generator=torch.Generator().manual_seed(3)).to(dtype)
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == dtype and y.shape == (2, c, s * h, s * w)
    ref = R.apply(kind, x.double().numpy(), _weights_of(layer))
    err = np.abs(y.double().numpy() - ref).max() / np.abs(ref).max()
    assert err <= LOW_PRECISION_TOL[dtype], f"{err:.2e} of output scale ({dtype})"


@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_functional_form_equals_the_module(kind):
    cin, c = fit_channels(kind, 3, 2)
    layer = make_layer(kind, cin, c, bias=True)
    x = torch.randn(1, cin, *fit_hw(kind, 4, 5))
    args = [*layer._onnx_tensors().values()]
    torch.testing.assert_close(FUNCTIONS[kind](x, *args, layer.bias), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("k", [3, 5])
def test_pixel_dcl_masked_taps_get_exactly_zero_gradient(k):
    # grad(w3)[r, c] == 0 wherever (r + c) is even: those taps take no part in y.
    layer = PixelDCL2d(3, 4, k).double()
    with torch.no_grad():
        layer.conv3.weight.normal_()  # even non-zero masked taps must not matter
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    grad = layer.conv3.weight.grad
    mask = torch.as_tensor(R.pixel_dcl_mask(k), dtype=torch.bool)
    assert torch.count_nonzero(grad[..., ~mask]) == 0
    assert torch.count_nonzero(grad[..., mask]) == grad[..., mask].numel()
    ref = R.apply("pixel_dcl", x.numpy(), _weights_of(layer))
    assert np.abs(layer(x).detach().numpy() - ref).max() < 1e-12 * np.abs(ref).max()


def test_pixel_dcl_initialises_masked_taps_to_zero_and_used_taps_he_normal():
    layer = PixelDCL2d(64, 64, 3, init="default")  # He; the default is "bilinear" (issue 11)
    w3 = layer.conv3.weight.detach()
    mask = torch.as_tensor(R.pixel_dcl_mask(3), dtype=torch.bool)
    assert torch.count_nonzero(w3[..., ~mask]) == 0
    # std = sqrt(2 / fan_in), fan_in = C * (k*k // 2) = 256 used taps; 16384 samples: +-3%.
    assert abs(float(w3[..., mask].std()) / (2 / 256) ** 0.5 - 1) < 0.03
    assert abs(float(layer.conv1.weight.detach().std()) / (2 / (64 * 9)) ** 0.5 - 1) < 0.03


def test_subpixel_icnr_makes_the_initial_output_a_nearest_upsampling_of_one_conv():
    # y[2i + a, 2j + b] == y[2i, 2j] for every phase (a, b): no checkerboard at initialisation.
    layer = SubPixelConv2d(3, 5, icnr=True)
    y = layer(torch.randn(2, 3, 6, 7)).detach()
    for a in (0, 1):
        for b in (0, 1):
            torch.testing.assert_close(y[..., a::2, b::2], y[..., 0::2, 0::2], rtol=0, atol=0)
    plain = SubPixelConv2d(3, 5, icnr=False)(torch.randn(1, 3, 4, 4)).detach()
    assert not torch.equal(plain[..., 0::2, 1::2], plain[..., 0::2, 0::2])


@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_gradcheck_in_float64(kind):
    cin, c = fit_channels(kind, 2, 2)
    k = fit_kernels(kind, (3,))[0]  # k = 3: dcl's asymmetric crop too
    layer = make_layer(kind, cin, c, k, bias=True).double()
    params = [*layer._onnx_tensors().values(), layer.bias]
    x = torch.randn(1, cin, *fit_hw(kind, 3, 4), dtype=torch.float64, requires_grad=True)
    fn = FUNCTIONS[kind]
    assert torch.autograd.gradcheck(lambda x, *p: fn(x, *p[:-1], p[-1]), (x, *params), fast_mode=True)


@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_state_dict_keys_follow_the_papers_parameterisation(kind):
    layer = make_layer(kind, *fit_channels(kind, 3, 2), bias=True)
    keys = set(layer.state_dict())
    if pc.get_kind(kind).weightless:
        assert keys == {"bias"}
    elif kind == "carafe":  # mmcv CARAFEPack's names, so its state dicts load as they are
        assert keys == {"channel_compressor.weight", "channel_compressor.bias",
                        "content_encoder.weight", "content_encoder.bias", "bias"}
    elif kind in ("pixel_dcl", "ipixel_dcl"):
        assert keys == {"conv1.weight", "conv2.weight", "conv3.weight", "bias"}
    elif kind == "ipixel_cl":  # w1..w4 (the authors' conv1, conv2, conv4, conv5)
        assert keys == {"conv1.weight", "conv2.weight", "conv3.weight", "conv4.weight", "bias"}
    elif kind == "dysample":  # the authors' offset conv (nn.Conv2d named offset)
        assert keys == {"offset.weight", "offset.bias", "bias"}
    else:
        assert keys == {"weight", "bias"}
    shapes = {k: v.shape for k, v in layer.onnx_weights().items()}
    assert shapes == layer.spec.weight_shapes()
    assert all(v.dtype == np.float32 for v in layer.onnx_weights().values())


@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_every_kind_initialises_finite_weights_with_zero_bias(kind):
    layer = make_layer(kind, *fit_channels(kind, 8, 4), bias=True)
    for name, value in layer.onnx_weights().items():
        assert np.all(np.isfinite(value)), name
    assert np.count_nonzero(layer.onnx_weights()["bias"]) == 0


def test_dcl_k3_is_tf_same_not_torch_padding_1_output_padding_1():
    # TF 'SAME' for k = 3 crops (0, 1); ConvTranspose2d(padding=1, output_padding=1) is shifted.
    layer = make_layer("dcl", 2, 2, 3)
    x = torch.randn(1, 2, 5, 5)
    shifted = torch.nn.functional.conv_transpose2d(x, layer.weight, stride=2, padding=1, output_padding=1)
    assert shifted.shape == layer(x).shape == (1, 2, 10, 10)
    assert not torch.allclose(shifted, layer(x))
    ref = R.dcl(x.numpy(), layer.weight.detach().numpy())
    assert np.abs(layer(x).detach().numpy() - ref).max() < 1e-5 * np.abs(ref).max()


def test_constructor_rejects_an_even_pixel_dcl_kernel_with_a_value_error():
    with pytest.raises(ValueError, match="kernel_size must be an odd integer >= 3, got 4"):
        PixelDCL2d(4, 4, kernel_size=4)


def test_constructor_rejects_zero_channels():
    with pytest.raises(pc.SpecError, match="out_channels must be a positive int, got 0"):
        make_layer("dcl", 4, 0)


def test_make_layer_lists_valid_kinds_for_an_unknown_one():
    with pytest.raises(pc.UnknownKindError, match=f"expected one of {', '.join(pc.layer_kinds())}$"):
        make_layer("no_such_kind", 4, 4)


def test_forward_names_both_channel_counts_on_a_wrong_input():
    with pytest.raises(pc.InputShapeError, match=r"got x.shape\[1\]=3 channels, while in_channels=4"):
        PixelDCL2d(4, 4)(torch.randn(1, 3, 5, 5))
    with pytest.raises(pc.InputShapeError, match="must be 4-D"):
        PixelDCL2d(4, 4)(torch.randn(4, 5, 5))


def test_load_onnx_weights_reports_every_bad_weight_at_once():
    layer = PixelDCL2d(4, 2)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(pc.WeightError, match=r"missing \['w3'\].*w2 has shape \(2, 2, 5, 5\)"):
        layer.load_onnx_weights({"w1": np.zeros((2, 4, 3, 3), np.float32),
                                 "w2": np.zeros((2, 2, 5, 5), np.float32)})
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA_TOL = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


@cuda
@pytest.mark.parametrize("dtype", list(CUDA_TOL), ids=str)
@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_cuda_forward_and_backward_match_reference(kind, dtype, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 convs
    cin, c = fit_channels(kind, 6, 4)
    layer = make_layer(kind, cin, c, bias=True).to("cuda", dtype)
    h, w = fit_hw(kind, 7, 10)
    s = pc.get_kind(kind).scale
    x = torch.randn(2, cin, h, w, generator=torch.Generator().manual_seed(3)).to("cuda", dtype)
    y = layer(x)
    assert y.dtype == dtype and y.device.type == "cuda" and y.shape == (2, c, s * h, s * w)
    ref = R.apply(kind, x.double().cpu().numpy(), _weights_of(layer))
    err = np.abs(y.detach().double().cpu().numpy() - ref).max() / np.abs(ref).max()
    assert err <= CUDA_TOL[dtype], f"{err:.2e} of output scale ({dtype})"
    y.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
