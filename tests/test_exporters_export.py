"""export_onnx and verify: onnxruntime parity per layer and per network, graph contents, fp16.

Parity: float32 models within 1e-5 of the output scale (conftest.REL_TOL) of the numpy reference
(layers) or of PyTorch (networks), at two input sizes from one dynamic export. float16 models are
held to verify's float16 tolerance (atol 1e-2 x max|torch|, rtol 1e-2; measured worst ~1e-3).
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import pixeldcn_core as pc
from exporters.pytorch import (
    TOLERANCES,
    VAE,
    ExportError,
    ExportOptions,
    UNet,
    VerificationError,
    export_onnx,
    make_layer,
    verify,
)
from pixeldcn_core import fold_affine
from pixeldcn_core import reference as R

from .conftest import assert_close_to_reference, fit_channels, fit_hw, run_onnx

# The ops of the networks' own layers (convs, pooling, activations, the VAE's linear layers).
NETWORK_OPS = {
    "Add", "Concat", "Conv", "Gemm", "MatMul", "MaxPool", "Mul", "Relu", "Reshape", "Sigmoid",
    "Identity", "Shape", "Gather", "Unsqueeze", "Slice", "Cast", "Constant", "Flatten", "Split",
    # DySample's efficient form: integer pixel indices, Gather of the four neighbours
    "Div", "Floor", "Max", "Min", "Range", "Squeeze", "Sub", "Transpose",
}


def _kind_ops() -> set[str]:
    """Every op the core writes for a registered kind (its default form and interleave)."""
    ops: set[str] = set()
    for kind in pc.layer_kinds():
        cin, c = fit_channels(kind, 4, 2)
        weights = pc.LayerSpec(kind, cin, c, bias=True).random_weights()
        model = pc.build_layer_model(kind, weights, in_channels=cin)
        ops |= {n.op_type for n in model.graph.node}
    return ops


# Every op an exported layer, UNet or VAE may hold: standard ops only.
ALLOWED_OPS = NETWORK_OPS | _kind_ops()


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial eval statistics, so that BatchNorm folding is actually tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return model


def _torch(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy().astype(np.float64)


def _check_standard(model: onnx.ModelProto) -> set[str]:
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= 10
    assert [(o.domain, o.version) for o in model.opset_import] == [("", pc.DEFAULT_OPSET)]
    assert {n.domain for n in model.graph.node} <= {""}
    assert not model.functions
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    return ops


# -- one layer -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_each_layer_exports_to_its_core_form_and_matches_reference_at_two_sizes(kind, tmp_path):
    cin, c = fit_channels(kind, 5, 3)
    layer = make_layer(kind, cin, c, bias=True)
    with torch.no_grad():
        layer.bias.normal_(0, 0.1)
    path = export_onnx(layer, tmp_path / f"{kind}.onnx", (1, cin, 6, 6), options=ExportOptions(verify=False))
    model = onnx.load(str(path))
    _check_standard(model)
    # The same nodes as the core builder writes for this layer, nothing else.
    core = pc.build_layer_model(kind, layer.onnx_weights(), in_channels=cin)
    assert sorted(n.op_type for n in model.graph.node) == sorted(n.op_type for n in core.graph.node)
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["y"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", cin, "height", "width"]
    rng = np.random.default_rng(0)
    for shape in [(1, cin, 6, 6), (3, cin, *fit_hw(kind, 7, 10))]:
        x = rng.standard_normal(shape).astype(np.float32)
        (y,) = run_onnx(model, {"x": x})
        assert_close_to_reference(y, R.apply(kind, x, layer.onnx_weights()), "float32")


@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_fold_affine_equals_scale_times_layer_plus_shift(kind):
    # layer'(x) == s * layer(x) + t per output channel, exactly up to float64 rounding.
    spec = pc.LayerSpec(kind, *fit_channels(kind, 3, 4), None, bias=True)
    w = spec.random_weights(seed=5)
    rng = np.random.default_rng(1)
    c = spec.out_channels
    s, t = rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c), rng.standard_normal(c)
    folded = fold_affine(kind, w, s, t)
    if spec.info.fold is None:  # nothing to fold into (no weights): BatchNorm stays Mul + Add
        assert folded is None
        return
    x = rng.standard_normal((2, spec.in_channels, *fit_hw(kind, 5, 6)))
    ref = R.apply(kind, x, w) * s[None, :, None, None] + t[None, :, None, None]
    assert np.abs(R.apply(kind, x, folded) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_fold_affine_declines_a_zero_scale_for_pixel_kinds():
    w = pc.LayerSpec("pixel_dcl", 2, 2).random_weights(0)
    assert fold_affine("pixel_dcl", w, np.array([1.0, 0.0]), np.zeros(2)) is None


# -- networks ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unet_export(tmp_path_factory):
    torch.manual_seed(0)
    model = _randomise_batchnorm(UNet(3, 5, base_channels=8, depth=4, up="pixel_dcl")).eval()
    path = tmp_path_factory.mktemp("unet") / "unet.onnx"
    export_onnx(model, path, (1, 3, 32, 48), options=ExportOptions(verify=False))
    return model, path


def test_unet_export_matches_torch_at_two_sizes_from_one_dynamic_export(unet_export):
    model, path = unet_export
    onnx_model = onnx.load(str(path))
    rng = np.random.default_rng(2)
    for shape in [(1, 3, 32, 48), (2, 3, 64, 16)]:
        x = rng.standard_normal(shape).astype(np.float32)
        (y,) = run_onnx(onnx_model, {"x": x})
        assert y.shape == (shape[0], 5, shape[2], shape[3])
        assert_close_to_reference(y, _torch(model, x), "float32")


def test_unet_graph_has_depth_to_space_no_conv_transpose_no_batchnorm(unet_export):
    _, path = unet_export
    ops = _check_standard(onnx.load(str(path)))
    assert "DepthToSpace" in ops and "ConvTranspose" not in ops


@pytest.mark.parametrize("up", ["pixel_dcl", "ipixel_dcl"])
def test_unet_exported_with_the_concat_interleave_matches_torch_and_holds_no_depth_to_space(up, tmp_path):
    torch.manual_seed(1)
    model = _randomise_batchnorm(UNet(3, 4, base_channels=4, depth=3, up=up)).eval()
    path = export_onnx(model, tmp_path / "u.onnx", (1, 3, 16, 24),
                       options=ExportOptions(verify=False, interleave="concat"))
    onnx_model = onnx.load(str(path))
    ops = _check_standard(onnx_model)
    assert "DepthToSpace" not in ops and "ConvTranspose" not in ops
    rng = np.random.default_rng(4)
    for shape in [(1, 3, 16, 24), (2, 3, 32, 8)]:
        x = rng.standard_normal(shape).astype(np.float32)
        (y,) = run_onnx(onnx_model, {"x": x})
        assert_close_to_reference(y, _torch(model, x), "float32")


def test_export_rejects_an_unknown_interleave_before_tracing(tmp_path):
    with pytest.raises(pc.SpecError, match="interleave='pixel_shuffle'; expected one of"):
        export_onnx(make_layer("pixel_dcl", 2, 2), tmp_path / "m.onnx", (1, 2, 4, 4),
                    options=ExportOptions(interleave="pixel_shuffle"))
    assert not (tmp_path / "m.onnx").exists()


def test_export_leaves_the_model_unchanged(tmp_path):
    model = _randomise_batchnorm(UNet(3, 2, base_channels=4, depth=2, up="ipixel_dcl")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx", (1, 3, 8, 8), options=ExportOptions(dynamic=False))
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert type(model.up[0].up[0]).__name__ == "IPixelDCL2d"
    assert os.listdir(tmp_path) == ["m.onnx"]  # atomic write: no temp file left behind


@pytest.mark.parametrize("up", ["dcl", "subpixel_conv"])
def test_unet_with_other_layers_passes_verify_and_only_dcl_keeps_conv_transpose(up, tmp_path):
    model = _randomise_batchnorm(UNet(3, 4, base_channels=4, depth=3, up=up))
    path = export_onnx(model, tmp_path / "u.onnx", (1, 3, 16, 16), options=ExportOptions(dynamic=False))
    ops = _check_standard(onnx.load(str(path)))
    assert ("ConvTranspose" in ops) == (up == "dcl")
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 16]  # --static


def test_vae_exports_three_named_outputs_in_eval_mode(tmp_path):
    model = _randomise_batchnorm(VAE(latent_dim=8, base_channels=4, up="resize_conv"))
    path = export_onnx(model, tmp_path / "vae.onnx", (2, 3, 64, 64))
    onnx_model = onnx.load(str(path))
    _check_standard(onnx_model)
    assert [o.name for o in onnx_model.graph.output] == ["recon", "mu", "logvar"]
    x = np.random.default_rng(3).random((3, 3, 64, 64), dtype=np.float32)  # batch 3: dynamic
    recon, mu, logvar = run_onnx(onnx_model, {"x": x})
    with torch.no_grad():
        ref = [t.numpy() for t in model.eval()(torch.from_numpy(x))]
    for got, want in zip((recon, mu, logvar), ref, strict=True):
        assert_close_to_reference(got, want.astype(np.float64), "float32")


@pytest.fixture(scope="module")
def vae_decoder():
    torch.manual_seed(1)
    return _randomise_batchnorm(VAE(latent_dim=16, base_channels=4, up="pixel_dcl")).decoder.eval()


def test_vae_decoder_exports_alone_with_dynamic_batch(vae_decoder, tmp_path):
    path = export_onnx(vae_decoder, tmp_path / "dec.onnx", (1, 16))
    onnx_model = onnx.load(str(path))
    _check_standard(onnx_model)
    dims = [d.dim_param or d.dim_value for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 16]
    z = np.random.default_rng(4).standard_normal((5, 16)).astype(np.float32)
    (y,) = run_onnx(onnx_model, {"x": z})
    assert y.shape == (5, 3, 64, 64)
    assert_close_to_reference(y, _torch(vae_decoder, z), "float32")


def test_fp16_export_is_float16_throughout_and_within_its_tolerance(vae_decoder, tmp_path):
    path = export_onnx(vae_decoder, tmp_path / "dec16.onnx", (4, 16),
                       options=ExportOptions(fp16=True, verify=False))
    onnx_model = onnx.load(str(path))
    _check_standard(onnx_model)
    f16 = onnx.TensorProto.FLOAT16
    assert onnx_model.graph.input[0].type.tensor_type.elem_type == f16
    assert onnx_model.graph.output[0].type.tensor_type.elem_type == f16
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in onnx_model.graph.initializer)
    report = verify(vae_decoder, path, quiet=True)
    (out,) = report.outputs
    assert report.precision == "float16" and out.onnx_dtype == "float16"
    assert out.max_abs <= TOLERANCES["float16"]["atol"] * out.scale  # measured ~1e-3 x scale


# -- verify --------------------------------------------------------------------------------------
def test_verify_reports_errors_shapes_and_minimum_atol(unet_export, capsys):
    model, path = unet_export
    report = verify(model, path, np.zeros((1, 3, 16, 16), np.float32) + 0.5)
    assert report.passed
    (out,) = report.outputs
    assert out.onnx_shape == out.torch_shape == (1, 5, 16, 16)
    assert out.max_abs <= 1e-5 and out.min_atol <= out.max_abs
    printed = capsys.readouterr().out
    assert "minimum atol to pass" in printed and "NaN/Inf ok" in printed and "PASS" in printed


def test_verify_raises_with_the_report_when_the_model_changed_after_export(tmp_path):
    layer = make_layer("pixel_dcl", 3, 2)
    path = export_onnx(layer, tmp_path / "l.onnx", (1, 3, 5, 5))
    with torch.no_grad():
        layer.conv1.weight.mul_(1.01)
    with pytest.raises(VerificationError, match=r"1 of 1 outputs fail verification: y: max abs err") as err:
        verify(layer, path, quiet=True)
    assert not err.value.report.passed
    assert isinstance(err.value, pc.PixelDCNError)


def test_verify_flags_nan_in_the_pytorch_output(tmp_path):
    layer = make_layer("resize_conv", 2, 2)
    path = export_onnx(layer, tmp_path / "l.onnx", (1, 2, 4, 4))
    x = np.full((1, 2, 4, 4), np.nan, np.float32)
    with pytest.raises(VerificationError, match="NaN/Inf values in the ONNX output"):
        verify(layer, path, x, quiet=True)


# -- BatchNorm that does not follow a Conv or a layer, errors --------------------------------------
def test_batchnorm_without_a_conv_before_it_is_lowered_to_mul_add(tmp_path):
    model = _randomise_batchnorm(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), make_layer("dcl", 3, 2, 4)))
    path = export_onnx(model, tmp_path / "bn.onnx", (1, 3, 6, 6))
    ops = _check_standard(onnx.load(str(path)))
    assert {"Mul", "Add", "ConvTranspose"} <= ops


def test_export_rejects_a_bad_input_shape_naming_what_it_got(tmp_path):
    with pytest.raises(ExportError, match=r"input_shape must be a tuple of positive ints .* got \(1, 0, 4\)"):
        export_onnx(make_layer("dcl", 1, 1), tmp_path / "x.onnx", (1, 0, 4))


def test_export_rejects_an_unsupported_opset(tmp_path):
    with pytest.raises(pc.SpecError, match=r"opset 12 is not supported; expected 17\.\.21"):
        export_onnx(make_layer("dcl", 1, 1), tmp_path / "x.onnx", (1, 1, 4, 4),
                    options=ExportOptions(opset=12))


def test_unet_names_the_multiple_its_input_size_must_be():
    with pytest.raises(pc.InputShapeError, match="got H x W = 18 x 16, while depth=3 needs multiples of 4"):
        UNet(3, 2, base_channels=4, depth=3)(torch.randn(1, 3, 18, 16))


def test_a_dynamic_export_at_a_size_the_unet_cannot_take_names_the_multiple(tmp_path):
    with pytest.raises(ExportError, match=r"\(1, 3, 18, 16\)\]: UNet: H and W must be multiples of 4"):
        export_onnx(UNet(3, 2, base_channels=4, depth=3), tmp_path / "u.onnx", (1, 3, 18, 16))
    assert not (tmp_path / "u.onnx").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_exports_and_verifies_against_its_cuda_outputs(tmp_path):
    model = _randomise_batchnorm(UNet(3, 2, base_channels=4, depth=3, up="pixel_dcl")).cuda()
    path = export_onnx(model, tmp_path / "u.onnx", (1, 3, 16, 16))  # verify runs torch on CUDA
    assert next(model.parameters()).device.type == "cuda"
    _check_standard(onnx.load(str(path)))


def test_a_layer_called_twice_is_emitted_twice(tmp_path):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = make_layer("pixel_dcl", 2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.up(torch.relu(self.up(x)))  # [N, 2, 4H, 4W]

    model = Twice()
    path = export_onnx(model, tmp_path / "t.onnx", (1, 2, 5, 6))
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("DepthToSpace") == 2


def test_conv_batchnorm_pairs_left_in_a_graph_are_folded_into_the_conv():
    # y = BN(Conv(x)) == Conv'(x) with W' = s W, b' = s b + t, s = gamma / sqrt(var + eps).
    from onnx import helper, numpy_helper

    from exporters.pytorch._onnx_passes import fold_batchnorm

    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        "g": rng.uniform(0.5, 2, 4).astype(np.float32),
        "beta": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.uniform(0.5, 2, 4).astype(np.float32),
    }
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["y"],
                          epsilon=1e-3, name="bn")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 5, 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    (before,) = run_onnx(model, {"x": x})
    folded, notes = fold_batchnorm(model)
    assert [n.op_type for n in folded.graph.node] == ["Conv"]
    assert notes == ["BatchNormalization bn folded into Conv conv"]
    (after,) = run_onnx(folded, {"x": x})
    assert np.abs(after - before).max() <= 1e-5 * np.abs(before).max()
