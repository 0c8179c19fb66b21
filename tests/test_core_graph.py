"""Structure of the emitted graphs: standard ops only, determinism, resolution of every Conv."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import shape_inference

import pixeldcn_core as pc

from .conftest import fit_channels


def _forbidden(op: str) -> bool:
    """Ops no layer may be written with, whatever its kind: control flow, scatters, random numbers
    and sequences (TensorRT and the small runtimes lack them; they also hide shapes)."""
    return op in {"If", "Loop", "Scan", "Bernoulli", "Multinomial"} or any(
        part in op for part in ("Scatter", "Random", "Sequence"))


ALL = [
    pytest.param(kind, form, id=f"{kind}-{form}")
    for kind in pc.layer_kinds()
    for form in pc.get_kind(kind).forms
]
# The same, with each interleave where the kind interleaves phases (its registry entry says so).
ALL_INTERLEAVES = [
    pytest.param(kind, form, il, id=f"{kind}-{form}-{il}")
    for kind in pc.layer_kinds()
    for form in pc.get_kind(kind).forms
    for il in (pc.INTERLEAVES if pc.get_kind(kind).interleaves else ["depth_to_space"])
]


def _model(kind, form, *, bias=True, seed=0, cin=4, c=3, dtype="float32", interleave="depth_to_space"):
    cin, c = fit_channels(kind, cin, c)
    w = pc.LayerSpec(kind, cin, c, bias=bias).random_weights(seed=seed)
    return pc.build_layer_model(kind, w, form=form, dtype=dtype, interleave=interleave,
                                in_channels=cin)


def _static(model: onnx.ModelProto, n: int, h: int, w: int) -> onnx.ModelProto:
    """A copy with the input's dynamic dims fixed, shape-inferred strictly."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (n, None, h, w), strict=True):
        if v is not None:
            d.ClearField("dim_param")
            d.dim_value = v
    return shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    vis = [*model.graph.value_info, *model.graph.output, *model.graph.input]
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in vis}


@pytest.mark.parametrize("kind,form,interleave", ALL_INTERLEAVES)
def test_emitted_graph_uses_only_standard_ops_of_the_default_domain(kind, form, interleave):
    model = _model(kind, form, interleave=interleave)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert [o.domain for o in model.opset_import] == [""]
    assert all(onnx.defs.has(op, "") for op in ops), ops
    assert not {op for op in ops if _forbidden(op)}
    if pc.get_kind(kind).interleaves and interleave == "concat":
        # the phases are interleaved by copies and reshapes only
        assert "DepthToSpace" not in ops
        if form == "efficient":
            assert {"Reshape", "Unsqueeze", "Concat"} <= ops
    elif pc.get_kind(kind).interleaves and form == "efficient":
        assert "DepthToSpace" in ops


@pytest.mark.parametrize("kind", [k for k in pc.layer_kinds() if not pc.get_kind(k).interleaves])
def test_a_kind_that_does_not_interleave_ignores_the_interleave_option(kind):
    for form in pc.get_kind(kind).forms:
        # the same graph (only the model's doc string records the option asked for)
        a, b = (_model(kind, form, interleave=il).graph.SerializeToString() for il in pc.INTERLEAVES)
        assert a == b


def test_the_forbidden_op_rule_sees_control_flow_scatters_and_sequences():
    assert [op for op in ("Loop", "ScatterND", "RandomNormalLike", "SplitToSequence", "If")
            if not _forbidden(op)] == []
    assert not any(_forbidden(op) for op in ("Conv", "DepthToSpace", "Resize", "GridSample"))


@pytest.mark.parametrize("kind,form,interleave", ALL_INTERLEAVES)
def test_input_x_and_output_y_have_dynamic_batch_height_width(kind, form, interleave):
    model = _model(kind, form, cin=4, c=3, interleave=interleave)
    cin, c = fit_channels(kind, 4, 3)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "x" and out.name == "y"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", cin, "height", "width"]
    assert out.type.tensor_type.shape.dim[1].dim_value == c


