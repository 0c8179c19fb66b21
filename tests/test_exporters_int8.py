"""pixeldcn export --int8 --calibration DIR|photos: static QDQ quantisation with onnxruntime.

Agreement figures (mask %, PSNR, latency) are reported, not asserted as targets; the tests
assert what must hold for any calibration: QDQ nodes present, outputs of the right type,
PSNR of int8 against fp32 above 15 dB on held-out photos (a broken scale gives < 5 dB), and
clean refusals of bad calibration data.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from exporters.pytorch import ExportError, ExportOptions, UNet, export_onnx
from exporters.pytorch._int8 import calibration_inputs, compare_int8, quantize_int8
from pixeldcn_core.cli import main

pytest.importorskip("skimage")
SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def float_path(tmp_path_factory):
    torch.manual_seed(0)
    model = UNet(3, 4, base_channels=4, depth=2, up="pixel_dcl").eval()
    return export_onnx(model, tmp_path_factory.mktemp("int8") / "f.onnx", SHAPE,
                       options=ExportOptions(verify=False))


@pytest.mark.slow
def test_quantised_model_is_qdq_and_agrees_with_float32_on_held_out_photos(float_path, tmp_path):
    q = quantize_int8(float_path, tmp_path / "q.onnx", "photos")
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    report = compare_int8(float_path, q, repeats=2)
    assert report.images == 3
    assert report.psnr_db > 15.0, report
    assert report.mask_agreement is not None and 0.0 <= report.mask_agreement <= 1.0
    assert report.fp32_ms > 0 and report.int8_ms > 0
    assert "mask agreement" in str(report) and "PSNR" in str(report)


def test_photos_give_normalised_tiles_of_the_model_shape():
    xs = calibration_inputs("photos", SHAPE, mean=(0.5,) * 3, std=(0.5,) * 3, photos=("astronaut",))
    assert len(xs) == 4 and all(x.shape == SHAPE and x.dtype == np.float32 for x in xs)
    assert min(float(x.min()) for x in xs) >= -1.0 and max(float(x.max()) for x in xs) <= 1.0


def test_calibration_folder_errors_name_the_file_and_the_shape(tmp_path):
    with pytest.raises(ExportError, match=r"--calibration: got '.*nope', which is not a folder"):
        calibration_inputs(tmp_path / "nope", SHAPE)
    with pytest.raises(ExportError, match=r"holds no images"):
        calibration_inputs(tmp_path, SHAPE)
    np.save(tmp_path / "bad.npy", np.zeros((2, 4, 32, 32), np.float32))
    with pytest.raises(ExportError, match=r"'bad.npy': got float32 \[2, 4, 32, 32\], expected "
                       r"float \[N, 3, H, W\]"):
        calibration_inputs(tmp_path, SHAPE)
    (tmp_path / "bad.npy").unlink()
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(ExportError, match=r"'gray.png': got shape \[40, 40\], expected an RGB"):
        calibration_inputs(tmp_path, SHAPE)
    (tmp_path / "gray.png").write_bytes(b"not a png")
    with pytest.raises(ExportError, match=r"--calibration: gray.png is not an image Pillow can read"):
        calibration_inputs(tmp_path, SHAPE)


def test_npy_and_image_folders_are_read(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((2, 3, 32, 32), np.float32))
    from PIL import Image

    Image.fromarray(np.full((50, 70, 3), 255, np.uint8)).save(tmp_path / "b.png")
    xs = calibration_inputs(tmp_path, SHAPE)
    assert len(xs) == 3 and all(x.shape == SHAPE for x in xs)
    np.testing.assert_allclose(xs[2], 1.0)  # 255 / 255, white image center crop


@pytest.mark.parametrize("argv, message", [
    (["--int8"], "--int8: needs calibration data"),
    (["--calibration", "photos"], "--calibration: given without --int8"),
    (["--int8", "--calibration", "/nonexistent-dir"], "which is not a folder"),
    (["--int8", "--calibration", "photos", "--fp16"], "cannot be combined with --fp16"),
])
def test_cli_int8_usage_errors_exit_2_before_exporting(tmp_path, capsys, argv, message):
    out = tmp_path / "u.onnx"
    rc = main(["export", "--arch", "unet", "--depth", "2", "--base-channels", "4",
               "--input-shape", "1,3,32,32", "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.slow
def test_cli_int8_with_uint8_input_and_mask_output(tmp_path, capsys):
    out = tmp_path / "u8.onnx"
    rc = main(["export", "--arch", "unet", "--depth", "2", "--base-channels", "4",
               "--num-classes", "4", "--input-shape", "1,3,32,32", "--out", str(out),
               "--int8", "--calibration", "photos", "--input", "uint8-nhwc", "--output", "mask"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "int8 vs fp32 on 3 held-out photo tiles: mask agreement" in printed
    assert "in-graph I/O: mask uint8" in printed
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert "QuantizeLinear" in {n.op_type for n in m.graph.node}
