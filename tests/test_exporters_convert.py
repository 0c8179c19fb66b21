"""convert_deconvs: every x2 ConvTranspose2d swapped for the chosen layer, the rest reported."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pixeldcn_core as pc
from exporters.pytorch import MODULES, DCL2d, PixelDCL2d, convert_deconvs


class Mixed(nn.Module):
    """Four deconvs: two x2 (one with bias), one x2 via padding=1/output_padding=1 (k = 3), and
    three that do not up-sample by exactly 2 (stride 1, groups 2, size 2H + 1)."""

    def __init__(self, in_channels: int = 4) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(in_channels, 6, 4, stride=2, padding=1)  # 2H, bias
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(6, 6, 3, stride=2, padding=1, output_padding=1, bias=False),  # 2H
        )
        self.same = nn.ConvTranspose2d(6, 6, 3, stride=1, padding=1)  # no up-sampling
        self.grouped = nn.ConvTranspose2d(6, 6, 4, stride=2, padding=1, groups=2)
        self.odd = nn.ConvTranspose2d(6, 3, 3, stride=2, padding=1)  # 2H - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(self.grouped(self.same(self.body(self.up1(x)))))


@pytest.mark.parametrize("kind", [k for k in pc.layer_kinds() if pc.get_kind(k).scale == 2])
def test_x2_deconvs_are_replaced_others_reported_and_output_shape_kept(kind):
    torch.manual_seed(0)
    r = pc.get_kind(kind).in_per_out
    if r is not None:  # C fixed by Cin: up1 (4 -> 6) cannot become it
        model = Mixed(4).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(pc.SpecError, match=f"cannot replace 'up1' \\(ConvTranspose2d 4 -> 6 "
                                               f"channels\\) by {kind}: .*the model is unchanged"):
            convert_deconvs(model, kind)
        assert isinstance(model.up1, nn.ConvTranspose2d) and model.state_dict().keys() == before.keys()
        if r != 1:  # body.1 (6 -> 6) never fits a kind that divides the channels
            return
    cin = 4 if r is None else 6  # a kind that keeps the channels: 6 -> 6
    model = Mixed(cin).eval()
    x = torch.randn(2, cin, 5, 7)
    shape = model(x).shape
    report = convert_deconvs(model, kind)
    assert [p for p, _ in report.replaced] == ["up1", "body.1"]
    assert dict(report.skipped).keys() == {"same", "grouped", "odd"}
    assert "stride (1, 1), expected (2, 2)" in dict(report.skipped)["same"]
    assert "groups=2, expected 1" in dict(report.skipped)["grouped"]
    assert "2H-1 x 2W-1" in dict(report.skipped)["odd"]
    assert isinstance(model.up1, MODULES[kind]) and isinstance(model.body[1], MODULES[kind])
    assert model.up1.bias is not None and model.body[1].bias is None
    assert (model.up1.in_channels, model.up1.out_channels) == (cin, 6)
    assert not model.up1.training
    assert model(x).shape == shape
    text = str(report)
    assert text.startswith(f"convert_deconvs(kind='{kind}'): replaced 2, skipped 3")
    assert "skipped  odd: output is not 2H x 2W" in text


def test_dcl_keeps_the_kernel_and_copies_weights_when_the_function_is_identical():
    # k = 4, padding 1 is TF 'SAME' already: same outputs after conversion.
    model = nn.Sequential(nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1))
    x = torch.randn(1, 3, 5, 6)
    before = model(x)
    report = convert_deconvs(model, "dcl")
    assert isinstance(model[0], DCL2d) and model[0].kernel_size == 4
    assert "weights copied" in report.replaced[0][1]
    torch.testing.assert_close(model(x), before, rtol=1e-6, atol=1e-6)


def test_kwargs_reach_the_new_layer():
    model = nn.Sequential(nn.ConvTranspose2d(3, 2, 2, stride=2))
    convert_deconvs(model, "PixelDCL", kernel_size=5)
    assert isinstance(model[0], PixelDCL2d) and model[0].kernel_size == 5


def test_a_shared_deconv_stays_shared():
    deconv = nn.ConvTranspose2d(2, 2, 2, stride=2)
    model = nn.ModuleDict({"a": nn.Sequential(deconv), "b": nn.Sequential(deconv)})
    convert_deconvs(model, "resize_conv")
    assert model["a"][0] is model["b"][0]


def test_unknown_kind_lists_the_valid_kinds():
    valid = ", ".join(pc.layer_kinds())
    with pytest.raises(pc.UnknownKindError, match=f"kind 'bicubic'; expected one of {valid}"):
        convert_deconvs(Mixed(), "bicubic")


def test_bad_kwargs_raise_a_spec_error_before_anything_is_replaced():
    model = Mixed()
    with pytest.raises(pc.SpecError, match="kernel_size must be an odd integer >= 3, got 4"):
        convert_deconvs(model, "pixel_dcl", kernel_size=4)
    assert isinstance(model.up1, nn.ConvTranspose2d)
    assert isinstance(model.body[1], nn.ConvTranspose2d)


def test_a_kind_that_does_not_double_the_size_is_refused_before_looking_at_the_model():
    """ipixel_cl keeps H x W: convert_deconvs says so even for a model without deconvolutions."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    with pytest.raises(pc.SpecError,
                       match=r"kind 'ipixel_cl' has scale 1 .* expected an x2 kind: (\w+, )*dcl, "):
        convert_deconvs(model, kind="ipixel_cl")
