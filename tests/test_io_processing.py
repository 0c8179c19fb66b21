"""In-graph pre- and post-processing (pixeldcn_core.add_preprocessing / add_postprocessing).

Each option: onnxruntime on the processed model == numpy processing around onnxruntime on the
float model. Tolerances: preprocessing + float model, atol 1e-5 (the same float32 affine map,
maybe fused differently); the mask is compared exactly except at pixels whose two best logits
are within 1e-4 (ties, counted and bounded); uint8 images exactly except values whose scaled
float lies within 1e-3 of a .5 rounding boundary.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import pixeldcn_core as core
from pixeldcn_core import SpecError


def _layer_model(cin: int = 3, c: int = 5, seed: int = 0) -> onnx.ModelProto:
    spec = core.LayerSpec("pixel_dcl", cin, c, bias=True)
    return core.build_layer_model("pixel_dcl", spec.random_weights(seed))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _images(n: int = 2, h: int = 6, w: int = 7, c: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_preprocessed_model_equals_numpy_preprocess_then_float_model(layout):
    """y = f(x_u8 * a + b) with x_u8 in layout, a = 1/(255 std), b = -mean/std."""
    float_model = _layer_model()
    model = core.add_preprocessing(float_model, layout=layout, mean=MEAN, std=STD)
    onnx.checker.check_model(model, full_check=True)
    x = _images()
    if layout == "nchw":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    xf = core.preprocess(x, layout=layout, mean=MEAN, std=STD)
    assert xf.dtype == np.float32 and xf.shape == (2, 3, 6, 7)
    np.testing.assert_allclose(_run(model, x), _run(float_model, xf), atol=1e-5, rtol=1e-5)
    inp = model.graph.input[0]
    assert inp.name == "x" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert core.io_options(model)["input"]["layout"] == layout


def test_preprocess_defaults_divide_by_255_and_read_the_model_card():
    """x = x_u8 / 255 without mean/std; a pixeldcn.normalization entry supplies them."""
    x = _images()
    np.testing.assert_allclose(core.preprocess(x), x.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)
    float_model = _layer_model()
    prop = float_model.metadata_props.add()
    prop.key, prop.value = "pixeldcn.normalization", json.dumps({"mean": MEAN, "std": STD})
    model = core.add_preprocessing(float_model)
    assert core.io_options(model)["input"]["std"] == pytest.approx(list(STD))
    np.testing.assert_allclose(
        _run(model, x), _run(float_model, core.preprocess(x, mean=MEAN, std=STD)), atol=1e-5
    )


def _tie_free(logits: np.ndarray, gap: float = 1e-4) -> np.ndarray:
    top2 = np.sort(logits, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > gap


@pytest.mark.parametrize("classes, dtype", [(5, np.uint8), (256, np.uint8), (257, np.int32)])
def test_mask_output_is_argmax_of_the_float_logits_uint8_when_classes_fit(classes, dtype):
    """mask = argmax_k y[:, k] (lowest k on ties), uint8 for K <= 256 else int32, shape [N, H, W]."""
    float_model = _layer_model(3, classes)
    model = core.add_postprocessing(float_model, "mask")
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 4)).astype(np.float32)
    logits = _run(float_model, x)
    mask = _run(model, x)
    assert mask.dtype == dtype and mask.shape == (2, 10, 8)
    expected = core.postprocess(logits, "mask")
    ok = _tie_free(logits)
    assert ok.mean() > 0.99
    np.testing.assert_array_equal(mask[ok], expected[ok])
    out = model.graph.output[0]
    assert out.name == "y" and len(out.type.tensor_type.shape.dim) == 3


def test_mask_ties_take_the_lowest_class_in_onnx_and_numpy():
    """y = Identity(x) with equal channels: argmax picks class 0 in both."""
    b = core.GraphBuilder()
    x = b.input("x", "float32", ["batch", 4, "height", "width"])
    b.output(b.op("Identity", [x], name="y"), "y", ["batch", 4, "height", "width"])
    model = core.add_postprocessing(b.to_model(), "mask")
    x = np.zeros((1, 4, 2, 3), np.float32)
    x[:, 2:, 0, 0] = 1.0  # classes 2 and 3 tie at pixel (0, 0)
    mask = _run(model, x)
    np.testing.assert_array_equal(mask, core.postprocess(x, "mask"))
    assert mask[0, 0, 0] == 2 and mask[0, 1, 1] == 0


def test_probabilities_output_is_softmax_over_classes():
    float_model = _layer_model(3, 7)
    model = core.add_postprocessing(float_model, "probabilities")
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 4)).astype(np.float32)
    p = _run(model, x)
    np.testing.assert_allclose(p, core.postprocess(_run(float_model, x), "probabilities"),
                               atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_uint8_image_output_is_clipped_rounded_255_scale(layout):
    """img = uint8(clip(round(255 y), 0, 255)), NCHW or NHWC."""
    float_model = _layer_model(3, 3)
    model = core.add_postprocessing(float_model, "uint8_image", layout=layout)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 3, 4, 5)).astype(np.float32)
    y = _run(float_model, x)
    img = _run(model, x)
    expected = core.postprocess(y, "uint8_image", layout=layout)
    assert img.dtype == np.uint8 and img.shape == expected.shape
    assert img.min() == 0 and img.max() == 255  # both clip ends are reached by this input
    frac = np.abs((y * 255.0) % 1.0 - 0.5)
    ok = frac > 1e-3
    if layout == "nhwc":
        ok = ok.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(img[ok], expected[ok])


def test_pre_and_post_together_uint8_in_mask_out():
    float_model = _layer_model(3, 21)
    model = core.add_postprocessing(core.add_preprocessing(float_model, mean=MEAN, std=STD), "mask")
    x = _images(1, 8, 8)
    logits = _run(float_model, core.preprocess(x, mean=MEAN, std=STD))
    mask = _run(model, x)
    ok = _tie_free(logits)
    np.testing.assert_array_equal(mask[ok], np.argmax(logits, axis=1).astype(np.uint8)[ok])
    assert core.io_options(model) == {
        "input": {"name": "x", "dtype": "uint8", "layout": "nhwc", "mean": list(MEAN),
                  "std": list(STD)},
        "output": "mask", "mask_dtype": "uint8",
    }


def test_float16_model_gets_a_cast_after_normalising():
    spec = core.LayerSpec("pixel_dcl", 3, 4)
    float_model = core.build_layer_model("pixel_dcl", spec.random_weights(0), dtype="float16")
    model = core.add_preprocessing(float_model)
    x = _images(1, 4, 4)
    xf = core.preprocess(x).astype(np.float16)
    np.testing.assert_allclose(_run(model, x).astype(np.float32),
                               _run(float_model, xf).astype(np.float32), atol=2e-3)


def test_processing_errors_name_the_field_and_the_value():
    m = _layer_model()
    with pytest.raises(SpecError, match=r"layout: got 'hwc', expected one of nhwc, nchw"):
        core.add_preprocessing(m, layout="hwc")
    with pytest.raises(SpecError, match=r"output: got 'labels', expected one of logits"):
        core.add_postprocessing(m, "labels")
    with pytest.raises(SpecError, match=r"std: got 2 values, expected 3"):
        core.add_preprocessing(m, std=(1.0, 1.0))
    with pytest.raises(SpecError, match=r"std: got \[1.0, 0.0, 1.0\], expected positive"):
        core.add_preprocessing(m, std=(1.0, 0.0, 1.0))
    with pytest.raises(SpecError, match=r"mean: got 'abc', expected finite numbers"):
        core.add_preprocessing(m, mean="abc")
    with pytest.raises(SpecError, match=r"input: got 'z', expected one of \['x'\]"):
        core.add_preprocessing(m, input_name="z")
    pre = core.add_preprocessing(m)
    with pytest.raises(SpecError, match="already has in-graph preprocessing"):
        core.add_preprocessing(pre)
    post = core.add_postprocessing(m, "mask")
    with pytest.raises(SpecError, match="already answers 'mask'"):
        core.add_postprocessing(post, "probabilities")
    with pytest.raises(core.InputShapeError, match=r"x: got dtype float32"):
        core.preprocess(np.zeros((1, 2, 2, 3), np.float32))


def test_processing_leaves_the_float_model_unchanged():
    m = _layer_model()
    before = m.SerializeToString()
    core.add_postprocessing(core.add_preprocessing(m), "mask")
    assert m.SerializeToString() == before
