"""ExportOptions (export_onnx's options object) and the export errors: usage (exit 2) versus
failure (exit 1), through the library and through ``pixeldcn export``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import pixeldcn_core as pc
from exporters.pytorch import (
    ExportError,
    ExportOptions,
    ExportOptionsError,
    ExportOptionsKeywordError,
    export_onnx,
    make_layer,
)
from pixeldcn_core.cli import main


def test_defaults_and_normalised_fields():
    o = ExportOptions(input_names=["x"], mean=[0.5, 0.5, 0.5], input_format="UINT8_NHWC",
                      output="uint8-image")
    assert o.input_names == ("x",) and o.mean == (0.5, 0.5, 0.5)  # tuples: hashable, frozen
    assert (o.input_format, o.output, o.io_layout, o.processes_io) == (
        "uint8-nhwc", "uint8_image", "nhwc", True)
    d = ExportOptions()
    assert (d.dynamic, d.verify, d.fp16, d.target, d.processes_io) == (True, True, False, None, False)
    assert hash(o) != hash(d)


def test_options_are_frozen_and_replace_checks_again():
    o = ExportOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.verify = False  # type: ignore[misc]
    assert o.replace(verify=False).verify is False and o.verify is True
    with pytest.raises(ExportOptionsError, match=r"atol: got -1, expected a finite number >= 0"):
        o.replace(atol=-1)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"dynamic": "yes"}, ExportOptionsError, r"dynamic: got 'yes', expected True or False"),
    ({"rtol": float("nan")}, ExportOptionsError, r"rtol: got nan, expected a finite number"),
    ({"input_names": ("x", "x")}, ExportOptionsError, r"input_names: got \('x', 'x'\), expected "
                                                      r"distinct non-empty names"),
    ({"output": "classes"}, ExportOptionsError, r"output: got 'classes', expected one of logits"),
    ({"mean": (0.5,)}, ExportOptionsError, r"mean/std: given, but input_format is float32"),
    ({"input_format": "uint8-nchw", "std": (0.0,)}, ExportOptionsError,
     r"std: got \(0\.0,\), expected positive values"),
    ({"target": "tflite"}, pc.SpecError, r"target='tflite'; expected one of onnxruntime"),
    ({"target": "any", "opset": 18}, pc.SpecError, r"opset 18 with target='any'"),
    ({"interleave": "pixel_shuffle"}, pc.SpecError, r"interleave='pixel_shuffle'"),
])
def test_options_are_checked_when_constructed(kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        ExportOptions(**kwargs)
    assert isinstance(info.value, ValueError)  # usage errors: pixeldcn exits 2


def test_the_old_keyword_call_says_how_to_pass_options(tmp_path):
    layer = make_layer("dcl", 2, 2)
    with pytest.raises(ExportOptionsKeywordError) as info:
        export_onnx(layer, tmp_path / "m.onnx", (1, 2, 4, 4), verify=False, target="any")
    assert str(info.value) == (
        "export_onnx() no longer takes export options as keywords (got ['target', 'verify']); "
        "pass them as options: export_onnx(model, path, input_shape, "
        "options=ExportOptions(target='any', verify=False))")
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    with pytest.raises(ExportOptionsKeywordError, match=r"unexpected keyword argument\(s\) "
                                                        r"\['dynamc'\]; expected options="):
        export_onnx(layer, tmp_path / "m.onnx", (1, 2, 4, 4), dynamc=False)
    with pytest.raises(ExportOptionsError, match=r"options is a dict; expected exporters"):
        export_onnx(layer, tmp_path / "m.onnx", (1, 2, 4, 4), options={"verify": False})
    assert not (tmp_path / "m.onnx").exists()


def test_an_export_failure_is_not_a_usage_error():
    assert not issubclass(ExportError, ValueError)
    assert issubclass(ExportOptionsError, ExportError) and issubclass(ExportOptionsError, ValueError)


def test_pixeldcn_export_exits_2_on_a_usage_error(tmp_path, capsys):
    rc = main(["export", "--arch", "unet", "--base-channels", "4", "--depth", "2",
               "--mean", "0.5,0.5,0.5", "--out", str(tmp_path / "u.onnx")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.strip() == ("pixeldcn export: error: --mean/--std: given, but --input is float32; "
                           "they normalise uint8 input only (add --input uint8-nhwc)")


def test_pixeldcn_export_exits_1_when_torch_onnx_export_fails(tmp_path, capsys, monkeypatch):
    # Fault injection: the converter itself fails (a model it cannot translate). The error, its
    # message and the exit code are the exporter's own.
    def broken(*args, **kwargs):
        raise RuntimeError("no translation for aten::mystery_op")

    monkeypatch.setattr(torch.onnx, "export", broken)
    rc = main(["export", "--arch", "unet", "--base-channels", "4", "--depth", "2",
               "--input-shape", "1,3,8,8", "--out", str(tmp_path / "u.onnx")])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.strip() == ("pixeldcn export: error: torch.onnx.export failed: "
                           "no translation for aten::mystery_op")
    assert not (tmp_path / "u.onnx").exists()
