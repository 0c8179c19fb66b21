"""DeepLab-ResNet (exporters.pytorch.DeepLabResNet) and load_backbone.

The backbone is checked against torchvision's layout without torchvision (it cannot be imported
beside the CPU torch here): parameter counts equal torchvision's published ones (resnet50:
25,557,032 with the 1000-class fc; resnet101: 44,549,160), key names and shapes of a few
landmark entries are written out by hand, and torchvision-layout checkpoints are built in the
tests by renaming our module's keys to torchvision's (``backbone.`` dropped, ``fc.*`` added;
``aspp.`` -> ``classifier.0.`` for DeepLabV3).

Export parity: onnxruntime vs PyTorch with export_onnx's float32 tolerances (atol 1e-5,
rtol 1e-3); loaded tensors compared exactly.
"""

from __future__ import annotations

import pickle
import re

import onnx
import pytest
import torch
from torch import nn

import pixeldcn_core as pc
from exporters.pytorch import (
    CheckpointError,
    DeepLabResNet,
    ResNetBackbone,
    UpsampleLayer,
    convert_deconvs,
    export_onnx,
    load_backbone,
    verify,
)

#: A reduced DeepLab that builds and exports in seconds: one block per stage, narrow.
TINY = {"base_width": 8, "blocks": (1, 1, 1, 1), "aspp_channels": 16, "decoder_channels": (16, 8)}


def x2_kinds() -> list[str]:
    """Every registered kind that up-samples by 2 (the decoder's requirement)."""
    return [k for k in pc.layer_kinds() if getattr(pc.get_kind(k), "scale", 2) == 2]


def tiny(up: str = "pixel_dcl", seed: int = 0, **kw) -> DeepLabResNet:
    torch.manual_seed(seed)
    model = DeepLabResNet(3, 5, up=up, **{**TINY, **kw})
    randomise_batchnorm(model, seed)
    return model.eval()


def randomise_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics, so that folding is exercised by the export tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def torchvision_resnet_state(model: DeepLabResNet, classes: int = 1000) -> dict[str, torch.Tensor]:
    """Our backbone renamed to torchvision's resnet layout, plus an ImageNet ``fc``."""
    sd = {k[len("backbone."):]: v.clone() for k, v in model.state_dict().items()
          if k.startswith("backbone.")}
    width = model.backbone.out_channels
    sd["fc.weight"] = torch.randn(classes, width)
    sd["fc.bias"] = torch.randn(classes)
    return sd


