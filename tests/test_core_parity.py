"""onnxruntime output of every registered kind x form x kernel x shape vs the numpy reference.

The registry drives the matrix: a new kind is tested as soon as it is registered.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import pixeldcn_core as pc
from pixeldcn_core import reference as R

from .conftest import assert_close_to_reference, fit_channels, fit_hw, fit_kernels, run_onnx


def _kernels(kind: str) -> list[int]:
    return fit_kernels(kind, (3, 5) if pc.get_kind(kind).odd_kernel else (3, 4, 5, 6))


def interleaving_kinds() -> list[str]:
    """Kinds whose graphs interleave phases, and so are written both ways (the others ignore it)."""
    return [kind for kind in pc.layer_kinds() if pc.get_kind(kind).interleaves]


def _interleaves(kind: str) -> list[str]:
    return list(pc.INTERLEAVES) if pc.get_kind(kind).interleaves else ["depth_to_space"]


def parity_cases(kinds) -> list:
    """(kind, form, k, interleave) for every form x kernel x interleave of ``kinds``."""
    return [
        pytest.param(kind, form, k, il,
                     id=f"{kind}-{form}-k{k}" + ("" if il == "depth_to_space" else f"-{il}"))
        for kind in kinds
        for form in pc.get_kind(kind).forms
        for k in _kernels(kind)
        for il in _interleaves(kind)
    ]


CASES = parity_cases(pc.layer_kinds())
# (in_channels, out_channels, bias)
CHANNELS = [(1, 1, False), (5, 3, True), (4, 6, False)]
# (batch, H, W): even, odd, non-square, and batch 1..4
SHAPES = [(1, 8, 8), (2, 7, 7), (3, 6, 9), (4, 5, 4)]


@pytest.mark.parametrize("kind,form,k,interleave", CASES)
@pytest.mark.parametrize("cin,c,bias", CHANNELS, ids=lambda v: str(v))
def test_float32_model_matches_reference_within_1e5_of_output_scale(kind, form, k, interleave, cin, c, bias):
    cin, c = fit_channels(kind, cin, c)
    spec = pc.LayerSpec(kind, cin, c, k, bias=bias)
    weights = spec.random_weights(seed=k * 100 + cin)
    model = pc.build_layer_model(kind, weights, form=form, interleave=interleave, in_channels=cin)
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(7)
    scale = spec.info.scale
    for n, h, w in SHAPES:  # one dynamic model, every shape
        h, w = fit_hw(kind, h, w)
        x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
        (y,) = run_onnx(model, {"x": x})
        assert y.dtype == np.float32
        assert y.shape == (n, c, scale * h, scale * w)
        assert_close_to_reference(y, R.apply(kind, x, weights), "float32")


@pytest.mark.parametrize("kind,form,k,interleave", CASES)
def test_float16_model_matches_reference_within_5e3_of_output_scale(kind, form, k, interleave):
    spec = pc.LayerSpec(kind, *fit_channels(kind, 6, 4), k, bias=True)
    weights = spec.random_weights(seed=3)
    model = pc.build_layer_model(kind, weights, form=form, dtype="float16", interleave=interleave,
                                 in_channels=spec.in_channels)
    onnx.checker.check_model(model, full_check=True)
    # The reference sees the weights the fp16 model holds, so only compute precision differs.
    w16 = {name: v.astype(np.float16) for name, v in weights.items()}
    x = np.random.default_rng(11).standard_normal(
        (2, spec.in_channels, *fit_hw(kind, 7, 10))).astype(np.float16)
    # The whole graph is float16 (input, output, every float initializer), not a float32 graph
    # with float16 ends: otherwise this would test float32 compute.
    fp16 = onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == fp16
    assert model.graph.output[0].type.tensor_type.elem_type == fp16
    kernels = {name for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose")
               for name in node.input[1:]}
    weights = [t for t in model.graph.initializer if t.name in kernels]
    assert (weights or spec.info.weightless) and all(t.data_type == fp16 for t in weights)
    (y,) = run_onnx(model, {"x": x})
    assert y.dtype == np.float16
    assert_close_to_reference(y, R.apply(kind, x, w16), "float16")


@pytest.mark.parametrize("kind", [k for k in pc.layer_kinds() if len(pc.get_kind(k).forms) > 1])
def test_efficient_and_faithful_forms_agree_within_1e5(kind):
    spec = pc.LayerSpec(kind, *fit_channels(kind, 3, 5), bias=True)
    weights = spec.random_weights(seed=5)
    cin = spec.in_channels
    x = np.random.default_rng(0).standard_normal((2, cin, *fit_hw(kind, 9, 6))).astype(np.float32)
    (a,) = run_onnx(pc.build_layer_model(kind, weights, form="efficient", in_channels=cin), {"x": x})
    (b,) = run_onnx(pc.build_layer_model(kind, weights, form="faithful", in_channels=cin), {"x": x})
    assert_close_to_reference(a, b.astype(np.float64), "float32")


@pytest.mark.parametrize("kind", interleaving_kinds())
def test_both_interleaves_give_bit_identical_outputs(kind):
    """The interleave only moves values: both graphs give the same bits (same convs, same adds)."""
    spec = pc.LayerSpec(kind, *fit_channels(kind, 3, 5), bias=True)
    weights, cin = spec.random_weights(seed=2), spec.in_channels
    x = np.random.default_rng(3).standard_normal((2, cin, *fit_hw(kind, 7, 6))).astype(np.float32)
    (a,) = run_onnx(pc.build_layer_model(kind, weights, in_channels=cin), {"x": x})
    (b,) = run_onnx(pc.build_layer_model(kind, weights, interleave="concat", in_channels=cin),
                    {"x": x})
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opset", list(pc.SUPPORTED_OPSETS))
def test_every_supported_opset_gives_the_same_numbers(opset):
    spec = pc.LayerSpec("ipixel_dcl", 3, 2)
    weights = spec.random_weights(seed=1)
    model = pc.build_layer_model("ipixel_dcl", weights, form="faithful", opset=opset)
    assert model.opset_import[0].version == opset
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(np.float32)
    (y,) = run_onnx(model, {"x": x})
    assert_close_to_reference(y, R.apply("ipixel_dcl", x, weights), "float32")


def test_layers_emitted_into_one_graph_compose():
    """y = pixel_dcl(resize_conv(x)) built with emit_layer into one graph equals the references."""
    a = pc.LayerSpec("resize_conv", 3, 4).random_weights(seed=1)
    b = pc.LayerSpec("pixel_dcl", 4, 2, bias=True).random_weights(seed=2)
    g = pc.GraphBuilder()
    x = g.input("x", "float32", ["batch", 3, "height", "width"])
    g.prefix = "up1/"
    h = pc.emit_layer(g, "resize_conv", x, a)
    g.prefix = "up2/"
    y = pc.emit_layer(g, "pixel_dcl", h, b)
    g.output(y, "y")
    model = g.to_model()
    onnx.checker.check_model(model, full_check=True)
    xin = np.random.default_rng(3).standard_normal((2, 3, 5, 4)).astype(np.float32)
    (out,) = run_onnx(model, {"x": xin})
    ref = R.apply("pixel_dcl", R.apply("resize_conv", xin, a), b)
    assert out.shape == (2, 2, 20, 16)
    assert_close_to_reference(out, ref, "float32")
