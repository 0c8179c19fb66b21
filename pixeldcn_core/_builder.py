"""A small recording graph builder (a "tape") that writes deterministic ONNX.

>>> import numpy as np
>>> b = GraphBuilder()
>>> x = b.input("x", "float32", ["batch", 2, "height", "width"])
>>> w = b.initializer(np.ones((4, 2, 1, 1), np.float32), "w")
>>> y = b.op("Conv", [x, w], {"pads": [0, 0, 0, 0]})
>>> b.output(b.op("DepthToSpace", [y], {"blocksize": 2, "mode": "DCR"}, name="y"), "y")
'y'
>>> model = b.to_model()
>>> [n.op_type for n in model.graph.node]
['Conv', 'DepthToSpace']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._errors import SpecError
from ._opsets import check_opset, ir_version_for
from ._targets import Target, get_target
from ._version import __version__

__all__ = ["DTYPES", "GraphBuilder", "check_dtype"]

#: Model dtypes: name -> (numpy dtype, ONNX element type).
DTYPES: dict[str, tuple[type[np.floating[Any]], int]] = {
    "float32": (np.float32, TensorProto.FLOAT),
    "float16": (np.float16, TensorProto.FLOAT16),
}

PRODUCER_NAME = "pixeldcn"


def check_dtype(dtype: Any) -> str:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise SpecError(f"dtype {dtype!r} is not supported; expected one of {', '.join(DTYPES)}")
    return name


Dim = int | str | None


class GraphBuilder:
    """Records nodes, initializers, inputs and outputs; :meth:`to_model` writes the ModelProto.

    Names are made from ``prefix`` and a counter, so the same sequence of calls always gives
    byte-identical models. ``prefix`` keeps the names of a layer unique when it is emitted into
    a larger graph (the exporters splice ``nodes`` and ``initializers`` into their own graphs).

    Args:
        prefix: prefix of every generated name (e.g. ``"up1/"``).
        opset: the default-domain opset the graph targets.
        dtype: the float dtype of the graph's tensors ("float32" or "float16").
        target: the ONNX consumer the graph is for (see ``pixeldcn_core.TARGETS``); ``None`` is
            the default, onnxruntime.
    """

    def __init__(
        self, prefix: str = "", *, opset: int | None = None, dtype: str = "float32",
        target: str | Target | None = None,
    ) -> None:
        self.prefix = prefix
        self.opset = check_opset(opset)
        #: The consumer the graph is for: the emitters write forms it supports (``_targets``).
        self.target = get_target(target)
        self.dtype = check_dtype(dtype)
        self.np_dtype, self.elem_type = DTYPES[self.dtype]
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._counts: dict[str, int] = {}

    # -- names -------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A new unique name ``<prefix><hint>_<n>``."""
        n = self._counts.get(hint, 0)
        self._counts[hint] = n + 1
        name = f"{self.prefix}{hint}_{n}"
        while name in self._used:  # pragma: no cover - only with hand-picked clashing names
            n += 1
            self._counts[hint] = n + 1
            name = f"{self.prefix}{hint}_{n}"
        self._used.add(name)
        return name

    def _claim(self, name: str) -> str:
        if name in self._used:
            raise SpecError(f"tensor name {name!r} is already used in this graph")
        self._used.add(name)
        return name

    # -- graph parts --------------------------------------------------------------------------
    def input(self, name: str, dtype: str | None, shape: Sequence[Dim]) -> str:
        """Declare a graph input; returns its name."""
        elem = DTYPES[check_dtype(dtype)][1] if dtype else self.elem_type
        self.inputs.append(helper.make_tensor_value_info(self._claim(name), elem, list(shape)))
        return name

    def output(
        self, value: str, name: str | None = None, shape: Sequence[Dim] | None = None
    ) -> str:
        """Declare ``value`` a graph output (renamed through Identity when ``name`` differs)."""
        if name is not None and name != value:
            last = self.nodes[-1] if self.nodes else None
            consumed = any(value in n.input for n in self.nodes)
            if last is not None and list(last.output) == [value] and not consumed:
                last.output[0] = self._claim(name)  # rename in place: no Identity needed
                value = name
            else:
                value = self.op("Identity", [value], name=name)
        if shape is None:  # every tensor here is NCHW; dims unknown
            shape = [None, None, None, None]
        self.outputs.append(helper.make_tensor_value_info(value, self.elem_type, list(shape)))
        return value

    def initializer(self, array: np.ndarray, hint: str = "w", *, cast: bool = True) -> str:
        """Add a constant tensor of ``array``'s shape (a 0-d array stays a scalar); float arrays
        are cast to the graph dtype when ``cast``."""
        arr = np.asarray(array)
        if cast and np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(self.np_dtype)
        name = self.fresh(hint)
        # np.ascontiguousarray would make a 0-d array [1]; reshape keeps the shape exactly
        arr = np.ascontiguousarray(arr).reshape(arr.shape)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    @overload
    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        attributes: Mapping[str, Any] | None = None,
        *,
        num_outputs: Literal[1] = 1,
        name: str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> str: ...

    @overload
    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        attributes: Mapping[str, Any] | None = None,
        *,
        num_outputs: Literal[2, 3, 4, 5, 6, 7, 8],
        name: str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> tuple[str, ...]: ...

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        attributes: Mapping[str, Any] | None = None,
        *,
        num_outputs: int = 1,
        name: str | None = None,
        outputs: Sequence[str] | None = None,
    ) -> str | tuple[str, ...]:
        """Append one node; returns its output name (a tuple of names when ``num_outputs > 1``).

        Args:
            op_type: an operator of the default ONNX domain, e.g. ``"Conv"``.
            inputs: names of existing tensors (``""`` for an omitted optional input).
            attributes: the node's attributes (serialised sorted by name).
            num_outputs: how many outputs the node has (1 to 8).
            name: the output's name when there is one output (default: a fresh name).
            outputs: explicit output names (overrides ``name`` and ``num_outputs``).
        """
        hint = op_type[0].lower() + op_type[1:]
        if outputs is None:
            if name is not None and num_outputs == 1:
                outputs = [self._claim(name)]
            else:
                outputs = [self.fresh(hint) for _ in range(num_outputs)]
        else:
            outputs = [self._claim(o) for o in outputs]
        node_name = self.fresh(f"{op_type}")
        # make_node sorts attributes by name: the same call always serialises the same way.
        self.nodes.append(
            helper.make_node(op_type, list(inputs), list(outputs), name=node_name,
                             **dict(attributes or {}))
        )
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    # -- model ---------------------------------------------------------------------------------
    def to_graph(self, name: str = "pixeldcn") -> onnx.GraphProto:
        return helper.make_graph(
            self.nodes, name, self.inputs, self.outputs, initializer=self.initializers
        )

    def to_model(self, name: str = "pixeldcn", *, doc: str = "") -> onnx.ModelProto:
        """The recorded graph as a model with a pinned opset and IR version."""
        model = helper.make_model(
            self.to_graph(name),
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=ir_version_for(self.opset),
            producer_name=PRODUCER_NAME,
            producer_version=__version__,
            doc_string=doc,
        )
        return model
