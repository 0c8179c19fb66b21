"""The runtime matrix: every registered kind x form x interleave (x an odd and the default kernel)
on onnxruntime, onnx's ReferenceEvaluator, OpenVINO, tract and onnx2torch, against the numpy
reference, with ``pixeldcn check``'s per-precision tolerances (float32: 1e-5 x max(scale, 1) +
1e-3 x |ref|; float16: 1e-2 x scale + 1e-2 x |ref|). Kinds are read from the registry at run time.

- ``target="any"``: every consumer passes, float32 and float16.
- the default target (onnxruntime's fastest forms): onnxruntime, the reference evaluator,
  OpenVINO and tract pass; onnx2torch fails where the graph holds a construct it does not
  convert, each one named (an explicit strict xfail: the day onnx2torch converts it, the test
  says so).

onnx2torch imports torchvision. Where the installed torchvision cannot import beside this torch
(the only wheels reachable on the CI machine are CUDA builds: ``operator torchvision::nms does not
exist``), the tests install ``exporters.runtimes.install_torchvision_stand_in()``: the two
operator schemas torchvision's import needs, declared without kernels. onnx2torch uses
torchvision only for NMS and RoiAlign nodes, which no pixeldcn model holds.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import pixeldcn_core as pc
from exporters.runtimes import (
    RUNTIMES,
    check_layer,
    install_torchvision_stand_in,
    onnx2torch_limitations,
    reference_limitations,
    runtime_unavailable,
)

from .conftest import fit_channels, fit_kernels

ALL = tuple(RUNTIMES)
SHAPE = (2, 4, 6, 8)  # N, Cin, H, W: small, not square, even (iPixelCL needs even sizes)


@pytest.fixture(scope="module", autouse=True)
def _consumers_installed():
    install_torchvision_stand_in()
    missing = {name: why for name in ALL if (why := runtime_unavailable(name))}
    assert not missing, f"runtime tests need pixeldcn[runtimes]: {missing}"


def _kernels(info: pc.KindInfo) -> list[int]:
    """The kind's default kernel and its smallest odd kernel >= 3 (DCL: 6 and 3, asymmetric pads);
    a kind with no kernel to choose: its one."""
    return sorted(set(fit_kernels(info.name, [info.default_kernel, max(3, info.min_kernel) | 1])))


def _cases() -> list[tuple[str, int, str, str | None]]:
    cases = []
    for kind in pc.layer_kinds():
        info = pc.get_kind(kind)
        for k in _kernels(info):
            for form in info.forms:
                for interleave in (pc.INTERLEAVES if info.interleaves else (None,)):
                    cases.append((kind, k, form, interleave))
    return cases


CASES = _cases()
IDS = [f"{kind}-k{k}-{form}-{il or 'na'}" for kind, k, form, il in CASES]


def _weights(kind: str, k: int) -> dict[str, np.ndarray]:
    # With a bias, a kind without weights (bilinear) is read from the bias and its channel rule.
    return pc.LayerSpec(kind, *fit_channels(kind, SHAPE[1], 3), k, bias=True).random_weights(0)


def _assert_all_pass(report) -> None:
    bad = [(r.runtime, r.status, r.message) for r in report.results if r.status != "pass"]
    assert not bad, f"{report}"
    assert [r.runtime for r in report.results] == list(ALL)


@pytest.mark.parametrize(("kind", "k", "form", "interleave"), CASES, ids=IDS)
def test_target_any_runs_on_every_consumer_float32(kind, k, form, interleave):
    """y = layer(x) on all five consumers == reference.apply(kind, x, w) (float32 tolerance)."""
    model, report = check_layer(kind, _weights(kind, k), ALL, input_shape=SHAPE, form=form,
                                interleave=interleave, target="any")
    _assert_all_pass(report)
    assert model.opset_import[0].version == 17
    ops = {n.op_type: n for n in model.graph.node}
    if "DepthToSpace" in ops:
        assert all(onnx.helper.get_attribute_value(a) == b"CRD" for n in model.graph.node
                   if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode")


@pytest.mark.parametrize(("kind", "k", "form", "interleave"),
                         [c for c in CASES if c[3] in (None, "concat")],
                         ids=[i for c, i in zip(CASES, IDS, strict=True) if c[3] in (None, "concat")])
def test_target_any_runs_on_every_consumer_float16(kind, k, form, interleave):
    """The float16 model (weights rounded once) vs the float64 reference (float16 tolerance)."""
    _, report = check_layer(kind, _weights(kind, k), ALL, input_shape=SHAPE, form=form,
                            interleave=interleave, target="any", dtype="float16")
    assert report.precision == "float16"
    _assert_all_pass(report)


def _default_target_params() -> list:
    params = []
    for case, case_id in zip(CASES, IDS, strict=True):
        kind, k, form, interleave = case
        model = pc.build_layer_model(kind, _weights(kind, k), form=form, interleave=interleave)
        reasons = onnx2torch_limitations(model)
        why = "onnx2torch: " + "; ".join(reasons)
        marks = [pytest.mark.xfail(strict=True, reason=why)] if reasons else []
        params.append(pytest.param(*case, marks=marks, id=case_id))
    return params


@pytest.mark.parametrize(("kind", "k", "form", "interleave"), _default_target_params())
def test_default_target_runs_on_onnx2torch_where_the_graph_has_nothing_it_lacks(kind, k, form, interleave):
    _, report = check_layer(kind, _weights(kind, k), ("onnx2torch",), input_shape=SHAPE, form=form,
                            interleave=interleave)
    (r,) = report.results
    assert r.status == "pass", r.message


def _default_target_reference_params() -> list:
    """A strict xfail where the default-target graph holds what the ReferenceEvaluator lacks
    (GridSample-16's mode "bilinear": DySample's faithful form)."""
    params = []
    for case, case_id in zip(CASES, IDS, strict=True):
        kind, k, form, interleave = case
        model = pc.build_layer_model(kind, _weights(kind, k), form=form, interleave=interleave)
        reasons = reference_limitations(model)
        marks = ([pytest.mark.xfail(strict=True, reason="onnx ReferenceEvaluator: " + "; ".join(reasons))]
                 if reasons else [])
        params.append(pytest.param(*case, marks=marks, id=case_id))
    return params


@pytest.mark.parametrize(("kind", "k", "form", "interleave"), _default_target_reference_params())
def test_default_target_runs_on_ort_reference_openvino_and_tract(kind, k, form, interleave):
    _, report = check_layer(kind, _weights(kind, k), ("onnxruntime", "reference", "openvino", "tract"),
                            input_shape=SHAPE, form=form, interleave=interleave)
    assert report.passed and all(r.status == "pass" for r in report.results), str(report)


def test_the_default_target_keeps_the_fastest_onnxruntime_forms():
    """Default = what the emitters always wrote: opset 18, DepthToSpace DCR, asymmetric DCL pads."""
    w = _weights("pixel_dcl", 3)
    assert (pc.build_layer_model("pixel_dcl", w).SerializeToString()
            == pc.build_layer_model("pixel_dcl", w, target="onnxruntime",
                                    interleave="depth_to_space").SerializeToString())
    model = pc.build_layer_model("pixel_dcl", w)
    assert model.opset_import[0].version == pc.DEFAULT_OPSET
    assert onnx2torch_limitations(model) == ["DepthToSpace in DCR mode (onnx2torch converts CRD only)"]


def test_target_any_writes_odd_dcl_as_symmetric_conv_transpose_plus_slice():
    model = pc.build_layer_model("dcl", _weights("dcl", 3), target="any")
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["ConvTranspose", "Slice"]
    (pads,) = [a.ints for a in model.graph.node[0].attribute if a.name == "pads"]
    assert list(pads) == [0, 0, 0, 0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target": "tflite"},
     "target='tflite'; expected one of onnxruntime, reference, openvino, tract, onnx2torch, tensorrt, "
     "any"),
    ({"target": "onnx2torch", "opset": 18},
     "opset 18 with target='onnx2torch': onnx2torch converts opsets up to 17"),
    ({"target": "any", "interleave": "pixel_shuffle"}, "interleave='pixel_shuffle'; expected one of"),
])
def test_bad_targets_raise_spec_errors_naming_the_value(kwargs, message):
    with pytest.raises(pc.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pc.build_layer_model("pixel_dcl", _weights("pixel_dcl", 3), **kwargs)