def torchvision_deeplabv3_state(model: DeepLabResNet) -> dict[str, torch.Tensor]:
    """Our backbone and ASPP renamed to torchvision's deeplabv3_resnet* layout, plus its head."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            sd[k] = v.clone()
        elif k.startswith("aspp."):
            sd["classifier.0." + k[len("aspp."):]] = v.clone()
    c = model.aspp.project[0].out_channels
    sd["classifier.1.weight"] = torch.randn(c, c, 3, 3)
    sd["classifier.4.weight"] = torch.randn(21, c, 1, 1)
    sd["aux_classifier.0.weight"] = torch.randn(8, 4, 3, 3)
    return sd


# ------------------------------------------------------------------------- torchvision layout


@pytest.mark.parametrize(("depth", "torchvision_params", "keys"), [(50, 25_557_032, 320),
                                                                   (101, 44_549_160, 626)])
def test_backbone_has_torchvision_resnet_parameter_count_and_keys(depth, torchvision_params, keys):
    # torchvision's count includes fc: 2048 x 1000 + 1000; its state_dict has fc.weight, fc.bias.
    backbone = ResNetBackbone(depth)
    n = sum(p.numel() for p in backbone.parameters())
    assert n + 2048 * 1000 + 1000 == torchvision_params
    assert len(backbone.state_dict()) + 2 == keys


def test_backbone_landmark_keys_have_torchvision_shapes():
    sd = ResNetBackbone(101).state_dict()
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "bn1.num_batches_tracked": (),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.running_mean": (256,),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer2.0.downsample.0.weight": (512, 256, 1, 1),
        "layer3.22.conv3.weight": (1024, 256, 1, 1),
        "layer3.22.bn3.bias": (1024,),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "layer4.2.bn3.weight": (2048,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "layer3.23.conv1.weight" not in sd and "layer2.1.downsample.0.weight" not in sd


def test_last_two_stages_are_dilated_as_torchvision_replace_stride_with_dilation():
    # replace_stride_with_dilation=[False, True, True]: the first block of a dilated stage keeps
    # the previous dilation; every 3x3 conv of layer3/layer4 has stride 1.
    b = ResNetBackbone(50)
    assert b.layer2[0].conv2.stride == (2, 2)
    assert [blk.conv2.dilation for blk in b.layer3] == [(1, 1)] + [(2, 2)] * 5
    assert [blk.conv2.dilation for blk in b.layer4] == [(2, 2), (4, 4), (4, 4)]
    assert all(blk.conv2.stride == (1, 1) for blk in [*b.layer3, *b.layer4])
    assert b.layer3[0].downsample[0].stride == (1, 1)


def test_backbone_output_stride_is_8_and_deeplab_output_is_full_size():
    model = tiny()
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        assert model.backbone(x).shape == (2, 8 * 32, 5, 7)
        assert model(x).shape == (2, 5, 40, 56)


@pytest.mark.parametrize("kind", x2_kinds())
def test_every_x2_kind_builds_a_decoder_of_three_layers(kind):
    model = tiny(kind)
    # The layer, after a 1 x 1 conv where its channel rule needs one (bilinear_additive: 4C -> C).
    ups = [next(m for m in b.up if isinstance(m, UpsampleLayer)) for b in model.decoder]
    assert [type(u).kind for u in ups] == [pc.get_kind(kind).name] * 3
    r = pc.get_kind(kind).in_per_out or 1
    assert [u.in_channels for u in ups] == [16 * r, 16 * r, 8 * r]
    assert [u.out_channels for u in ups] == [16, 16, 8]


def test_input_size_not_a_multiple_of_8_is_refused_with_the_sizes():
    with pytest.raises(pc.InputShapeError, match="got H x W = 36 x 40, while the output stride 8"):
        tiny()(torch.randn(1, 3, 36, 40))
    with pytest.raises(pc.InputShapeError, match=r"x must be \[N, 3, H, W\], got shape \(1, 4, 8, 8\)"):
        tiny()(torch.randn(1, 4, 8, 8))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"depth": 34}, r"depth must be one of \[50, 101\], got 34"),
    ({"blocks": (1, 1, 0, 1)}, r"blocks must be 4 ints >= 1, got \(1, 1, 0, 1\)"),
    ({"decoder_channels": (8,)}, r"decoder_channels must be 2 ints"),
    ({"aspp_rates": ()}, r"rates must be one or more ints >= 1, got \(\)"),
    ({"num_classes": 0}, r"num_classes must be an int >= 1, got 0"),
    ({"up": "bicubic"}, r"unknown up-sampling layer kind 'bicubic'; expected one of"),
])
def test_bad_constructor_arguments_raise_spec_errors_naming_the_field(kwargs, message):
    with pytest.raises(pc.SpecError, match=message):
        DeepLabResNet(**{**TINY, **kwargs})


# ---------------------------------------------------------------------------------- load_backbone


def assert_backbone_equal(model: DeepLabResNet, source: DeepLabResNet) -> None:
    ours, theirs = model.backbone.state_dict(), source.backbone.state_dict()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_resnet_checkpoint_loads_into_the_backbone_and_reports_fc(tmp_path, suffix):
    source = tiny(seed=1)
    path = tmp_path / f"resnet{suffix}"
    state = torchvision_resnet_state(source)
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = tiny(seed=2)
    aspp_before = {k: v.clone() for k, v in model.aspp.state_dict().items()}
    report = load_backbone(model, path)
    assert_backbone_equal(model, source)
    for key, value in model.aspp.state_dict().items():
        assert torch.equal(value, aspp_before[key]), f"aspp.{key} changed"
    assert report.unexpected == ["fc.bias", "fc.weight"]
    assert len(report.loaded) == len(source.backbone.state_dict())
    assert not report.loaded_aspp
    text = str(report)
    assert f"loaded {len(report.loaded)} backbone tensors" in text
    assert "ignored 2 unexpected keys: fc.bias, fc.weight" in text
    with torch.no_grad():
        x = torch.randn(1, 3, 16, 16)
        assert torch.equal(model.backbone(x), source.backbone(x))


def test_torchvision_deeplabv3_checkpoint_loads_backbone_and_aspp(tmp_path):
    source = tiny(seed=3)
    torch.save({"model": torchvision_deeplabv3_state(source)}, tmp_path / "deeplabv3.pt")
    model = tiny(seed=4)
    report = load_backbone(model, tmp_path / "deeplabv3.pt")
    assert_backbone_equal(model, source)
    for key, value in source.aspp.state_dict().items():
        assert torch.equal(model.aspp.state_dict()[key], value), key
    assert report.loaded_aspp
    assert report.unexpected == ["aux_classifier.0.weight", "classifier.1.weight",
                                 "classifier.4.weight"]
    model2 = tiny(seed=5)
    aspp_before = model2.aspp.project[0].weight.clone()
    load_backbone(model2, tmp_path / "deeplabv3.pt", include_aspp=False)
    assert torch.equal(model2.aspp.project[0].weight, aspp_before)


def test_num_batches_tracked_and_module_prefix_are_accepted(tmp_path):
    source = tiny(seed=6)
    state = {f"module.{k}": v for k, v in torchvision_resnet_state(source).items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "dp.pt")
    model = tiny(seed=7)
    report = load_backbone(model, tmp_path / "dp.pt")
    assert report.missing_optional and all(
        k.endswith("num_batches_tracked") for k in report.missing_optional)
    assert "absent (optional, kept)" in str(report)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.backbone(x), source.backbone(x))


def test_a_misnamed_key_is_reported_missing_and_unexpected_and_nothing_is_loaded(tmp_path):
    state = torchvision_resnet_state(tiny(seed=8))
    state["layer1.0.conv1.weights"] = state.pop("layer1.0.conv1.weight")
    torch.save(state, tmp_path / "typo.pt")
    model = tiny(seed=9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=(
            r"typo.pt does not fit ResNetBackbone \(nothing was loaded\): missing 1 backbone "
            r"keys: backbone.layer1.0.conv1.weight")):
        load_backbone(model, tmp_path / "typo.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # strict=False tolerates unexpected keys, never missing ones; strict=True names both
    with pytest.raises(CheckpointError, match=r"unexpected keys \(strict=True\): fc.bias, fc.weight, "
                       r"layer1.0.conv1.weights"):
        load_backbone(model, tmp_path / "typo.pt", strict=True)


def test_a_mis_shaped_tensor_is_reported_with_both_shapes(tmp_path):
    state = torchvision_resnet_state(tiny(seed=10))
    state["layer2.0.conv2.weight"] = torch.randn(16, 16, 5, 5)
    torch.save(state, tmp_path / "shape.pt")
    model = tiny(seed=11)
    before = model.backbone.layer1[0].conv1.weight.clone()
    with pytest.raises(CheckpointError, match=(
            r"mis-shaped 1: backbone.layer2.0.conv2.weight: got \(16, 16, 5, 5\), "
            r"expected \(16, 16, 3, 3\)")):
        load_backbone(model, tmp_path / "shape.pt")
    assert torch.equal(model.backbone.layer1[0].conv1.weight, before)


def test_a_resnet50_checkpoint_for_a_resnet101_model_names_both_depths(tmp_path):
    narrow = {"base_width": 2, "aspp_channels": 4, "decoder_channels": (4, 4)}
    state = torchvision_resnet_state(DeepLabResNet(depth=50, **narrow))
    torch.save(state, tmp_path / "r50.pt")
    with pytest.raises(CheckpointError, match=(
            r"the checkpoint's stages hold \(3, 4, 6, 3\) blocks \(ResNet-50\), the model's "
            r"\(3, 4, 23, 3\) \(depth=101\)")):
        load_backbone(DeepLabResNet(depth=101, **narrow), tmp_path / "r50.pt")


def test_a_checkpoint_without_resnet_keys_says_what_was_expected(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"no key of the checkpoint is a ResNet key .*"
                       r"'conv1.weight'.*got encoder.weight"):
        load_backbone(tiny(), tmp_path / "other.pt")


def test_nan_in_a_backbone_tensor_is_refused(tmp_path):
    state = torchvision_resnet_state(tiny(seed=12))
    state["bn1.weight"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"NaN/Inf in backbone.bn1.weight"):
        load_backbone(tiny(), tmp_path / "nan.pt")


class _Payload:
    def __reduce__(self):  # would run code when unpickled without weights_only
        return (print, ("executed",))


def test_a_pickle_that_would_run_code_is_refused_and_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match=r"refused|not a readable"):
        load_backbone(tiny(), path)
    assert "executed" not in capsys.readouterr().out


def test_load_backbone_refuses_other_models_and_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="model must be a DeepLabResNet, got Linear"):
        load_backbone(nn.Linear(2, 2), tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone(tiny(), tmp_path / "absent.pt")


# ------------------------------------------------------------------ export, verify, convert


def export_and_check(model: nn.Module, path, kind: str) -> onnx.ModelProto:
    export_onnx(model, path, (1, 3, 32, 32))  # dynamic; verified at 32 x 32 by export_onnx
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    assert "BatchNormalization" not in ops
    layer = pc.build_layer_model(kind, pc.LayerSpec(kind, 2, 2).random_weights())
    assert ("ConvTranspose" in ops) == ("ConvTranspose" in {n.op_type for n in layer.graph.node})
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    return proto


@pytest.mark.slow
def test_export_verifies_at_other_multiples_of_8(tmp_path):
    # Every other x2 kind is exported, verified and served in test_deeplab_serve.py.
    kind = "dcl"
    model = tiny(kind, seed=13)
    export_and_check(model, tmp_path / f"{kind}.onnx", kind)
    x = torch.randn(2, 3, 48, 72, generator=torch.Generator().manual_seed(0))
    report = verify(model, tmp_path / f"{kind}.onnx", x)
    assert report.passed


@pytest.mark.slow
def test_convert_deconvs_swaps_a_deeplab_with_conv_transpose_decoder_then_exports(tmp_path):
    # A user's DeepLab whose decoder up-samples with nn.ConvTranspose2d(k=4, s=2, p=1).
    model = tiny("dcl", seed=14)
    for block in model.decoder:
        c = block.up[0].in_channels
        block.up[0] = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, bias=False)
    model.eval()
    report = convert_deconvs(model, "pixel_dcl")
    assert [path for path, _ in report.replaced] == [f"decoder.{i}.up.0" for i in range(3)]
    assert not report.skipped
    assert all(type(b.up[0]).kind == "pixel_dcl" for b in model.decoder)
    randomise_batchnorm(model, 15)
    export_and_check(model, tmp_path / "converted.onnx", "pixel_dcl")


# -------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(("argv", "message"), [
    (["--arch", "unet", "--backbone-weights", "w.pt"],
     "--backbone-weights: only for --arch deeplab, got --arch unet"),
    (["--arch", "vae-decoder", "--depth", "50"], "--depth: not an option of --arch vae-decoder"),
    (["--arch", "deeplab", "--depth", "34"], r"depth must be one of \[50, 101\], got 34"),
    (["--arch", "deeplab", "--up", "ipixel_cl"], "up='ipixel_cl' maps H x W to H x W"),
])
def test_export_cli_refuses_bad_deeplab_options_with_exit_code_2(tmp_path, capsys, argv, message):
    from pixeldcn_core.cli import main

    assert main(["export", *argv, "--out", str(tmp_path / "m.onnx")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_export_cli_builds_deeplab_loads_a_torchvision_backbone_and_verifies(tmp_path, capsys):
    from pixeldcn_core.cli import main

    source = DeepLabResNet(depth=50, base_width=4)
    torch.save(torchvision_resnet_state(source), tmp_path / "r50.pth")
    rc = main(["export", "--arch", "deeplab", "--depth", "50", "--base-channels", "4",
               "--num-classes", "3", "--up", "resize_conv", "--input-shape", "1,3,32,32",
               "--backbone-weights", str(tmp_path / "r50.pth"), "--out", str(tmp_path / "d.onnx")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "loaded 318 backbone tensors" in out and "ignored 2 unexpected keys: fc.bias, fc.weight" in out
    assert "result: PASS" in out
    proto = onnx.load(str(tmp_path / "d.onnx"))
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim][1] == 3
