"""Standalone single-layer models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from ._builder import GraphBuilder, check_dtype
from ._emit import check_form, emit_layer
from ._specs import LayerSpec
from ._targets import DEFAULT_TARGET, resolve_target

__all__ = ["build_layer_model"]


def build_layer_model(
    kind: str,
    weights: Mapping[str, Any],
    *,
    form: str = "efficient",
    opset: int | None = None,
    dtype: str = "float32",
    interleave: str | None = None,
    target: str | None = None,
    in_channels: int | None = None,
) -> onnx.ModelProto:
    """One up-sampling layer as a standalone ONNX model of standard operators.

    Args:
        kind: a registered kind (:func:`~pixeldcn_core.layer_kinds`; aliases accepted).
        weights: numpy arrays named as the kind's
            :meth:`~pixeldcn_core.LayerSpec.weight_shapes` (e.g. ``w1``, ``w2``, ``w3`` for
            ``pixel_dcl``; ``weight [Cin, C, k, k]`` for ``dcl``); optional ``bias`` (``[C]``).
        form: "efficient" (phases at input resolution + one DepthToSpace) or "faithful"
            (the paper's Figure 6) where the kind has both.
        opset: default-domain opset (17..21); ``None`` is :data:`DEFAULT_OPSET`, or the newest
            the target converts.
        dtype: "float32" or "float16" for the input, output and weights.
        interleave: how the phases become the 2x output: "depth_to_space" (one
            DepthToSpace) or "concat" (Unsqueeze/Concat/Reshape; faster on onnxruntime CPU);
            ``None``: the target's (depth_to_space for onnxruntime).
        target: the ONNX consumer the model is for: "onnxruntime" (``None``, the default: its
            fastest forms), "openvino", "tract", "onnx2torch", "tensorrt" (no GridSample) or
            "any" (runs on all of them); see ``pixeldcn_core.TARGETS``.
        in_channels: the input's channels; needed only for a kind without weights
            (``KindInfo.weightless``, e.g. fixed bilinear x2), where the weights cannot tell.

    Returns:
        A model with input ``x [batch, Cin, height, width]`` and output
        ``y [batch, C, s*height, s*width]`` with ``s`` the kind's scale (2 for the up-sampling
        kinds, 1 for ``ipixel_cl``); batch, height and width are dynamic.

    Raises:
        UnknownKindError, SpecError, WeightError: with the field, the value and what was expected.
    """
    spec = LayerSpec.from_weights(kind, weights, in_channels=in_channels)
    dtype = check_dtype(dtype)
    check_form(spec, form)
    tgt, opset, interleave = resolve_target(target, opset, interleave)
    b = GraphBuilder(opset=opset, dtype=dtype, target=tgt)
    x = b.input("x", dtype, ["batch", spec.in_channels, "height", "width"])
    y = emit_layer(b, spec.kind, x, {k: np.asarray(v) for k, v in weights.items()}, form=form,
                   interleave=interleave, in_channels=spec.in_channels)
    scale = spec.info.scale
    dims = ["height", "width"] if scale == 1 else [f"{scale}*height", f"{scale}*width"]
    b.output(y, "y", ["batch", spec.out_channels, *dims])
    doc = (
        f"{spec.info.title}: in_channels={spec.in_channels}, out_channels={spec.out_channels}, "
        f"kernel_size={spec.k}, bias={spec.bias}, form={form}"
        + ("" if interleave == "depth_to_space" else f", interleave={interleave}")
        + ("" if tgt.name == DEFAULT_TARGET else f", target={tgt.name}")
    )
    return b.to_model(f"{spec.kind}_{form}", doc=doc)
