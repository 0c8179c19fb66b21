"""Graph passes over the exported ONNX model (onnx + numpy only).

1. :func:`splice_layers` replaces each placeholder node left by the export with the nodes the
   core's :func:`pixeldcn_core.emit_layer` writes for that layer (an eval BatchNorm that follows
   is folded into the layer's weights first).
2. :func:`fold_batchnorm` folds every other ``BatchNormalization`` into the ``Conv`` before it, or
   lowers it to ``Mul`` + ``Add`` with precomputed constants.
3. :func:`finalize` drops unused initializers, exporter metadata and value_info, names the
   dynamic dims, pins the IR version of the opset and keeps only the default domain.
4. :func:`to_float16` turns a float32 model into a float16 one (inputs and outputs included).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pixeldcn_core import GraphBuilder, batchnorm_affine, emit_layer, fold_affine, ir_version_for

from ._errors import ExportError

__all__ = [
    "PLACEHOLDER_DOMAIN",
    "PLACEHOLDER_OP",
    "LayerEntry",
    "finalize",
    "fold_batchnorm",
    "splice_layers",
    "to_float16",
]

#: The private domain of the export placeholders; never present in a finished model.
PLACEHOLDER_DOMAIN = "pixeldcn.export"
PLACEHOLDER_OP = "UpsampleLayer"

#: (module path, kind, weights in the core layout, in_channels)
LayerEntry = tuple[str, str, Mapping[str, np.ndarray], int]


# -- helpers -------------------------------------------------------------------------------------
def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: node for node in graph.node for o in node.output if o}


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Constants:
    """Read-only view of the graph's constant tensors (initializers and Constant nodes)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.inits = {t.name: t for t in graph.initializer}
        self.nodes = {
            n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
        }

    def get(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.nodes.get(name)
        if node is not None:
            value = _attr(node, "value")
            if isinstance(value, onnx.TensorProto):
                return numpy_helper.to_array(value)
        return None


def _batchnorm_params(
    node: onnx.NodeProto, consts: _Constants
) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) of an inference-mode BatchNormalization with constant parameters."""
    if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
        return None
    if _attr(node, "training_mode", 0) or len([o for o in node.output if o]) != 1:
        return None
    params = [consts.get(name) for name in node.input[1:5]]
    found = [p for p in params if p is not None]
    if len(found) != 4:
        return None
    gamma, beta, mean, var = found
    return batchnorm_affine(gamma, beta, mean, var, float(_attr(node, "epsilon", 1e-5)))


def _graph_outputs(graph: onnx.GraphProto) -> set[str]:
    return {o.name for o in graph.output}


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    for node in graph.node:
        names.update(node.output)
        names.add(node.name)
    return names


# -- 1. placeholders -> core emitter -------------------------------------------------------------
def splice_layers(
    model: onnx.ModelProto, layers: Mapping[int, LayerEntry], *, opset: int,
    interleave: str | None = None, target: str | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """Replace every placeholder node by the core's efficient form of its layer.

    Args:
        model: the exported model holding ``pixeldcn.export::UpsampleLayer(x, layer_id=i)`` nodes.
        layers: layer id -> (module path, kind, weights in the core layout, in_channels).
        opset: the default-domain opset of the model.
        interleave: how the layers interleave their phases (see ``pixeldcn_core.INTERLEAVES``);
            ``None``: the target's.
        target: the ONNX consumer the forms are for (see ``pixeldcn_core.TARGETS``).

    Returns:
        The model (modified in place) and one line per layer saying what was spliced.
    """
    consumer = target  # ``target`` names each layer's output tensor below
    graph = model.graph
    consts = _Constants(graph)
    consumers = _consumers(graph)
    outputs = _graph_outputs(graph)
    taken = _all_names(graph)
    notes: list[str] = []
    calls: dict[int, int] = {}
    new_nodes: list[onnx.NodeProto] = []
    drop: set[int] = set()  # ids of BatchNormalization nodes folded into a layer
    for node in graph.node:
        if id(node) in drop:
            continue
        if node.domain != PLACEHOLDER_DOMAIN:
            new_nodes.append(node)
            continue
        layer_id = int(_attr(node, "layer_id", -1))
        if node.op_type != PLACEHOLDER_OP or layer_id not in layers:
            raise ExportError(f"unexpected placeholder node {node.op_type} (layer_id={layer_id})")
        n_call = calls[layer_id] = calls.get(layer_id, 0) + 1
        path, kind, weights, in_channels = layers[layer_id]
        target = node.output[0]
        weights = dict(weights)
        note = f"{path}: {kind}"
        users = consumers.get(target, [])
        if len(users) == 1 and target not in outputs:
            affine = _batchnorm_params(users[0], consts)
            folded = None if affine is None else fold_affine(kind, weights, *affine)
            if folded is not None:
                weights = folded
                target = users[0].output[0]
                drop.add(id(users[0]))
                note += " + BatchNormalization folded"
        # A layer called twice (shared weights) is emitted twice, under distinct names.
        prefix = f"pixeldcn/{path}/" if n_call == 1 else f"pixeldcn/{path}/call{n_call}/"
        b = GraphBuilder(prefix=prefix, opset=opset, dtype="float32", target=consumer)
        y = emit_layer(b, kind, node.input[0], weights, interleave=interleave,
                       in_channels=in_channels)
        _rename_output(b, y, target)
        clash = ({n.name for n in b.nodes} | {t.name for t in b.initializers}) & taken
        if clash:
            raise ExportError(f"layer {path!r}: generated names clash with the graph: {sorted(clash)}")
        new_nodes.extend(b.nodes)
        graph.initializer.extend(b.initializers)
        notes.append(note + f" -> {len(b.nodes)} nodes ({', '.join(sorted({n.op_type for n in b.nodes}))})")
    missing = sorted(set(layers) - set(calls))
    if missing:
        raise ExportError(
            "up-sampling layers not reached by the exported graph: "
            + ", ".join(layers[i][0] for i in missing)
        )
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model, notes


def _rename_output(b: GraphBuilder, value: str, target: str) -> None:
    """Make the builder's last value be called ``target`` (in place when safe, else Identity)."""
    producer = next((n for n in b.nodes if value in n.output), None)
    used = any(value in n.input for n in b.nodes)
    if producer is not None and not used:
        producer.output[list(producer.output).index(value)] = target
    else:
        b.nodes.append(helper.make_node("Identity", [value], [target], name=b.fresh("Identity")))


