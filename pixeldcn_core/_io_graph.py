"""In-graph pre- and post-processing: uint8 images in, class masks or uint8 images out.

A served model that takes float32 NCHW pixels and answers float32 logits moves 4 bytes per pixel
channel where the camera gave 1, and 21 float32 logits per pixel where the user wants one class
index. These graph transforms move that work into the model, so the request and the answer carry
what the user has and wants:

>>> import numpy as np, onnx
>>> from pixeldcn_core import GraphBuilder
>>> b = GraphBuilder()
>>> x = b.input("x", "float32", ["batch", 3, "height", "width"])
>>> _ = b.output(b.op("Identity", [x], name="y"), "y")
>>> m = add_preprocessing(b.to_model(), layout="nhwc", mean=(0.5,) * 3, std=(0.25,) * 3)
>>> m = add_postprocessing(m, output="mask")
>>> [(v.name, onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)) for v in m.graph.input]
[('x', 'UINT8')]
>>> io_options(m)["output"]
'mask'

Semantics (what :func:`preprocess` and :func:`postprocess` compute in numpy, the contract):

- preprocessing: ``x_u8 [N, H, W, C]`` (or ``[N, C, H, W]``) ->
  ``x = x_u8.astype(float32) * a + b`` per channel, NCHW, with ``a = 1 / (255 std)`` and
  ``b = -mean / std`` computed in float32 (``mean``, ``std`` in the 0..1 range; the defaults
  0 and 1 give ``x_u8 / 255``); cast to the model's float type.
- ``"logits"``: unchanged. ``"probabilities"``: ``Softmax`` over the channel axis.
  ``"mask"``: ``argmax`` over the channel axis, ``[N, H, W]``, uint8 when the classes fit
  (at most 256), int32 otherwise; ties take the lowest class index (ONNX ``ArgMax`` with
  ``select_last_index=0`` and ``numpy.argmax`` agree), so the mask equals ``argmax`` of the
  float logits exactly wherever the two best logits are farther apart than the runtimes'
  rounding. ``"uint8_image"``: ``clip(round(y * 255), 0, 255)`` as uint8 (round half to even,
  as ONNX ``Round`` and ``numpy.round``), for image-to-image models whose output is in 0..1;
  ``layout="nhwc"`` gives ``[N, H, W, C]``.

What was applied is recorded in the model's metadata (``pixeldcn.io``), read back by
:func:`io_options`; mean and std may also be read from a ``pixeldcn.normalization`` metadata
entry (``{"mean": [...], "std": [...]}``) written with the model (its "model card").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._errors import InputShapeError, SpecError

__all__ = [
    "INPUT_LAYOUTS",
    "METADATA_IO",
    "METADATA_NORMALIZATION",
    "OUTPUTS",
    "add_postprocessing",
    "add_preprocessing",
    "io_options",
    "mask_dtype",
    "postprocess",
    "preprocess",
]

#: Layouts of a uint8 image input.
INPUT_LAYOUTS = ("nhwc", "nchw")
#: What the model answers.
OUTPUTS = ("logits", "probabilities", "mask", "uint8_image")
#: Metadata key recording the I/O processing a model holds (JSON).
METADATA_IO = "pixeldcn.io"
#: Metadata key a model may carry with its normalisation ({"mean": [...], "std": [...]}).
METADATA_NORMALIZATION = "pixeldcn.normalization"

_FLOATS = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16,
           TensorProto.DOUBLE: np.float64}


# -- numpy semantics -------------------------------------------------------------------------
def _affine(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (a, b) of ``x * a + b``, float32: a = 1 / (255 std), b = -mean / std."""
    m = np.asarray(mean, np.float64)
    s = np.asarray(std, np.float64)
    return (1.0 / (255.0 * s)).astype(np.float32), (-m / s).astype(np.float32)


def mask_dtype(num_classes: int | None) -> np.dtype:
    """uint8 when every class index fits (at most 256 classes, known), int32 otherwise."""
    return np.dtype(np.uint8) if num_classes is not None and 1 <= num_classes <= 256 else np.dtype(np.int32)


