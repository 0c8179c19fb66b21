"""Graph rewrites for an export target, on what the PyTorch exporter writes around the layers.

The up-sampling layers already come in the target's forms (the core's emitters read
``GraphBuilder.target``); this pass adapts the rest of the exported graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from pixeldcn_core import Target, get_target

__all__ = ["adapt_to_target"]


def adapt_to_target(model: onnx.ModelProto, target: str | Target | None) -> list[str]:
    """Rewrite, in place, what ``target`` does not implement into the same computation.

    - ``Reshape(allowzero=1)`` -> ``allowzero=0`` where the target lacks it and the shape is a
      constant holding no 0 (then both read the shape the same way). A computed shape is left
      as it is and reported.

    Returns:
        One line per rewrite or per construct left that the target does not implement.
    """
    t = get_target(target)
    notes: list[str] = []
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