# -- 2. BatchNormalization -----------------------------------------------------------------------
def fold_batchnorm(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """No BatchNormalization left: fold into the preceding Conv when it is the only consumer of a
    Conv with constant weights, otherwise replace by ``Mul`` + ``Add`` of precomputed constants."""
    graph = model.graph
    consts = _Constants(graph)
    producers = _producers(graph)
    consumers = _consumers(graph)
    outputs = _graph_outputs(graph)
    init_users = {name: len(users) for name, users in consumers.items() if name in consts.inits}
    ranks = _ranks(model)
    notes: list[str] = []
    new_nodes: list[onnx.NodeProto] = []
    replaced: dict[int, list[onnx.NodeProto]] = {}
    removed: set[int] = set()
    for node in graph.node:
        if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        affine = _batchnorm_params(node, consts)
        if affine is None:
            raise ExportError(
                f"BatchNormalization {node.name!r} is in training mode or has non-constant "
                "parameters; export the model in eval mode"
            )
        scale, shift = affine
        x = node.input[0]
        conv = producers.get(x)
        if (
            conv is not None
            and conv.op_type == "Conv"
            and conv.domain in ("", "ai.onnx")
            and len(consumers.get(x, [])) == 1
            and x not in outputs
            and conv.input[1] in consts.inits
            and init_users.get(conv.input[1]) == 1
            and (len(conv.input) < 3 or not conv.input[2] or init_users.get(conv.input[2]) == 1)
        ):
            _fold_into_conv(graph, conv, consts, scale, shift, f"{node.name or node.output[0]}/folded_bias")
            conv.output[0] = node.output[0]
            removed.add(id(node))
            notes.append(f"BatchNormalization {node.name} folded into Conv {conv.name}")
            continue
        rank = ranks.get(x)
        if rank is None or rank < 2:
            raise ExportError(f"BatchNormalization {node.name!r}: rank of its input is unknown")
        replaced[id(node)] = _mul_add(graph, node, consts, scale, shift, rank)
        notes.append(f"BatchNormalization {node.name} lowered to Mul + Add")
    for node in graph.node:
        if id(node) in removed:
            continue
        new_nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model, notes


def _fold_into_conv(graph: onnx.GraphProto, conv: onnx.NodeProto, consts: _Constants,
                    scale: np.ndarray, shift: np.ndarray, bias_name: str) -> None:
    """Scale ``conv``'s weights and bias in place (a bias ``bias_name`` is added when it has none)."""
    w = numpy_helper.to_array(consts.inits[conv.input[1]]).astype(np.float64)
    has_bias = len(conv.input) > 2 and bool(conv.input[2])
    bias = (
        numpy_helper.to_array(consts.inits[conv.input[2]]).astype(np.float64)
        if has_bias else np.zeros(w.shape[0])
    )
    dtype = numpy_helper.to_array(consts.inits[conv.input[1]]).dtype
    consts.inits[conv.input[1]].CopyFrom(
        numpy_helper.from_array((w * scale[:, None, None, None]).astype(dtype), conv.input[1])
    )
    new_bias = (bias * scale + shift).astype(dtype)
    if has_bias:
        consts.inits[conv.input[2]].CopyFrom(numpy_helper.from_array(new_bias, conv.input[2]))
    else:
        graph.initializer.append(numpy_helper.from_array(new_bias, bias_name))
        while len(conv.input) < 3:
            conv.input.append("")
        conv.input[2] = bias_name


def _mul_add(graph: onnx.GraphProto, node: onnx.NodeProto, consts: _Constants, scale: np.ndarray,
             shift: np.ndarray, rank: int) -> list[onnx.NodeProto]:
    """``Mul`` + ``Add`` nodes (and their constants, added to ``graph``) computing BatchNorm ``node``."""
    shape = [-1] + [1] * (rank - 2)
    gamma = consts.inits.get(node.input[1])
    dtype = numpy_helper.to_array(gamma).dtype if gamma is not None else np.float32
    base = node.name or node.output[0]
    s_name, t_name, mid = f"{base}/scale", f"{base}/shift", f"{base}/scaled"
    graph.initializer.append(numpy_helper.from_array(scale.reshape(shape).astype(dtype), s_name))
    graph.initializer.append(numpy_helper.from_array(shift.reshape(shape).astype(dtype), t_name))
    return [
        helper.make_node("Mul", [node.input[0], s_name], [mid], name=f"{base}/Mul"),
        helper.make_node("Add", [mid, t_name], [node.output[0]], name=f"{base}/Add"),
    ]


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            ranks[vi.name] = len(t.shape.dim)
    return ranks


# -- 3. finishing --------------------------------------------------------------------------------
def remove_unused(graph: onnx.GraphProto) -> int:
    """Drop initializers and Constant nodes nothing reads; returns how many were dropped."""
    dropped = 0
    while True:
        used = {name for node in graph.node for name in node.input} | _graph_outputs(graph)
        dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]
        inits = [t for t in graph.initializer if t.name not in used]
        if not dead and not inits:
            return dropped
        for n in dead:
            graph.node.remove(n)
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        dropped += len(dead) + len(inits)


