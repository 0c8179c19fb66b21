"""DySample (x2, "lp", static scope): what is special about it beyond the registry's matrices.

The parity matrix (tests/test_core_parity.py) and the five-consumer matrix
(tests/test_runtimes_matrix.py) cover both forms at float32 and float16 from the registry; here:
what the layer equals with zero offsets, the border, both lowerings against each other and the
authors' PyTorch semantics, the targets that must not hold GridSample, opsets, the channel rule,
the PyTorch module, export and convert_deconvs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pixeldcn_core as pc
from exporters.pytorch import FUNCTIONS, ExportOptions, convert_deconvs, export_onnx, make_layer
from exporters.pytorch.kinds.dysample import DySample2d
from exporters.runtimes import check_layer, check_model, install_torchvision_stand_in
from pixeldcn_core import reference as R

from .conftest import assert_close_to_reference, run_onnx

KIND = "dysample"
FORMS = ("efficient", "faithful")


def _weights(c: int, seed: int = 0, *, bias: bool = True, scale: float = 1.0):
    w = pc.LayerSpec(KIND, c, bias=bias).random_weights(seed)
    w["offset_weight"] = w["offset_weight"] * np.float32(scale)
    w["offset_bias"] = w["offset_bias"] * np.float32(scale)
    return w


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


# -- what the layer computes ----------------------------------------------------------------------
def test_init_pos_holds_the_authors_sub_pixel_positions_x_then_y_per_group_and_phase():
    """Channel c 4G + 4g + 2a + b: x (c = 0) is (b - 1/2) / 2, y (c = 1) is (a - 1/2) / 2."""
    q = 0.25
    one_group = [-q, q, -q, q, -q, -q, q, q]  # x: b = 0, 1, 0, 1; y: a = 0, 0, 1, 1
    np.testing.assert_array_equal(R.dysample_init_pos(1), one_group)
    two = R.dysample_init_pos(2)
    np.testing.assert_array_equal(two, [-q, q, -q, q] * 2 + [-q, -q, q, q] * 2)


@pytest.mark.parametrize("c", [1, 2, 6, 8])
def test_groups_are_4_when_they_divide_c_else_2_or_1(c):
    g = R.dysample_groups(c)
    assert g == {1: 1, 2: 2, 6: 2, 8: 4}[c]
    assert pc.LayerSpec(KIND, c).weight_shapes() == {"offset_weight": (8 * g, c, 1, 1),
                                                     "offset_bias": (8 * g,)}


@pytest.mark.parametrize("form", FORMS)
def test_zero_offset_conv_gives_bilinear_x2_with_half_pixel_centres_and_clamped_edges(form):
    """y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False) when the offset
    conv is zero: init_pos alone places output (2i + a, 2j + b) at input (i + (a - 1/2) / 2,
    j + (b - 1/2) / 2), and border padding clamps the half pixel past each edge."""
    w = {k: np.zeros_like(v) for k, v in _weights(8, bias=False).items()}
    x = _x((2, 8, 5, 7))
    bilinear = F.interpolate(torch.from_numpy(x).double(), scale_factor=2, mode="bilinear",
                             align_corners=False).numpy()
    np.testing.assert_allclose(R.apply(KIND, x, w), bilinear, rtol=0, atol=1e-12)
    (y,) = run_onnx(pc.build_layer_model(KIND, w, form=form), {"x": x})
    assert_close_to_reference(y, bilinear, "float32")


def test_torch_function_matches_the_reference_in_float64():
    """dysample2d (the authors' grid_sample formulation) == reference.dysample to 1e-12."""
    for c, seed in [(1, 0), (6, 1), (8, 2)]:
        w = _weights(c, seed)
        x = _x((2, c, 5, 7), seed)
        y = FUNCTIONS[KIND](torch.from_numpy(x).double(),
                            *(torch.from_numpy(w[k]).double() for k in ("offset_weight", "offset_bias",
                                                                        "bias"))).numpy()
        np.testing.assert_allclose(y, R.apply(KIND, x, w), rtol=0, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_large_offsets_sample_past_every_edge_as_the_border_pixels(form):
    """Offsets of several pixels (20x the test weights) send most samples past the border: both
    lowerings, PyTorch and the reference agree (padding_mode="border", not zeros)."""
    w = _weights(4, 3, scale=20.0)
    x = _x((1, 4, 6, 5), 4)
    ref = R.apply(KIND, x, w)
    spread = R.pixel_shuffle(0.25 * (np.einsum("nihw,oi->nohw", x, w["offset_weight"][:, :, 0, 0])
                                     + w["offset_bias"][None, :, None, None]))
    assert np.abs(spread).max() > 6  # samples far outside the 6 x 5 input
    (y,) = run_onnx(pc.build_layer_model(KIND, w, form=form), {"x": x})
    assert_close_to_reference(y, ref, "float32")
    torch_y = FUNCTIONS[KIND](torch.from_numpy(x), *(torch.from_numpy(w[k]) for k in
                                                    ("offset_weight", "offset_bias", "bias")))
    assert_close_to_reference(torch_y.numpy(), ref, "float32")


def test_both_lowerings_agree_within_1e5_on_a_batch_of_odd_sizes():
    w = _weights(12, 5)
    x = _x((3, 12, 9, 13), 6)
    (a,) = run_onnx(pc.build_layer_model(KIND, w, form="efficient"), {"x": x})
    (b,) = run_onnx(pc.build_layer_model(KIND, w, form="faithful"), {"x": x})
    assert not {"GridSample"} & _ops(pc.build_layer_model(KIND, w, form="efficient"))
    assert "GridSample" in _ops(pc.build_layer_model(KIND, w, form="faithful"))
    assert_close_to_reference(a, b.astype(np.float64), "float32")


@pytest.mark.parametrize("form", FORMS)
def test_float16_models_address_pixels_exactly_at_a_width_of_3000(form):
    """float16 holds integers only up to 2048: the Gather form keeps pixel indices int64, the
    GridSample form builds its grid in float32; both stay within float16's 5e-3 of the scale."""
    w = _weights(4, 7)
    x = _x((1, 4, 3, 3000), 8, np.float16)
    model = pc.build_layer_model(KIND, w, form=form, dtype="float16")
    (y,) = run_onnx(model, {"x": x})
    assert y.dtype == np.float16
    assert_close_to_reference(y, R.apply(KIND, x, {k: v.astype(np.float16) for k, v in w.items()}),
                              "float16")


# -- targets and opsets ---------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["tensorrt", "onnx2torch", "reference", "any"])
@pytest.mark.parametrize("form", FORMS)
def test_targets_without_grid_sample_get_the_gather_form_for_both_forms(target, form):
    w = _weights(4)
    model = pc.build_layer_model(KIND, w, form=form, target=target)
    assert "GridSample" not in _ops(model) and "Gather" in _ops(model)
    assert not pc.get_target(target).grid_sample
    x = _x((2, 4, 5, 6))
    (y,) = run_onnx(model, {"x": x})
    assert_close_to_reference(y, R.apply(KIND, x, w), "float32")


@pytest.mark.parametrize("opset", list(pc.SUPPORTED_OPSETS))
def test_grid_sample_mode_is_bilinear_before_opset_20_and_linear_from_it(opset):
    model = pc.build_layer_model(KIND, _weights(4), form="faithful", opset=opset)
    onnx.checker.check_model(model, full_check=True)
    (node,) = [n for n in model.graph.node if n.op_type == "GridSample"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"align_corners": 0, "mode": b"linear" if opset >= 20 else b"bilinear",
                     "padding_mode": b"border"}


def test_at_opset_20_the_grid_sample_form_runs_on_the_reference_evaluator_too():
    """GridSample-20's "linear" is what onnx's ReferenceEvaluator implements (it refuses
    GridSample-16's "bilinear": a strict xfail of the runtime matrix)."""
    install_torchvision_stand_in()
    _, report = check_layer(KIND, _weights(4), ("ort", "reference", "openvino", "tract"),
                            input_shape=(2, 4, 6, 8), form="faithful", opset=20)
    assert report.passed and {r.status for r in report.results} == {"pass"}, str(report)


def test_the_float16_grid_sample_form_runs_on_ort_openvino_and_tract():
    """Float16 in and out, the grid and GridSample in float32 between two Casts."""
    _, report = check_layer(KIND, _weights(4), ("ort", "openvino", "tract"), input_shape=(2, 4, 6, 8),
                            form="faithful", dtype="float16")
    assert report.precision == "float16"
    assert report.passed and {r.status for r in report.results} == {"pass"}, str(report)


def test_the_grid_sample_form_refuses_an_opset_without_grid_sample():
    b = pc.GraphBuilder()
    b.opset = 15  # older than any supported opset: the guard for when SUPPORTED_OPSETS widens
    x = b.input("x", "float32", ["batch", 4, "height", "width"])
    with pytest.raises(pc.SpecError, match=r"dysample: the GridSample form needs opset >= 16, got "
                                           r"opset 15; use a newer opset or a target without"):
        pc.emit_layer(b, KIND, x, _weights(4), form="faithful")


def test_pixeldcn_layer_target_tensorrt_passes_without_grid_sample(tmp_path, capsys):
    from pixeldcn_core.cli import main

    out = tmp_path / "dysample.onnx"
    assert main(["layer", "--kind", KIND, "--form", "faithful", "--target", "tensorrt",
                 "--in-channels", "8", "--out-channels", "8", "--size", "6", "7",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "target=tensorrt" in printed and "-> PASS" in printed
    assert "GridSample" not in _ops(onnx.load(str(out)))


# -- spec and weights -----------------------------------------------------------------------------
def test_spec_keeps_the_channels_and_has_no_kernel_to_choose():
    assert pc.LayerSpec(KIND, 8).out_channels == 8
    with pytest.raises(pc.SpecError, match=r"dysample: out_channels must equal in_channels \(the kind "
                                           r"keeps the channels\), got in_channels=8, out_channels=4"):
        pc.LayerSpec(KIND, 8, 4)
    with pytest.raises(pc.SpecError, match="dysample: kernel_size must be 1"):
        pc.LayerSpec(KIND, 8, 8, 3)


def test_an_offset_conv_whose_groups_do_not_divide_the_channels_is_refused_naming_the_rule():
    for rows in (24, 20):  # 3 groups do not divide 8 channels; 20 is not 8 x groups
        w = {"offset_weight": np.zeros((rows, 8, 1, 1), np.float32),
             "offset_bias": np.zeros(rows, np.float32)}
        with pytest.raises(pc.WeightError, match=r"dysample: offset_weight must be \[8 G, C, 1, 1\] "
                                                 r"with G groups dividing C .*got \[" + str(rows)):
            pc.build_layer_model(KIND, w)
    with pytest.raises(pc.SpecError, match="dysample: groups=3 must divide the 8 channels"):
        DySample2d(8, groups=3)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("groups", [1, 2, 8])
def test_any_group_count_dividing_c_matches_the_reference_in_both_forms_and_the_module(groups, form):
    """The authors' ``groups`` is a parameter (default 4 when it divides C): a checkpoint with
    G = 1, 2 or 8 reads its G from the offset conv; ONNX (float32, tolerance REL_TOL of
    conftest) and the module (float64, 1e-12) agree with the reference."""
    torch.manual_seed(groups)
    layer = DySample2d(16, groups=groups, bias=True).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    w = {k: v.detach().numpy() for k, v in layer._onnx_tensors().items()}
    w["bias"] = layer.bias.detach().numpy()
    spec = pc.LayerSpec.from_weights(KIND, w)
    assert spec.param_values == {"groups": groups} and layer.groups == groups
    x = _x((2, 16, 5, 7), groups).astype(np.float64)
    ref = R.apply(KIND, x, w)
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref, rtol=0, atol=1e-12)
    w32 = {k: v.astype(np.float32) for k, v in w.items()}
    (y,) = run_onnx(pc.build_layer_model(KIND, w32, form=form), {"x": x.astype(np.float32)})
    assert_close_to_reference(y, ref, "float32")
    assert spec.macs_per_input_pixel() == 8 * groups * 16 + 16 * 16


def test_macs_count_the_offset_conv_and_four_taps_per_output_value():
    # C = 64, G = 4: 32 x 64 for the offsets, 4 outputs x 4 taps x 64 channels per input pixel
    assert pc.LayerSpec(KIND, 64).macs_per_input_pixel() == 32 * 64 + 16 * 64


# -- the PyTorch module ---------------------------------------------------------------------------
def test_module_starts_as_the_authors_init_close_to_bilinear_x2():
    torch.manual_seed(0)
    layer = make_layer(KIND, 16, 16)
    assert isinstance(layer, DySample2d) and layer.groups == 4
    assert set(layer.state_dict()) == {"offset.weight", "offset.bias"}
    assert float(layer.offset.weight.detach().std()) == pytest.approx(0.001, rel=0.1)
    assert float(layer.offset.bias.detach().abs().max()) == 0.0
    x = torch.randn(1, 16, 6, 6)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert float((layer(x) - bilinear).abs().max()) < 1e-2


def test_module_round_trips_through_the_cores_weight_layout():
    src = make_layer(KIND, 6, bias=True)
    w = _weights(6, 9)
    src.load_onnx_weights(w)
    copy = DySample2d.from_onnx_weights(src.onnx_weights())
    x = _x((2, 6, 4, 5))
    with torch.no_grad():
        y = copy(torch.from_numpy(x)).numpy()
    assert_close_to_reference(y, R.apply(KIND, x, w), "float32")


# -- export and convert_deconvs -------------------------------------------------------------------
def _net() -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), make_layer(KIND, 8, bias=True),
                        nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 1))
    with torch.no_grad():  # offsets of a fraction of a pixel, non-trivial BatchNorm statistics
        net[1].load_onnx_weights(_weights(8, 2))
        net[2].running_mean.normal_(0, 0.1)
        net[2].running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize(("target", "fp16"), [(None, False), (None, True), ("tensorrt", False)])
