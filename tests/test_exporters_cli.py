"""``pixeldcn export`` end to end through the real entry point (pixeldcn_core.cli.main)."""

from __future__ import annotations

import numpy as np
import onnx
import torch

import pixeldcn_core as pc
from exporters.pytorch import VAE, UNet, save_weights
from pixeldcn_core.cli import main

from .conftest import assert_close_to_reference, run_onnx


def test_export_unet_with_trained_weights_prints_stages_and_a_passing_report(tmp_path, capsys):
    torch.manual_seed(0)
    trained = UNet(3, 3, base_channels=4, depth=3, up="ipixel_dcl").eval()
    save_weights(trained, tmp_path / "w.safetensors")
    out = tmp_path / "unet.onnx"
    rc = main(["export", "--arch", "unet", "--up", "ipixel_dcl", "--base-channels", "4",
               "--depth", "3", "--num-classes", "3", "--input-shape", "1,3,16,16",
               "--weights", str(tmp_path / "w.safetensors"), "--out", str(out),
               "--interleave", "concat"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "DepthToSpace" not in {n.op_type for n in onnx.load(str(out)).graph.node}  # --interleave
    for stage in ("[1/4] building unet (up=ipixel_dcl)", "[2/4] loading weights",
                  "[3/4] exporting to", "[4/4] verifying", "result: PASS"):
        assert stage in printed
    # The file holds the trained weights: it reproduces the trained model (float32: 1e-5 of scale).
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 16)).astype(np.float32)
    (y,) = run_onnx(onnx.load(str(out)), {"x": x})
    with torch.no_grad():
        ref = trained(torch.from_numpy(x)).numpy().astype(np.float64)
    assert_close_to_reference(y, ref, "float32")


def test_export_vae_decoder_fp16_static(tmp_path, capsys):
    out = tmp_path / "dec.onnx"
    rc = main(["export", "--arch", "vae-decoder", "--up", "subpixel_conv", "--latent-dim", "16",
               "--base-channels", "4", "--input-shape", "2,16", "--fp16", "--static",
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "float16" in printed and "result: PASS" in printed
    inp = onnx.load(str(out)).graph.input[0].type.tensor_type
    assert inp.elem_type == onnx.TensorProto.FLOAT16
    assert [d.dim_value for d in inp.shape.dim] == [2, 16]


def test_export_vae_decoder_accepts_a_whole_vae_checkpoint(tmp_path, capsys):
    save_weights(VAE(16, 4, "dcl"), tmp_path / "vae.safetensors")
    rc = main(["export", "--arch", "vae-decoder", "--up", "dcl", "--latent-dim", "16",
               "--base-channels", "4", "--weights", str(tmp_path / "vae.safetensors"),
               "--static", "--no-verify", "--out", str(tmp_path / "d.onnx")])
    assert rc == 0, capsys.readouterr()
    assert "verification skipped" in capsys.readouterr().out


def test_an_unknown_layer_kind_exits_2_listing_the_valid_kinds(tmp_path, capsys):
    rc = main(["export", "--arch", "unet", "--up", "bicubic", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 2  # a usage error: bad option, file or value
    valid = ", ".join(pc.layer_kinds())
    assert f"pixeldcn export: error: unknown up-sampling layer kind 'bicubic'; expected one of {valid}" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_a_bad_input_shape_exits_2_naming_field_got_and_expected(tmp_path, capsys):
    rc = main(["export", "--arch", "unet", "--input-shape", "1,3,x", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 2  # a usage error: bad option, file or value
    assert "--input-shape: got '1,3,x', expected positive integers separated by commas" in err


def test_an_unknown_arch_exits_2(tmp_path, capsys):
    rc = main(["export", "--arch", "resnet", "--out", str(tmp_path / "m.onnx")])
    assert rc == 2  # a usage error: bad option, file or value
    assert "--arch: got 'resnet', expected one of unet, vae-decoder" in capsys.readouterr().err


def test_a_mismatching_checkpoint_exits_2_with_the_key_list(tmp_path, capsys):
    save_weights(UNet(3, 3, base_channels=4, depth=2), tmp_path / "w.safetensors")
    rc = main(["export", "--arch", "unet", "--base-channels", "8", "--depth", "2",
               "--num-classes", "3", "--weights", str(tmp_path / "w.safetensors"),
               "--out", str(tmp_path / "m.onnx")])
    assert rc == 2  # a usage error: bad option, file or value
    assert "mis-shaped" in capsys.readouterr().err