def _dim_names(value: onnx.ValueInfoProto, index: int) -> list[str | None]:
    rank = len(value.type.tensor_type.shape.dim)
    prefix = "" if index == 0 else f"{value.name}_"
    if rank == 4:
        return [f"{prefix}batch", None, f"{prefix}height", f"{prefix}width"]
    return [f"{prefix}batch", *(f"{prefix}dim{i}" for i in range(1, rank))]


def finalize(model: onnx.ModelProto, *, opset: int, doc: str = "") -> onnx.ModelProto:
    """Leave a clean, standard-domain model: unused tensors, value_info and exporter metadata
    dropped, dynamic dims named (``batch``, ``height``, ``width``), IR version pinned."""
    graph = model.graph
    remove_unused(graph)
    domains = sorted({n.domain for n in graph.node} - {"", "ai.onnx"})
    if domains:
        raise ExportError(f"the exported graph uses non-standard domains {domains}")
    # A dim the exporter specialised can come out as a numeric dim_param ("64"): make it a value.
    for value in [*graph.input, *graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param.isdigit():
                dim.dim_value = int(dim.dim_param)
    # Name the symbolic dims of the inputs and carry the names into the outputs' expressions.
    renames: dict[str, str] = {}
    for i, value in enumerate(graph.input):
        for dim, name in zip(value.type.tensor_type.shape.dim, _dim_names(value, i), strict=True):
            if dim.HasField("dim_param") and name is not None:
                renames.setdefault(dim.dim_param, name)
                dim.dim_param = renames[dim.dim_param]
    if renames:
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, renames)) + r")\b")
        for value in graph.output:
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_param"):
                    expr = pattern.sub(lambda m: renames[m.group(1)], dim.dim_param)
                    dim.dim_param = expr.replace("((", "(").replace("))", ")")
    del graph.value_info[:]
    for part in [*graph.input, *graph.output]:
        del part.metadata_props[:]
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for t in graph.initializer:
        del t.metadata_props[:]
    del graph.metadata_props[:]
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", opset))
    del model.functions[:]
    del model.metadata_props[:]
    model.ir_version = ir_version_for(opset)
    model.doc_string = doc
    return model


