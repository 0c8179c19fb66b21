"""Every error path of pixeldcn_core: the type, and a message naming field, value and expectation."""

from __future__ import annotations

import numpy as np
import pytest

import pixeldcn_core as pc
from pixeldcn_core import reference as R


def _w(*shape):
    return np.zeros(shape, np.float32)


def test_unknown_kind_lists_the_registered_kinds():
    valid = ", ".join(pc.layer_kinds())  # registry order: the kinds' modules, sorted by name
    assert valid == ", ".join(sorted(pc.layer_kinds())) and "dcl" in valid
    with pytest.raises(pc.UnknownKindError, match=f"unknown .* 'pixel_dlc'; expected one of {valid}$"):
        pc.LayerSpec("pixel_dlc", 4, 4)


def test_unknown_kind_is_a_value_error_and_a_key_error():
    with pytest.raises(ValueError):
        pc.get_kind("nope")
    with pytest.raises(KeyError):
        pc.get_kind("nope")


def test_kind_aliases_are_normalised():
    assert pc.LayerSpec("PixelDCL", 2, 2).kind == "pixel_dcl"
    assert pc.LayerSpec("ipixel-dcl", 2, 2).kind == "ipixel_dcl"


def test_even_kernel_for_pixel_dcl_is_refused():
    with pytest.raises(pc.SpecError, match=r"pixel_dcl: kernel_size must be an odd integer >= 3, "
                       r"got 4"):
        pc.LayerSpec("pixel_dcl", 4, 4, 4)


def test_kernel_one_for_pixel_dcl_is_refused():
    with pytest.raises(pc.SpecError, match="odd integer >= 3, got 1"):
        pc.LayerSpec("pixel_dcl", 4, 4, 1)


def test_dcl_kernel_below_two_is_refused():
    with pytest.raises(pc.SpecError, match=r"dcl: kernel_size must be an integer >= 2, got 1"):
        pc.LayerSpec("dcl", 4, 4, 1)


def test_non_int_kernel_is_refused():
    with pytest.raises(pc.SpecError, match=r"kernel_size must be an int, got 3.0"):
        pc.LayerSpec("pixel_dcl", 4, 4, 3.0)


@pytest.mark.parametrize("field,args", [("in_channels", (0, 4)), ("out_channels", (4, -1))])
def test_non_positive_channels_are_refused(field, args):
    with pytest.raises(pc.SpecError, match=rf"{field} must be a positive int, got -?\d"):
        pc.LayerSpec("dcl", *args)


def test_non_bool_bias_is_refused():
    with pytest.raises(pc.SpecError, match="bias must be a bool, got 1"):
        pc.LayerSpec("dcl", 4, 4, bias=1)


def test_specs_are_frozen():
    spec = pc.LayerSpec("dcl", 4, 4)
    with pytest.raises(AttributeError):
        spec.in_channels = 3  # type: ignore[misc]


def test_mis_shaped_weights_are_all_listed_in_one_error():
    weights = {"w1": _w(4, 3, 3, 3), "w2": _w(4, 5, 3, 3), "w3": _w(4, 4, 1, 1)}
    with pytest.raises(pc.WeightError, match=r"w2 has shape \(4, 5, 3, 3\), expected \(4, 4, 3, 3\)"
                       r"; w3 has shape \(4, 4, 1, 1\), expected \(4, 4, 3, 3\)"):
        pc.build_layer_model("pixel_dcl", weights)


def test_missing_and_unexpected_weights_are_named():
    weights = {"w1": _w(4, 3, 3, 3), "w2": _w(4, 4, 3, 3), "w9": _w(1)}
    with pytest.raises(pc.WeightError, match=r"missing \['w3'\]; unexpected \['w9'\]"):
        pc.build_layer_model("pixel_dcl", weights)


def test_missing_first_weight_names_the_expected_keys():
    with pytest.raises(pc.WeightError, match=r"missing weight 'weight'; expected keys \['weight'\]"):
        pc.build_layer_model("dcl", {"w1": _w(1, 1, 3, 3)})


def test_weights_that_are_not_a_dict_are_refused():
    with pytest.raises(pc.WeightError, match="weights must be a dict of arrays, got list"):
        pc.build_layer_model("dcl", [_w(1, 1, 3, 3)])


def test_even_kernel_in_weights_is_reported_with_the_weight_shape():
    with pytest.raises(pc.WeightError, match=r"w1 of shape \(2, 2, 4, 4\): pixel_dcl: kernel_size "
                       r"must be an odd integer"):
        pc.build_layer_model("pixel_dcl", {"w1": _w(2, 2, 4, 4), "w2": _w(2, 2, 4, 4),
                                           "w3": _w(2, 2, 4, 4)})


