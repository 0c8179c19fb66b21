"""ExportOptions(input_format=..., output=...) and pixeldcn export --input/--output/--mean/--std.

The exported model with processing equals the exported float model (the same export without
options) + numpy processing; masks compared exactly off ties (top-2 gap > 1e-4).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import pixeldcn_core as core
from exporters.pytorch import ExportError, ExportOptions, UNet, export_onnx
from pixeldcn_core.cli import main

from .conftest import run_onnx

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(3, 5, base_channels=4, depth=2, up="pixel_dcl").eval()


@pytest.mark.slow
def test_export_uint8_nhwc_in_mask_out_matches_float_model_plus_numpy(unet, tmp_path, capsys):
    plain = export_onnx(unet, tmp_path / "f.onnx", (1, 3, 16, 16), options=ExportOptions(verify=False))
    lean = export_onnx(unet, tmp_path / "m.onnx", (1, 3, 16, 16), verbose=True,
                       options=ExportOptions(input_format="uint8-nhwc", output="mask", mean=MEAN, std=STD))
    assert "in-graph I/O: mask uint8" in capsys.readouterr().out
    m = onnx.load(str(lean))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert core.io_options(m)["input"]["layout"] == "nhwc"
    x = np.random.default_rng(5).integers(0, 256, (2, 24, 16, 3), dtype=np.uint8)
    (logits,) = run_onnx(onnx.load(str(plain)), {"x": core.preprocess(x, mean=MEAN, std=STD)})
    (mask,) = run_onnx(m, {"x": x})
    assert mask.shape == (2, 24, 16) and mask.dtype == np.uint8
    top2 = np.sort(logits, axis=1)[:, -2:]
    ok = (top2[:, 1] - top2[:, 0]) > 1e-4
    assert ok.mean() > 0.98
    np.testing.assert_array_equal(mask[ok], np.argmax(logits, axis=1)[ok])


@pytest.mark.slow
def test_export_probabilities_output_float_input_keeps_float_input(unet, tmp_path):
    path = export_onnx(unet, tmp_path / "p.onnx", (1, 3, 16, 16),
                       options=ExportOptions(output="probabilities"))
    m = onnx.load(str(path))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(6).standard_normal((1, 3, 16, 16)).astype(np.float32)
    (p,) = run_onnx(m, {"x": x})
    with torch.no_grad():
        ref = torch.softmax(unet(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(p, ref, atol=1e-5)


def test_export_io_options_are_checked_before_exporting(unet, tmp_path):
    with pytest.raises(ExportError, match=r"input_format: got 'uint8', expected one of float32"):
        export_onnx(unet, tmp_path / "a.onnx", (1, 3, 16, 16), options=ExportOptions(input_format="uint8"))
    with pytest.raises(ExportError, match=r"output: got 'classes', expected one of logits"):
        export_onnx(unet, tmp_path / "b.onnx", (1, 3, 16, 16), options=ExportOptions(output="classes"))
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_cli_mean_without_uint8_input_exits_2_in_one_line(tmp_path, capsys):
    rc = main(["export", "--arch", "unet", "--depth", "2", "--base-channels", "4",
               "--input-shape", "1,3,16,16", "--out", str(tmp_path / "u.onnx"), "--mean", "0.5"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().count("\n") == 0 and "--mean/--std: given, but --input is float32" in err


def test_cli_bad_std_exits_2_naming_the_value(tmp_path, capsys):
    rc = main(["export", "--arch", "unet", "--depth", "2", "--base-channels", "4",
               "--input-shape", "1,3,16,16", "--out", str(tmp_path / "u.onnx"),
               "--input", "uint8-nhwc", "--std", "0.2,x"])
    assert rc == 2
    assert "--std: got '0.2,x', expected numbers separated by commas" in capsys.readouterr().err


def test_cli_unknown_output_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--arch", "unet", "--out", str(tmp_path / "u.onnx"), "--output", "classes"])
    assert exc.value.code == 2
    assert "invalid choice: 'classes'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_vae_decoder_uint8_image_output(tmp_path, capsys):
    out = tmp_path / "dec.onnx"
    rc = main(["export", "--arch", "vae-decoder", "--up", "subpixel_conv", "--latent-dim", "8",
               "--base-channels", "4", "--input-shape", "1,8", "--static",
               "--output", "uint8-image", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "in-graph I/O: uint8 image" in printed and "0 values differ" in printed
    m = onnx.load(str(out))
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
