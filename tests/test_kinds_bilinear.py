"""What is special about the bilinear kinds (issue 20): no weights, channel rules, fixed stencils.

The parity matrix, the five-consumer matrix, export and convert tests cover them through the
registry; here: the oracle against PyTorch, the weightless and channel-rule behaviour, the two
ONNX forms, the networks' 1 x 1 adapter, ``convert_deconvs`` and activation memory.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pixeldcn_core as pc
from benchmarks._graphs import activation_memory
from exporters.pytorch import MODULES, UNet, UpsampleLayer, convert_deconvs, export_onnx, make_layer
from pixeldcn_core import reference as R
from pixeldcn_core.cli import main

from .conftest import assert_close_to_reference, run_onnx

KINDS = ("bilinear", "bilinear_conv", "bilinear_additive")


def _x(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -- the oracle -------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(1, 1), (1, 4), (5, 7), (8, 3)])
def test_reference_bilinear_equals_torch_interpolate_align_corners_false(h, w):
    x = _x(2, 3, h, w)
    want = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear",
                         align_corners=False).numpy()
    np.testing.assert_allclose(R.apply("bilinear", x, {}), want, rtol=0, atol=1e-12)


def test_reference_rows_are_quarter_three_quarter_stencils_with_the_edges_copied():
    m = R.bilinear_x2_weights(4)
    np.testing.assert_array_equal(m[0], [1, 0, 0, 0])  # source -0.25, clamped to the edge
    np.testing.assert_array_equal(m[1], [0.75, 0.25, 0, 0])
    np.testing.assert_array_equal(m[2], [0.25, 0.75, 0, 0])
    np.testing.assert_array_equal(m[7], [0, 0, 0, 1])
    np.testing.assert_array_equal(m.sum(axis=1), np.ones(8))


def test_bilinear_additive_is_bilinear_then_a_sum_of_four_consecutive_channels():
    x = _x(2, 8, 3, 5)
    up = R.apply("bilinear", x, {})
    want = up[:, 0:4].sum(1, keepdims=True), up[:, 4:8].sum(1, keepdims=True)
    np.testing.assert_allclose(R.apply("bilinear_additive", x, {}), np.concatenate(want, 1),
                               atol=1e-12)


# -- weightless, channel rules ----------------------------------------------------------------
def test_weightless_kinds_have_no_weights_and_derive_their_channels():
    assert pc.get_kind("bilinear").weightless and pc.get_kind("bilinear_additive").weightless
    assert not pc.get_kind("bilinear_conv").weightless
    assert pc.LayerSpec("bilinear", 6).out_channels == 6
    assert pc.LayerSpec("bilinear_additive", 8).out_channels == 2
    assert pc.LayerSpec("bilinear", 6, bias=True).weight_shapes() == {"bias": (6,)}
    assert pc.LayerSpec("bilinear_conv", 6, 2).weight_shapes() == {"weight": (2, 6, 3, 3)}
    for kind in ("bilinear", "bilinear_additive"):
        layer = make_layer(kind, 8, bias=False)
        assert list(layer.parameters()) == [] and layer.onnx_weights() == {}
        assert [n for n, _ in make_layer(kind, 8, bias=True).named_parameters()] == ["bias"]


@pytest.mark.parametrize("args,message", [
    (("bilinear", 6, 3), "bilinear: out_channels must equal in_channels (the kind keeps the "
                         "channels), got in_channels=6, out_channels=3"),
    (("bilinear_additive", 8, 4), "bilinear_additive: in_channels must be 4 x out_channels "
                                  "(C = Cin / 4), got in_channels=8, out_channels=4"),
    (("bilinear_additive", 6), "bilinear_additive: in_channels must be a multiple of 4 "
                               "(C = Cin / 4), got 6"),
    (("bilinear", 4, 4, 3), "bilinear: kernel_size must be 1 (the kind has no kernel size to "
                            "choose), got 3"),
    (("bilinear_conv", 4, 4, 4), "bilinear_conv: kernel_size must be an odd integer >= 1, got 4"),
])
def test_specs_that_break_a_rule_are_refused_naming_it(args, message):
    with pytest.raises(pc.SpecError, match=pytest.importorskip("re").escape(message)):
        pc.LayerSpec(*args)


def test_a_weightless_layer_without_bias_needs_in_channels_to_be_built():
    with pytest.raises(pc.WeightError, match="bilinear has no weights to read the channels from: "
                                             "give in_channels"):
        pc.build_layer_model("bilinear", {})
    model = pc.build_layer_model("bilinear_additive", {}, in_channels=12)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 12, "height", "width"]
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3


# -- the two ONNX forms -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_efficient_form_has_no_resize_and_faithful_form_is_one_resize_both_dynamic(kind):
    spec = pc.LayerSpec(kind, 8, None if pc.get_kind(kind).in_per_out else 3, bias=True)
    w = spec.random_weights(1)
    eff = pc.build_layer_model(kind, w, form="efficient")
    fai = pc.build_layer_model(kind, w, form="faithful")
    ops = {n.op_type for n in eff.graph.node}
    assert "Resize" not in ops and {"Pad", "Conv", "DepthToSpace"} <= ops
    assert [n.op_type for n in fai.graph.node].count("Resize") == 1
    pads = [n for n in eff.graph.node if n.op_type == "Pad"]
    assert [a.s for n in pads for a in n.attribute if a.name == "mode"] == [b"edge"]
    for h, w_ in [(3, 4), (9, 2)]:  # one model, two sizes
        x = _x(2, 8, h, w_, seed=h).astype(np.float32)
        ref = R.apply(kind, x, w)
        for model in (eff, fai):
            (y,) = run_onnx(model, {"x": x})
            assert_close_to_reference(y, ref, "float32")


def test_the_efficient_stencils_are_exact_in_float16():
    """0.75, 0.25 and their products are exact in float16: the fixed kernel adds no rounding."""
    stencils = pc.kinds.bilinear.phase_stencils()
    assert np.array_equal(stencils.astype(np.float16).astype(np.float64), stencils)
    assert stencils.shape == (4, 3, 3) and np.allclose(stencils.sum(axis=(1, 2)), 1)


# -- PyTorch ----------------------------------------------------------------------------------
def test_bilinear_conv_identity_init_starts_as_plain_bilinear():
    layer = make_layer("bilinear_conv", 3, 5, init="identity").double()
    x = torch.from_numpy(_x(1, 3, 4, 6))
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(layer(x), up[:, [0, 1, 2, 0, 1]], rtol=0, atol=1e-12)
    assert MODULES["bilinear_conv"].inits == ("default", "identity")


@pytest.mark.parametrize("kind", KINDS)
def test_each_module_exports_verified_onnx_with_dynamic_height_and_width(kind, tmp_path):
    layer = make_layer(kind, 8, None if pc.get_kind(kind).in_per_out else 4, bias=True)
    path = export_onnx(layer, tmp_path / f"{kind}.onnx", (1, 8, 6, 5))  # verify=True: it checks
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 8, "height", "width"]
    x = _x(2, 8, 7, 3, seed=5).astype(np.float32)
    (y,) = run_onnx(model, {"x": x})
    with torch.no_grad():
        assert_close_to_reference(y, layer(torch.from_numpy(x)).double().numpy(), "float32")


def test_a_unet_with_bilinear_additive_widens_each_up_step_with_a_1x1_conv(tmp_path):
    model = UNet(3, 2, base_channels=4, depth=3, up="bilinear_additive").eval()
    for block in model.up:
        conv, layer = block.up[0], block.up[1]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
        assert isinstance(layer, UpsampleLayer) and layer.in_channels == 4 * layer.out_channels
        assert conv.out_channels == layer.in_channels
    plain = UNet(3, 2, base_channels=4, depth=3, up="bilinear").eval()
    assert all(isinstance(b.up[0], UpsampleLayer) for b in plain.up)  # C -> C fits: no conv
    export_onnx(model, tmp_path / "unet.onnx", (1, 3, 16, 16))  # verified against PyTorch


# -- convert_deconvs --------------------------------------------------------------------------
def test_convert_deconvs_takes_deconvs_that_fit_the_rule_and_refuses_others_clearly():
    fits = nn.Sequential(nn.ConvTranspose2d(8, 8, 4, 2, 1))
    report = convert_deconvs(fits, "bilinear")
    assert type(fits[0]).__name__ == "Bilinear2d" and fits[0].bias is not None
    assert [p for p, _ in report.replaced] == ["0"]
    model = nn.Sequential(nn.ConvTranspose2d(8, 2, 4, 2, 1))
    convert_deconvs(model, "bilinear_additive")
    assert (model[0].in_channels, model[0].out_channels) == (8, 2)
    assert model(torch.zeros(1, 8, 3, 5)).shape == (1, 2, 6, 10)
    keep = nn.Sequential(nn.ConvTranspose2d(8, 8, 4, 2, 1))
    with pytest.raises(pc.SpecError, match=r"convert_deconvs: cannot replace '0' \(ConvTranspose2d "
                                           r"8 -> 8 channels\) by bilinear_additive: .* in_channels "
                                           r"must be 4 x out_channels .*the model is unchanged"):
        convert_deconvs(keep, "bilinear_additive")
    assert isinstance(keep[0], nn.ConvTranspose2d)


# -- memory -----------------------------------------------------------------------------------
def test_activation_memory_of_both_bilinear_forms_from_shape_inference():
    """At x [1, 8, 16, 16] float32 (8 KiB per H x W channel): the efficient form's largest
    intermediate is its [1, 32, 16, 16] Conv output (as big as the output); the faithful form has
    none (its one Resize writes the output)."""
    plane = 4 * 16 * 16
    eff = pc.build_layer_model("bilinear", {}, in_channels=8, form="efficient")
    fai = pc.build_layer_model("bilinear", {}, in_channels=8, form="faithful")
    m_eff = activation_memory(eff, {"x": (1, 8, 16, 16)})
    m_fai = activation_memory(fai, {"x": (1, 8, 16, 16)})
    assert m_eff.output_bytes == m_fai.output_bytes == 32 * plane
    assert (m_eff.largest_bytes, m_eff.largest_op) == (32 * plane, "Conv")
    assert m_fai.largest_bytes == 0 and m_fai.peak_live_bytes == 8 * plane + 32 * plane
    # Pad output (8 x 18 x 18) beside the Conv output, then the Conv output beside the result
    assert m_eff.peak_live_bytes == 64 * plane


def test_pixeldcn_layer_derives_the_output_channels_of_a_rule_kind(capsys):
    assert main(["layer", "--kind", "bilinear_additive", "--in-channels", "8", "--size", "5", "6"]) == 0
    out = capsys.readouterr().out
    assert "8->2 ch" in out and "-> PASS" in out


def test_srnet_takes_bilinear_additive_with_a_1x1_conv_and_its_config_rebuilds_it():
    from exporters.pytorch import SRNet

    net = SRNet("bilinear_additive", scale=4, width=8, depth=2)
    assert sum(isinstance(m, UpsampleLayer) for m in net.body) == 2
    assert SRNet(**net.config()).config() == net.config()
    assert net.config()["depth"] == 2
    assert net(torch.rand(1, 1, 6, 5)).shape == (1, 1, 24, 20)


def test_a_vae_decoder_with_bilinear_gets_1x1_convs_where_its_channels_halve(tmp_path):
    """The VAE decoder's up-sampling steps go 8c -> 4c -> 2c -> c -> c: bilinear (C = Cin) takes
    a 1x1 conv on the first three, none on the last; the export verifies against PyTorch."""
    from exporters.pytorch import VAE

    decoder = VAE(latent_dim=8, base_channels=4, up="bilinear").decoder.eval()
    firsts = [type(step[0]).__name__ for step in decoder.ups]
    assert firsts == ["Conv2d", "Conv2d", "Conv2d", "Bilinear2d"]
    export_onnx(decoder, tmp_path / "dec.onnx", (1, 8))
