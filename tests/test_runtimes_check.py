"""``pixeldcn check`` and the tolerance rule: |y - b| <= atol x max(max|b|, floor) + rtol x |b|.

Real consumers only (onnxruntime, onnx's ReferenceEvaluator, OpenVINO, tract, onnx2torch where
installed). Tolerances are the per-precision defaults unless a test states its own.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest

import pixeldcn_core as pc
from exporters.runtimes import (
    RUNTIMES,
    TOLERANCES,
    CheckError,
    CheckInputError,
    check_layer,
    check_model,
    compare,
    runtime_unavailable,
    seeded_inputs,
    tract_fact,
)
from pixeldcn_core.cli import main


# -- the rule --------------------------------------------------------------------------------------
def test_compare_reports_max_errors_and_the_minimum_tolerances_that_pass():
    ref = np.array([0.0, 1.0, -2.0, 10.0])
    got = ref + np.array([1e-6, 2e-3, 0.0, -1e-2])
    c = compare(got, ref, atol=1e-5, rtol=1e-3)
    assert c.max_abs == pytest.approx(1e-2)
    assert c.max_rel == math.inf  # 1e-6 off a zero element
    assert compare(got[1:], ref[1:]).max_rel == pytest.approx(2e-3)
    # atol needed at rtol 1e-3: max(1e-6 - 0, 2e-3 - 1e-3, 0, 1e-2 - 1e-2) = 1e-3
    assert c.min_atol == pytest.approx(1e-3)
    # rtol needed at atol 1e-5: max((2e-3 - 1e-5) / 1, (1e-2 - 1e-5) / 10) = 1.99e-3
    assert c.min_rtol == pytest.approx(1.99e-3)
    assert not c.passed and "beyond atol=1.000e-05" in c.problems[0]
    assert compare(got, ref, atol=c.min_atol, rtol=1e-3).passed
    assert compare(got, ref, atol=1e-5, rtol=c.min_rtol * (1 + 1e-9)).passed


def test_float32_atol_scales_with_the_output_so_a_scale_20_output_passes_unchanged():
    """Errors of 5e-5 on elements near zero of an output of scale 20 (2.5e-6 of the scale, float32
    noise) pass the default rule, and fail a fixed absolute 1e-5 (the old default)."""
    rng = np.random.default_rng(0)
    ref = rng.uniform(-20, 20, 1000)
    ref[:10] = 1e-4  # elements near zero
    got = ref + 5e-5 * np.sign(rng.standard_normal(1000))
    c = compare(got, ref)  # float32 defaults
    assert c.atol == pytest.approx(TOLERANCES["float32"].atol * c.scale) and c.scale > 19
    assert c.passed, c.problems
    assert not compare(got, ref, atol=1e-5, rtol=1e-3).passed


def test_float32_atol_is_not_loosened_below_scale_1():
    ref = np.full(4, 1e-3)
    assert compare(ref + 2e-5, ref).problems  # atol 1e-5 x max(1e-3, 1) = 1e-5
    assert compare(ref + 5e-6, ref).passed


def test_float16_atol_is_relative_to_the_output_scale():
    ref = np.array([0.0, 0.5, -0.5])
    tol = TOLERANCES["float16"]
    assert compare(ref + 0.9 * tol.atol * 0.5, ref, precision="float16").passed
    assert not compare(ref + 1.5 * tol.atol * 0.5, ref, precision="float16", rtol=0).passed


def test_compare_fails_on_shape_mismatch_and_nan_with_reasons():
    c = compare(np.zeros((2, 3)), np.zeros((3, 2)), name="y")
    assert not c.passed and "shape (2, 3) != baseline (3, 2)" in c.problems[0]
    c = compare(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    assert not c.passed and "1 NaN/Inf values" in c.problems[0]
    assert math.isnan(compare(np.zeros(0), np.zeros(0)).max_abs)


def test_compare_rejects_an_unknown_precision():
    with pytest.raises(pc.SpecError, match="precision 'bfloat16'; expected one of float32, float16"):
        compare(np.zeros(1), np.zeros(1), precision="bfloat16")


# -- inputs ----------------------------------------------------------------------------------------
def _layer_model(kind="pixel_dcl", **kw):
    spec = pc.LayerSpec(kind, 4, 3, bias=True)
    w = spec.random_weights(0)
    return pc.build_layer_model(kind, w, **kw), w


def test_seeded_inputs_are_the_same_for_a_seed_and_fill_symbolic_dims():
    model, _ = _layer_model()
    a, b = seeded_inputs(model, seed=3), seeded_inputs(model, seed=3)
    assert a["x"].shape == (1, 4, 16, 16) and a["x"].dtype == np.float32
    np.testing.assert_array_equal(a["x"], b["x"])
    assert seeded_inputs(model, [(2, 4, 5, 7)])["x"].shape == (2, 4, 5, 7)


def test_seeded_inputs_refuse_a_shape_that_does_not_fit():
    model, _ = _layer_model()
    fits = r"input 'x': shape \[1, 5, 8, 8\] does not fit the model's \['\?', 4, '\?', '\?'\]"
    with pytest.raises(CheckInputError, match=fits):
        seeded_inputs(model, [(1, 5, 8, 8)])
    with pytest.raises(CheckInputError, match="got 2 shapes, while the model has 1 inputs"):
        seeded_inputs(model, [(1, 4, 8, 8), (1, 4, 8, 8)])


def test_tract_fact_states_shape_and_type():
    assert tract_fact(np.zeros((1, 3, 8, 9), np.float32)) == "1,3,8,9,f32"
    assert tract_fact(np.zeros((2, 4), np.float16)) == "2,4,f16"


# -- the check -------------------------------------------------------------------------------------
def test_check_layer_against_the_numpy_reference_on_every_installed_runtime():
    """y = PixelDCL(x) on each consumer vs reference.pixel_dcl in float64 (default tolerances)."""
    _, report = check_layer("pixel_dcl", pc.LayerSpec("pixel_dcl", 4, 3).random_weights(1),
                            ("onnxruntime", "reference", "openvino", "tract"), input_shape=(2, 4, 5, 6))
    assert report.baseline == "numpy reference (pixel_dcl)"
    for r in report.results:
        assert r.status in ("pass", "skipped"), r
        if r.status == "pass":
            assert r.worst("max_abs") <= 1e-5 and r.run_ms is not None and r.load_s is not None
    assert report.passed
    assert any(r.status == "pass" for r in report.results if r.runtime != "onnxruntime")


def test_check_model_uses_onnxruntime_as_baseline_and_reports_it_as_such():
    model, _ = _layer_model("resize_conv")
    report = check_model(model, "onnxruntime,reference")
    ort_row, ref_row = report.results
    assert ort_row.status == "baseline" and ort_row.worst("max_abs") == 0.0
    assert ref_row.status == "pass" and 0 < ref_row.worst("max_abs") <= 1e-5
    assert "baseline: onnxruntime (CPU)" in str(report)


def test_check_fails_when_a_runtime_disagrees_beyond_a_stated_tolerance():
    """With atol = rtol = 0 float32 results cannot all equal the float64 reference."""
    _, report = check_layer("dcl", pc.LayerSpec("dcl", 4, 3, 4).random_weights(0), "onnxruntime,reference",
                            atol=0.0, rtol=0.0)
    assert not report.passed and report.failed == ["onnxruntime", "reference"]
    assert all(r.worst("min_atol") > 0 for r in report.results)


def test_a_runtime_that_is_not_installed_is_skipped_with_what_to_install(monkeypatch):
    """None in sys.modules makes ``import tract`` raise ImportError, as on a machine without it."""
    import sys

    monkeypatch.setitem(sys.modules, "tract", None)
    assert "pip install tract (or 'pixeldcn[runtimes]')" in runtime_unavailable("tract")
    model, _ = _layer_model()
    report = check_model(model, "onnxruntime,tract")
    assert report.results[1].status == "skipped" and report.passed
    assert not check_model(model, "onnxruntime,tract", strict=True).passed


def test_check_model_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckInputError, match="no such file"):
        check_model(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(CheckInputError, match="is not an ONNX model"):
        check_model(bad)
    model, _ = _layer_model()
    with pytest.raises(CheckInputError, match="expected a comma-separated subset of onnxruntime,reference"):
        check_model(model, "onnxruntime,tensorrt")
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    broken.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(CheckError, match="the baseline onnxruntime cannot run"):
        check_model(broken, "onnxruntime")


# -- the command -----------------------------------------------------------------------------------
def test_cli_check_layer_writes_json_and_exits_0(tmp_path, capsys):
    out = tmp_path / "r" / "check.json"
    rc = main(["check", "--layer", "ipixel_dcl", "--runtimes", "onnxruntime,reference", "--json", str(out),
               "--input-shape", "1,8,4,6"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "runtime" in text and "max abs" in text and "min atol" in text and "result: PASS" in text
    data = json.loads(out.read_text())
    assert data["schema"] == "pixeldcn.check/1" and data["passed"] is True
    assert data["inputs"] == [{"name": "x", "shape": [1, 8, 4, 6], "dtype": "float32"}]
    assert [r["runtime"] for r in data["results"]] == ["onnxruntime", "reference"]
    assert all(r["status"] == "pass" and r["max_abs"] <= 1e-5 for r in data["results"])


def test_cli_check_file_exits_1_when_a_runtime_disagrees(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    model, _ = _layer_model("subpixel_conv")
    onnx.save(model, str(path))
    assert main(["check", str(path), "--runtimes", "onnxruntime,reference"]) == 0
    rc = main(["check", str(path), "--runtimes", "onnxruntime,reference", "--atol", "0", "--rtol", "0",
               "--input-shape", "1,4,8,8"])
    text = capsys.readouterr().out
    # the reference evaluator computes in a different order from onnxruntime: not bit-equal
    assert rc == 1 and "result: FAIL (reference)" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "missing.onnx"], "model 'missing.onnx': no such file"),
    (["check"], "give either MODEL.onnx or --layer KIND"),
    (["check", "--layer", "pixel_dcl", "--runtimes", "ort,foo"], "--runtimes: got ort,foo"),
    (["check", "--layer", "bicubic"], "unknown up-sampling layer kind 'bicubic'"),
    (["check", "--layer", "dcl", "--input-shape", "1,x,3"], "--input-shape: got '1,x,3'"),
])
def test_cli_check_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"pixeldcn check: error: {message}" in err and "Traceback" not in err


def test_every_runtime_has_an_install_hint_and_a_loader():
    assert list(RUNTIMES) == ["onnxruntime", "reference", "openvino", "tract", "onnx2torch"]
    for rt in RUNTIMES.values():
        assert rt.pip and callable(rt.load) and rt.modules
    assert "INFERENCE_PRECISION_HINT=f32" in RUNTIMES["openvino"].hint


def test_one_key_per_consumer_shared_by_the_runtimes_and_the_targets():
    assert list(RUNTIMES) == [t.name for t in pc.CONSUMERS]
    # tensorrt is a target only (no GridSample), not a consumer pixeldcn check runs
    assert list(pc.TARGETS) == [*RUNTIMES, "tensorrt", "any"]


def test_target_any_is_derived_as_what_every_consumer_supports():
    any_target = pc.TARGETS["any"]
    assert any_target == pc.intersection("any", pc.CONSUMERS)
    for fact in ("depth_to_space_dcr", "asymmetric_conv_transpose", "reshape_allowzero", "expand",
                 "grid_sample"):
        assert getattr(any_target, fact) == all(getattr(t, fact) for t in pc.CONSUMERS), fact
    assert (any_target.max_opset, any_target.interleave) == (17, "concat")  # onnx2torch's limits
    for t in pc.CONSUMERS:
        assert t.title in any_target.title


def test_the_old_runtime_name_ort_is_an_alias_of_onnxruntime(capsys):
    model, _ = _layer_model("dcl")
    report = check_model(model, "ort,reference")
    assert [r.runtime for r in report.results] == ["onnxruntime", "reference"]
    assert report.results[0].status == "baseline"
    assert pc.get_target("ort") is pc.TARGETS["onnxruntime"] and pc.consumer_name(" ORT ") == "onnxruntime"
    assert main(["check", "--layer", "dcl", "--runtimes", "ort"]) == 0, capsys.readouterr().err
    assert "onnxruntime" in capsys.readouterr().out


# -- --target on the commands ----------------------------------------------------------------------
def test_cli_layer_target_any_writes_opset_17_and_the_symmetric_dcl(capsys):
    assert main(["layer", "--kind", "dcl", "--kernel-size", "3", "--target", "any", "--size", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert "target=any" in out and "ConvTranspose, Slice" in out and "opset 17" in out and "PASS" in out


def test_cli_check_layer_with_target_any_passes_on_all_five(capsys):
    rc = main(["check", "--layer", "dcl", "--kernel-size", "3", "--target", "any",
               "--torchvision-stand-in"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in RUNTIMES:
        assert f"\n{name} " in out
    assert "skipped" not in out and "ERROR" not in out


def test_cli_check_names_the_onnx2torch_limitation_and_the_fix(capsys):
    rc = main(["check", "--layer", "pixel_dcl", "--runtimes", "onnx2torch", "--torchvision-stand-in"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "DepthToSpace in DCR mode" in out and "export with --target onnx2torch or any" in out


def test_cli_layer_rejects_an_unknown_target_with_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        main(["layer", "--target", "tflite"])
    assert err.value.code == 2
    assert "argument --target: invalid choice: 'tflite'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "--layer", "dcl", "--target", "tflite"], "target='tflite'; expected one of"),
    (["check", "--layer", "dcl", "--target", "onnx2torch", "--opset", "18"],
     "opset 18 with target='onnx2torch'"),
])
def test_cli_check_bad_target_exits_2(argv, message, capsys):
    assert main(argv) == 2
    assert f"pixeldcn check: error: {message}" in capsys.readouterr().err


def test_a_uint8_image_input_gets_0_to_255_and_every_consumer_agrees():
    """add_preprocessing: uint8 NHWC in, Cast/Transpose/normalise in the graph, then the layer."""
    model, _ = _layer_model("pixel_dcl")
    model = pc.add_preprocessing(model, layout="nhwc")
    feeds = seeded_inputs(model, [(1, 8, 8, 4)])
    (x,) = feeds.values()
    assert x.dtype == np.uint8 and x.min() >= 0 and x.max() > 200
    report = check_model(model, "onnxruntime,reference,openvino,tract", input_shapes=[(1, 8, 8, 4)])
    assert report.passed and report.precision == "float32", str(report)
    assert report.inputs[0][2] == "uint8"


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_files_check_writes_follow_the_umask(tmp_path, mask, mode, capsys):
    import os
    import stat

    old = os.umask(mask)
    try:
        rc = main(["check", "--layer", "resize_conv", "--runtimes", "onnxruntime", "--json",
                   str(tmp_path / "r.json"), "--save", str(tmp_path / "layer.onnx")])
    finally:
        os.umask(old)
    assert rc == 0, capsys.readouterr().out
    for name in ("r.json", "layer.onnx"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