def test_non_square_or_non_4d_weight_is_refused():
    with pytest.raises(pc.WeightError, match=r"weight must be 4-D with a square kernel, got shape "
                       r"\(2, 2, 3\)"):
        pc.build_layer_model("dcl", {"weight": _w(2, 2, 3)})


def test_subpixel_weight_not_a_multiple_of_four_is_refused():
    with pytest.raises(pc.WeightError, match=r"weight.shape\[0\] must be 4\*C .*got 6"):
        pc.build_layer_model("subpixel_conv", {"weight": _w(6, 2, 3, 3)})


def test_integer_weights_are_refused():
    with pytest.raises(pc.WeightError, match="weight has dtype int64, expected a float dtype"):
        pc.build_layer_model("dcl", {"weight": np.zeros((2, 2, 3, 3), np.int64)})


def test_nan_weights_are_refused():
    w = _w(2, 2, 3, 3)
    w[0, 0, 0, 0] = np.nan
    with pytest.raises(pc.WeightError, match="weight holds NaN or Inf values"):
        pc.build_layer_model("dcl", {"weight": w})


def test_bias_of_the_wrong_length_is_refused():
    with pytest.raises(pc.WeightError, match=r"bias has shape \(3,\), expected \(2,\)"):
        pc.build_layer_model("dcl", {"weight": _w(2, 2, 3, 3), "bias": _w(3)})


def test_unknown_form_lists_the_forms_of_the_kind():
    with pytest.raises(pc.SpecError, match="subpixel_conv has no form 'faithful'; expected one of "
                       "efficient"):
        pc.build_layer_model("subpixel_conv", {"weight": _w(4, 1, 3, 3)}, form="faithful")


def test_unknown_interleave_lists_the_interleaves():
    w = pc.LayerSpec("pixel_dcl", 2, 2).random_weights()
    with pytest.raises(pc.SpecError, match=r"interleave='d2s'; expected one of depth_to_space, concat"):
        pc.build_layer_model("pixel_dcl", w, interleave="d2s")
    b = pc.GraphBuilder()
    with pytest.raises(pc.SpecError, match="interleave="):
        pc.emit_layer(b, "pixel_dcl", b.input("x", "float32", [1, 2, 4, 4]), w, interleave="")


def test_unsupported_opset_names_the_range():
    with pytest.raises(pc.SpecError, match=r"opset 13 is not supported; expected 17..21 "
                       r"\(default 18\)"):
        pc.build_layer_model("dcl", {"weight": _w(1, 1, 3, 3)}, opset=13)


def test_unsupported_dtype_lists_the_dtypes():
    with pytest.raises(pc.SpecError, match="dtype 'bfloat16' is not supported; expected one of "
                       "float32, float16"):
        pc.build_layer_model("dcl", {"weight": _w(1, 1, 3, 3)}, dtype="bfloat16")


def test_reference_refuses_a_non_4d_input():
    with pytest.raises(pc.InputShapeError, match=r"x must be 4-D \[N, C, H, W\], got 3-D with "
                       r"shape \(2, 3, 3\)"):
        R.dcl(np.zeros((2, 3, 3)), _w(2, 2, 3, 3))


def test_reference_refuses_an_input_with_the_wrong_channels():
    with pytest.raises(pc.InputShapeError, match=r"x.shape\[1\]=3 channels, while the weights "
                       r"expect 2"):
        R.resize_conv(np.zeros((1, 3, 4, 4)), _w(5, 2, 3, 3))


def test_reference_refuses_an_integer_input():
    with pytest.raises(pc.InputShapeError, match="x must be a float array, got dtype int64"):
        R.subpixel_conv(np.zeros((1, 2, 4, 4), np.int64), _w(4, 2, 3, 3))


def test_duplicate_tensor_names_in_a_builder_are_refused():
    b = pc.GraphBuilder()
    b.input("x", "float32", [1, 1, 1, 1])
    with pytest.raises(pc.SpecError, match="tensor name 'x' is already used"):
        b.input("x", "float32", [1, 1, 1, 1])


def test_every_error_is_a_pixeldcn_error():
    for cls in (pc.SpecError, pc.UnknownKindError, pc.WeightError, pc.InputShapeError):
        assert issubclass(cls, pc.PixelDCNError)
        assert issubclass(cls, ValueError)