# -- 4. float16 ----------------------------------------------------------------------------------
#: (op_type, input index) that ONNX requires to stay float32 whatever the data type.
_KEEP_FLOAT32 = {("Resize", 2), ("Upsample", 1)}
_FP16_MAX = float(np.finfo(np.float16).max)


def _to_half(arr: np.ndarray, what: str, overflow: list[str]) -> np.ndarray:
    if np.any(np.abs(arr) > _FP16_MAX):
        overflow.append(what)
    return np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16)


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert a float32 model to float16: weights, constants, casts, inputs and outputs.

    Tensors that ONNX wants in float32 whatever the data type (Resize scales) stay float32.
    Values beyond the float16 range are clipped, with a warning naming them.

    Raises:
        ExportError: the converted graph does not type-check.
    """
    graph = model.graph
    consumers = _consumers(graph)

    def keep32(name: str) -> bool:
        users = consumers.get(name, [])
        return bool(users) and all(
            (n.op_type, list(n.input).index(name)) in _KEEP_FLOAT32 for n in users
        )

    overflow: list[str] = []
    for t in graph.initializer:
        if t.data_type == TensorProto.FLOAT and not keep32(t.name):
            t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(t), t.name, overflow), t.name))
    for node in graph.node:
        if node.op_type == "Cast" and _attr(node, "to") == TensorProto.FLOAT:
            for a in node.attribute:
                if a.name == "to":
                    a.i = TensorProto.FLOAT16
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                if node.op_type == "Constant" and keep32(node.output[0]):
                    continue
                half = _to_half(numpy_helper.to_array(a.t), node.name, overflow)
                a.t.CopyFrom(numpy_helper.from_array(half, a.t.name))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    if overflow:
        warnings.warn(
            f"float16 export: values beyond +-{_FP16_MAX:g} clipped in {', '.join(overflow[:10])}",
            stacklevel=3,
        )
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:  # onnx raises InferenceError / ValidationError
        raise ExportError(f"float16 conversion gives an inconsistent graph: {err}") from err
    return model

