"""Graph rewrites for an export target, on what the PyTorch exporter writes around the layers.

The up-sampling layers already come in the target's forms (the core's emitters read
``GraphBuilder.target``); this pass adapts the rest of the exported graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from pixeldcn_core import Target, get_target

from ._onnx_passes import remove_unused

__all__ = ["adapt_to_target", "expand_as_add", "reduce_axes_to_attribute"]

#: Reduce ops whose ``axes`` became an input at opset 18 (ReduceSum's did at 13).
_AXES_INPUT_SINCE_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


def adapt_to_target(model: onnx.ModelProto, target: str | Target | None) -> list[str]:
    """Rewrite, in place, what ``target`` does not implement into the same computation.

    - ``Reshape(allowzero=1)`` -> ``allowzero=0`` where the target lacks it and the shape is a
      constant holding no 0 (then both read the shape the same way). A computed shape is left
      as it is and reported.
    - ``Expand`` of a float tensor as ``Add(x, ConstantOfShape(shape, 0))`` where the target
      lacks it (:func:`expand_as_add`);
    - whatever the target, :func:`reduce_axes_to_attribute` on models below opset 18.

    Returns:
        One line per rewrite or per construct left that the target does not implement.
    """
    t = get_target(target)
    notes = reduce_axes_to_attribute(model)
    if not t.expand:
        notes += expand_as_add(model)
    if t.reshape_allowzero:
        return notes
    consts = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        attrs = [a for a in node.attribute if a.name == "allowzero" and a.i == 1]
        if not attrs:
            continue
        shape = consts.get(node.input[1])
        if shape is not None and np.all(numpy_helper.to_array(shape) != 0):
            node.attribute.remove(attrs[0])
            notes.append(f"{node.name}: Reshape allowzero=1 -> 0 (constant shape, no zeros)")
        else:
            notes.append(f"{node.name}: Reshape allowzero=1 with a computed shape kept; "
                         f"{t.title} may not convert it")
    return notes


def reduce_axes_to_attribute(model: onnx.ModelProto) -> list[str]:
    """Below opset 18, move a constant ``axes`` input of ``ReduceMean`` & co. to the attribute.

    The PyTorch exporter writes opset 18 and converts down; when its converter meets an ``axes``
    that is not yet constant (DeepLab's ASPP image pooling, ``x.mean((2, 3))``), it falls back and
    leaves the opset-18 form, which opset-13 schemas reject. Once the graph is finalised the axes
    are an initializer: this writes them as the attribute (the same reduction).
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    if opset >= 18:
        return []
    consts = {i.name: i for i in model.graph.initializer}
    notes = []
    for node in model.graph.node:
        if node.op_type not in _AXES_INPUT_SINCE_18 or len(node.input) < 2 or not node.input[1]:
            continue
        axes = consts.get(node.input[1])
        if axes is None:
            notes.append(f"{node.name}: {node.op_type} with computed axes left as is (opset {opset})")
            continue
        noop = [a for a in node.attribute if a.name == "noop_with_empty_axes"]
        if noop and noop[0].i:
            continue  # no opset-13 equivalent for empty axes meaning "no reduction"
        for a in noop:
            node.attribute.remove(a)
        node.attribute.append(onnx.helper.make_attribute(
            "axes", [int(v) for v in numpy_helper.to_array(axes).reshape(-1)]))
        del node.input[1]
        notes.append(f"{node.name}: {node.op_type} axes input -> attribute (opset {opset})")
    if notes:
        remove_unused(model.graph)  # the axes initializers nothing reads now
    return notes


def expand_as_add(model: onnx.ModelProto) -> list[str]:
    """``Expand(x, shape)`` -> ``Add(x, ConstantOfShape(shape, 0))`` for float32 ``x``.

    The same broadcast (``x + 0 == x`` for every float, NaN and Inf included; only a -0.0 becomes
    +0.0), in ops tract's optimiser handles (see ``pixeldcn_core.Target.expand``).
    """
    if not any(n.op_type == "Expand" for n in model.graph.node):
        return []
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    notes = []
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type != "Expand" or types.get(node.input[0]) != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        zeros = f"{node.output[0]}/zeros"
        nodes.append(onnx.helper.make_node(
            "ConstantOfShape", [node.input[1]], [zeros], name=f"{node.name}/zeros",
            value=numpy_helper.from_array(np.zeros(1, np.float32), "")))
        nodes.append(onnx.helper.make_node("Add", [node.input[0], zeros], list(node.output),
                                           name=node.name))
        notes.append(f"{node.name}: Expand -> Add(x, ConstantOfShape(shape, 0))")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return notes