def test_export_onnx_writes_the_gather_form_and_verifies_against_pytorch(target, fp16, tmp_path):
    path = export_onnx(_net(), tmp_path / "net.onnx", (1, 3, 12, 10),
                       options=ExportOptions(target=target, fp16=fp16))
    model = onnx.load(str(path))
    assert "Gather" in _ops(model) and "GridSample" not in _ops(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == ["height", "width"]
    x = _x((2, 3, 7, 9), 5, np.float16 if fp16 else np.float32)  # another size: dynamic H, W
    (y,) = run_onnx(model, {"x": x})
    with torch.no_grad():
        ref = _net()(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)
    assert y.shape == (2, 2, 14, 18)
    assert_close_to_reference(y, ref, "float16" if fp16 else "float32")


def test_export_with_target_any_runs_on_all_five_consumers(tmp_path):
    install_torchvision_stand_in()
    path = export_onnx(_net(), tmp_path / "net.onnx", (1, 3, 12, 10), options=ExportOptions(target="any"))
    report = check_model(str(path))
    assert report.passed and all(r.status in ("pass", "baseline") for r in report.results), str(report)


def test_convert_deconvs_takes_a_channel_keeping_deconvolution():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ConvTranspose2d(4, 4, 4, 2, 1))
    report = convert_deconvs(model, kind="DySample")
    assert isinstance(model[1], DySample2d) and [p for p, _ in report.replaced] == ["1"]
    assert model[1].bias is not None  # the deconvolution had one
    assert model(torch.zeros(1, 3, 5, 7)).shape == (1, 4, 10, 14)


def test_convert_deconvs_refuses_a_deconvolution_that_changes_the_channels_model_unchanged():
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 4, 2, 1), nn.ConvTranspose2d(4, 2, 4, 2, 1))
    with pytest.raises(pc.SpecError, match=r"convert_deconvs: cannot replace '1' \(ConvTranspose2d 4 "
                                           r"-> 2 channels\) by dysample: .*out_channels must equal "
                                           r"in_channels"):
        convert_deconvs(model, kind=KIND)
    assert all(isinstance(m, nn.ConvTranspose2d) for m in model)