@pytest.mark.parametrize("kind,form,interleave", ALL_INTERLEAVES)
def test_same_spec_and_weights_give_byte_identical_models(kind, form, interleave):
    a = _model(kind, form, seed=3, interleave=interleave).SerializeToString()
    b = _model(kind, form, seed=3, interleave=interleave).SerializeToString()
    assert a == b
    assert a != _model(kind, form, seed=4).SerializeToString()


@pytest.mark.parametrize("interleave", pc.INTERLEAVES)
def test_efficient_pixel_dcl_has_no_convolution_at_2h_x_2w(interleave):
    """Every Conv output of the efficient form is H x W (8 x 8 here), none is 16 x 16."""
    model = _static(_model("pixel_dcl", "efficient", interleave=interleave), 1, 8, 8)
    shapes = _shapes(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 6  # F1, F2 and four 2-tap phase convs
    assert all(shapes[n.output[0]][2:] == [8, 8] for n in convs)
    assert shapes["y"] == [1, 3, 16, 16]


def test_faithful_pixel_dcl_does_its_masked_conv_at_2h_x_2w():
    """The check above can see a full-resolution conv: the faithful form has one."""
    model = _static(_model("pixel_dcl", "faithful"), 1, 8, 8)
    shapes = _shapes(model)
    sizes = sorted(shapes[n.output[0]][2:] for n in model.graph.node if n.op_type == "Conv")
    assert sizes == [[8, 8], [8, 8], [16, 16]]


def test_efficient_pixel_dcl_phase_kernels_hold_only_the_masked_in_taps():
    """The four phase convs of k = 3 each have 2 taps: 8 taps in all, as docs/design.md counts."""
    model = _model("pixel_dcl", "efficient")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"][2:]
    taps = [inits[n.input[1]].shape[2] * inits[n.input[1]].shape[3] for n in convs]
    assert taps == [2, 2, 2, 2]


@pytest.mark.parametrize("kind,form", ALL)
def test_float16_models_are_float16_end_to_end(kind, form):
    model = _model(kind, form, dtype="float16")
    onnx.checker.check_model(model, full_check=True)
    f16 = onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == f16
    assert model.graph.output[0].type.tensor_type.elem_type == f16
    for t in model.graph.initializer:
        assert t.data_type in (f16, onnx.TensorProto.INT64, onnx.TensorProto.FLOAT), t.name
        if t.data_type == onnx.TensorProto.FLOAT:  # only Resize's scales stay float32
            assert onnx.numpy_helper.to_array(t).tolist() == [1, 1, 2, 2]


def test_model_records_opset_ir_version_and_producer():
    model = _model("pixel_dcl", "efficient")
    assert model.opset_import[0].version == pc.DEFAULT_OPSET == 18
    assert model.ir_version == 8
    assert model.producer_name == "pixeldcn"
    assert "PixelDCL" in model.doc_string


def test_model_weights_round_trip_exactly_in_float32():
    w = pc.LayerSpec("dcl", 3, 2, 4).random_weights(seed=9)
    model = pc.build_layer_model("dcl", w)
    (init,) = model.graph.initializer
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), w["weight"])


def test_an_initializer_keeps_its_shape_a_scalar_included():
    """GraphBuilder.initializer used to write a 0-d array as shape [1] (np.ascontiguousarray's
    ndim >= 1); ONNX scalars (Clip's bounds, ...) must stay scalars."""
    from pixeldcn_core._builder import GraphBuilder

    b = GraphBuilder(opset=18)
    shapes = {b.initializer(a, "c", cast=False): a.shape
              for a in (np.array(2.0, np.float32), np.array([2], np.int64),
                        np.ones((2, 3), np.float32)[:, ::2])}  # a non-contiguous view too
    got = {t.name: tuple(t.dims) for t in b.initializers}
    assert got == shapes