def preprocess(
    x: np.ndarray,
    *,
    layout: str = "nhwc",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """What :func:`add_preprocessing` computes, in numpy: uint8 images -> float32 NCHW."""
    layout = _check_layout(layout)
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise InputShapeError(
            f"x: got dtype {x.dtype} and shape {list(x.shape)}, expected uint8 of rank 4 ({layout})"
        )
    c = x.shape[3] if layout == "nhwc" else x.shape[1]
    mean, std = _check_norm(mean, std, c)
    a, b = _affine(mean, std)
    if layout == "nhwc":
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    return x.astype(np.float32) * a[None, :, None, None] + b[None, :, None, None]


def postprocess(y: np.ndarray, output: str, *, layout: str = "nchw") -> np.ndarray:
    """What :func:`add_postprocessing` computes, in numpy, from float logits ``[N, K, H, W]``."""
    output = _check_output(output)
    y = np.asarray(y)
    if output == "logits":
        return y
    if output == "probabilities":
        z = np.exp(y - y.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(y.dtype)
    if output == "mask":
        return np.argmax(y, axis=1).astype(mask_dtype(y.shape[1]))
    img = np.clip(np.round(y.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return img.transpose(0, 2, 3, 1) if _check_layout(layout) == "nhwc" else img


# -- checks ------------------------------------------------------------------------------------
def _check_layout(layout: str) -> str:
    if not isinstance(layout, str) or layout.lower() not in INPUT_LAYOUTS:
        raise SpecError(f"layout: got {layout!r}, expected one of {', '.join(INPUT_LAYOUTS)}")
    return layout.lower()


def _check_output(output: str) -> str:
    if not isinstance(output, str) or output.lower().replace("-", "_") not in OUTPUTS:
        raise SpecError(f"output: got {output!r}, expected one of {', '.join(OUTPUTS)}")
    return output.lower().replace("-", "_")


def _check_norm(
    mean: Sequence[float] | None, std: Sequence[float] | None, channels: int | None
) -> tuple[list[float], list[float]]:
    def vec(name: str, v: Sequence[float] | None, default: float) -> list[float] | None:
        if v is None:
            return None
        try:
            out = [float(e) for e in (v if isinstance(v, Sequence) and not isinstance(v, str) else [v])]
        except (TypeError, ValueError):
            out = []
        if not out or not all(np.isfinite(out)):
            raise SpecError(f"{name}: got {v!r}, expected finite numbers (one per channel)")
        return out

    m, s = vec("mean", mean, 0.0), vec("std", std, 1.0)
    n = channels or len(m or s or [0.0])
    for name, v in (("mean", m), ("std", s)):
        if v is not None and len(v) == 1 and n > 1:
            v *= n
        if v is not None and len(v) != n:
            raise SpecError(f"{name}: got {len(v)} values, expected {n} (one per input channel)")
    if s is not None and any(e <= 0 for e in s):
        raise SpecError(f"std: got {s}, expected positive values")
    return (m or [0.0] * n), (s or [1.0] * n)


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set_meta(model: onnx.ModelProto, key: str, value: str) -> None:
    for p in model.metadata_props:
        if p.key == key:
            p.value = value
            return
    p = model.metadata_props.add()
    p.key, p.value = key, value


def io_options(model: onnx.ModelProto) -> dict[str, Any]:
    """The processing a model holds: ``{"input": {...} or None, "output": "logits" | ...}``."""
    raw = _meta(model).get(METADATA_IO)
    out: dict[str, Any] = {"input": None, "output": "logits"}
    if raw:
        try:
            out.update(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise SpecError(f"metadata {METADATA_IO}: got {raw!r}, not JSON ({exc})") from exc
    return out


def _record(model: onnx.ModelProto, **entries: Any) -> None:
    opts = io_options(model)
    opts.update(entries)
    _set_meta(model, METADATA_IO, json.dumps(opts, sort_keys=True))


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def _pick(values: Sequence[onnx.ValueInfoProto], name: str | None, role: str) -> onnx.ValueInfoProto:
    if name is None:
        if len(values) != 1:
            raise SpecError(f"{role}: the model has {len(values)} {role}s "
                            f"{[v.name for v in values]}; name the one to process")
        return values[0]
    for v in values:
        if v.name == name:
            return v
    raise SpecError(f"{role}: got {name!r}, expected one of {[v.name for v in values]}")


def _fresh(model: onnx.ModelProto, hint: str) -> str:
    used = {t.name for t in model.graph.initializer}
    for n in model.graph.node:
        used.update(n.input)
        used.update(n.output)
    used.update(v.name for v in (*model.graph.input, *model.graph.output))
    i = 0
    while f"{hint}_{i}" in used:
        i += 1
    return f"{hint}_{i}"


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every node input reading ``old`` reads ``new`` (subgraphs included)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for attr in node.attribute:
            if attr.HasField("g"):
                _rename_uses(attr.g, old, new)
            for sub in attr.graphs:
                _rename_uses(sub, old, new)


def _rename_output(graph: onnx.GraphProto, old: str, new: str) -> None:
    """The producer of graph output ``old`` writes ``new`` instead, and its readers read ``new``."""
    for node in graph.node:
        for i, o in enumerate(node.output):
            if o == old:
                node.output[i] = new
    _rename_uses(graph, old, new)


def _dims(value: onnx.ValueInfoProto) -> list[onnx.TensorShapeProto.Dimension]:
    return list(value.type.tensor_type.shape.dim)


def _dim_arg(d: onnx.TensorShapeProto.Dimension) -> int | str | None:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    return d.dim_param or None


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise SpecError("the model imports no default-domain opset")


def _check_opset13(model: onnx.ModelProto) -> None:
    if _opset(model) < 13:
        raise SpecError(f"the model's opset is {_opset(model)}; in-graph processing needs 13 or newer")


# -- transforms --------------------------------------------------------------------------------
def add_preprocessing(
    model: onnx.ModelProto,
    *,
    layout: str = "nhwc",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_name: str | None = None,
) -> onnx.ModelProto:
    """A copy of ``model`` whose image input is uint8 (``layout``), normalised in the graph.

    The input keeps its name; its float NCHW form is computed inside:
    ``Cast(float32) -> [Transpose] -> Mul(a) -> Add(b) -> [Cast(model float)]``, with ``a`` and
    ``b`` as :func:`preprocess` defines them.

    Args:
        model: a model with a float input ``[N, C, H, W]`` (C known).
        layout: "nhwc" (as cameras and image libraries give pixels) or "nchw".
        mean, std: per-channel normalisation in the 0..1 range (one value broadcasts); default:
            the model's ``pixeldcn.normalization`` metadata when present, else 0 and 1.
        input_name: which input, when the model has several.

    Raises:
        SpecError: a bad option, a non-float or non-4-D input, or processing already present.
    """
    layout = _check_layout(layout)
    _check_opset13(model)
    if io_options(model)["input"] is not None:
        raise SpecError("the model already has in-graph preprocessing; apply it to the float model")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    value = _pick(_graph_inputs(out), input_name, "input")
    elem = value.type.tensor_type.elem_type
    dims = _dims(value)
    if elem not in _FLOATS or len(dims) != 4:
        raise SpecError(
            f"input {value.name!r}: got {TensorProto.DataType.Name(elem)} of rank {len(dims)}, "
            "expected a float [N, C, H, W] image input"
        )
    if not dims[1].HasField("dim_value"):
        raise SpecError(f"input {value.name!r}: the channel dim is {_dim_arg(dims[1])!r}, expected a number")
    channels = int(dims[1].dim_value)
    if mean is None and std is None:
        mean, std = _card_normalization(out)
    mean_l, std_l = _check_norm(mean, std, channels)

    name = value.name
    inner = _fresh(out, f"{name}_float")
    _rename_uses(out.graph, name, inner)
    for o in out.graph.output:  # an input that is also an output keeps working
        if o.name == name:
            raise SpecError(f"input {name!r} is also a graph output; cannot preprocess it")
    nodes = _normalize_nodes(out, name, inner, layout, elem, _affine(mean_l, std_l))
    # the new nodes go first: the graph stays topologically sorted
    rest = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes + rest)

    n, c, h, w = (_dim_arg(d) for d in dims)
    shape = [n, h, w, c] if layout == "nhwc" else [n, c, h, w]
    new_value = helper.make_tensor_value_info(name, TensorProto.UINT8, shape)
    idx = list(out.graph.input).index(value)
    out.graph.input.remove(value)
    out.graph.input.insert(idx, new_value)
    _record(out, input={"name": name, "dtype": "uint8", "layout": layout,
                        "mean": mean_l, "std": std_l})
    onnx.checker.check_model(out)
    return out


def _card_normalization(model: onnx.ModelProto) -> tuple[Any, Any]:
    """``(mean, std)`` of the model's ``pixeldcn.normalization`` metadata, ``(None, None)`` if absent."""
    card = _meta(model).get(METADATA_NORMALIZATION)
    if not card:
        return None, None
    try:
        norm = json.loads(card)
        return norm.get("mean"), norm.get("std")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise SpecError(f"metadata {METADATA_NORMALIZATION}: got {card!r}, expected "
                        '{"mean": [...], "std": [...]}') from exc


def _normalize_nodes(out: onnx.ModelProto, name: str, inner: str, layout: str, elem: int,
                     affine: tuple[np.ndarray, np.ndarray]) -> list[onnx.NodeProto]:
    """``Cast -> [Transpose] -> Mul(a) -> Add(b) -> [Cast]`` from uint8 ``name`` to ``inner``."""
    a, b = affine
    nodes = []
    cur = _fresh(out, f"{name}_cast")
    nodes.append(helper.make_node("Cast", [name], [cur], to=TensorProto.FLOAT, name=f"{cur}_node"))
    if layout == "nhwc":
        t = _fresh(out, f"{name}_nchw")
        nodes.append(helper.make_node("Transpose", [cur], [t], perm=[0, 3, 1, 2], name=f"{t}_node"))
        cur = t
    a_name, b_name = _fresh(out, f"{name}_scale"), _fresh(out, f"{name}_shift")
    out.graph.initializer.extend([
        numpy_helper.from_array(a.reshape(1, -1, 1, 1), a_name),
        numpy_helper.from_array(b.reshape(1, -1, 1, 1), b_name),
    ])
    m = _fresh(out, f"{name}_mul")
    nodes.append(helper.make_node("Mul", [cur, a_name], [m], name=f"{m}_node"))
    last = inner if elem == TensorProto.FLOAT else _fresh(out, f"{name}_norm")
    nodes.append(helper.make_node("Add", [m, b_name], [last], name=f"{last}_node"))
    if elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [last], [inner], to=elem, name=f"{inner}_node"))
    return nodes


def add_postprocessing(
    model: onnx.ModelProto,
    output: str = "mask",
    *,
    layout: str = "nchw",
    output_name: str | None = None,
    num_classes: int | None = None,
) -> onnx.ModelProto:
    """A copy of ``model`` whose output is ``output`` instead of float logits (see module doc).

    The output keeps its name, so clients ask for the same tensor.

    Args:
        model: a model with a float output ``[N, K, H, W]``.
        output: "logits" (unchanged), "probabilities", "mask" or "uint8_image".
        layout: for "uint8_image": "nchw" (default) or "nhwc".
        output_name: which output, when the model has several.
        num_classes: the class count when the output's channel dim is not a number (the mask's
            dtype depends on it: uint8 up to 256 classes, else int32).

    Raises:
        SpecError: a bad option, a non-float or non-4-D output, or processing already present.
    """
    output = _check_output(output)
    layout = _check_layout(layout)
    _check_opset13(model)
    if io_options(model)["output"] != "logits":
        raise SpecError(f"the model already answers {io_options(model)['output']!r}; "
                        "apply post-processing to the float model")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    value = _pick(list(out.graph.output), output_name, "output")
    elem = value.type.tensor_type.elem_type
    dims = _dims(value)
    if elem not in _FLOATS or len(dims) != 4:
        raise SpecError(
            f"output {value.name!r}: got {TensorProto.DataType.Name(elem)} of rank {len(dims)}, "
            "expected a float [N, K, H, W] output"
        )
    if output == "logits":
        _record(out, output="logits")
        return out
    k = int(dims[1].dim_value) if dims[1].HasField("dim_value") else num_classes
    if num_classes is not None and k != num_classes:
        raise SpecError(f"num_classes: got {num_classes}, while the model's output has {k} channels")
    name = value.name
    inner = _fresh(out, f"{name}_raw")
    _rename_output(out.graph, name, inner)
    n, c, h, w = (_dim_arg(d) for d in dims)
    record: dict[str, Any] = {"output": output}
    if output == "probabilities":
        nodes = [helper.make_node("Softmax", [inner], [name], axis=1, name=f"{name}_softmax")]
        new_value = helper.make_tensor_value_info(name, elem, [n, c, h, w])
    elif output == "mask":
        dt = mask_dtype(k)
        idx = _fresh(out, f"{name}_argmax")
        to = TensorProto.UINT8 if dt == np.uint8 else TensorProto.INT32
        nodes = [helper.make_node("ArgMax", [inner], [idx], axis=1, keepdims=0,
                                  select_last_index=0, name=f"{idx}_node"),
                 helper.make_node("Cast", [idx], [name], to=to, name=f"{name}_cast")]
        new_value = helper.make_tensor_value_info(name, to, [n, h, w])
        record["mask_dtype"] = dt.name
    else:  # uint8_image
        nodes = _uint8_image_nodes(out, name, inner, elem, layout)
        shape = [n, h, w, c] if layout == "nhwc" else [n, c, h, w]
        new_value = helper.make_tensor_value_info(name, TensorProto.UINT8, shape)
        record["output_layout"] = layout
    out.graph.node.extend(nodes)
    idx_out = list(out.graph.output).index(value)
    out.graph.output.remove(value)
    out.graph.output.insert(idx_out, new_value)
    _record(out, **record)
    onnx.checker.check_model(out)
    return out


def _uint8_image_nodes(out: onnx.ModelProto, name: str, inner: str, elem: int,
                       layout: str) -> list[onnx.NodeProto]:
    """``[Cast] -> Mul(255) -> Round -> Clip(0, 255) -> [Transpose] -> Cast(uint8)``."""
    nodes = []
    cur = inner
    if elem != TensorProto.FLOAT:
        cur = _fresh(out, f"{name}_f32")
        nodes.append(helper.make_node("Cast", [inner], [cur], to=TensorProto.FLOAT, name=f"{cur}_node"))
    k255, lo, hi = (_fresh(out, f"{name}_{s}") for s in ("k255", "lo", "hi"))
    out.graph.initializer.extend([
        numpy_helper.from_array(np.array(255.0, np.float32), k255),
        numpy_helper.from_array(np.array(0.0, np.float32), lo),
        numpy_helper.from_array(np.array(255.0, np.float32), hi),
    ])
    s, r, cl = (_fresh(out, f"{name}_{t}") for t in ("scaled", "round", "clip"))
    nodes.append(helper.make_node("Mul", [cur, k255], [s], name=f"{s}_node"))
    nodes.append(helper.make_node("Round", [s], [r], name=f"{r}_node"))
    nodes.append(helper.make_node("Clip", [r, lo, hi], [cl], name=f"{cl}_node"))
    if layout == "nhwc":
        t = _fresh(out, f"{name}_nhwc")
        nodes.append(helper.make_node("Transpose", [cl], [t], perm=[0, 2, 3, 1], name=f"{t}_node"))
        cl = t
    nodes.append(helper.make_node("Cast", [cl], [name], to=TensorProto.UINT8, name=f"{name}_cast"))
    return nodes
