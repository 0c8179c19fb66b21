"""ONNX graphs the layer benchmark times besides the core's layers.

- :func:`plain_conv_model`: the practical limit, one 3x3 Conv at input resolution whose MACs
  match a layer's useful MACs.
- :func:`pixel_dcl_variant_model`: alternative standard-op graphs of PixelDCL's efficient form,
  to find the fastest one for the core's emitter.
- :func:`node_models`: a model split into one single-node model per node, fed with the real
  intermediate tensors, to see which part of a layer dominates its time.
- :func:`conv_macs` and :func:`activation_memory`: MACs and activation bytes of any model at a
  concrete input size, read from ONNX shape inference (no run, no kind-specific code).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from pixeldcn_core import GraphBuilder, LayerSpec

__all__ = [
    "PIXEL_DCL_VARIANTS",
    "ActivationMemory",
    "NodeModel",
    "activation_memory",
    "conv_macs",
    "node_models",
    "pixel_dcl_variant_model",
    "plain_conv_channels",
    "plain_conv_model",
]

# ---------------------------------------------------------------------------------------------
# plain conv


def plain_conv_channels(spec: LayerSpec, kernel: int = 3) -> int:
    """Output channels of the ``kernel x kernel`` Conv from ``spec.in_channels`` channels whose
    MACs per input pixel come closest to the layer's useful MACs per input pixel."""
    per_out = kernel * kernel * spec.in_channels
    return max(1, round(spec.macs_per_input_pixel() / per_out))


def plain_conv_model(in_channels: int, out_channels: int, kernel: int = 3, *,
                     dtype: str = "float32") -> onnx.ModelProto:
    """``x [N, in_channels, H, W] -> Conv(kernel x kernel, 'same') -> [N, out_channels, H, W]``."""
    rng = np.random.default_rng(0)
    std = np.sqrt(2.0 / (in_channels * kernel * kernel))
    w = (rng.standard_normal((out_channels, in_channels, kernel, kernel)) * std).astype(np.float32)
    b = GraphBuilder(dtype=dtype)
    x = b.input("x", dtype, ["batch", in_channels, "height", "width"])
    y = b.op("Conv", [x, b.initializer(w, "w")],
             {"kernel_shape": [kernel, kernel], "pads": [kernel // 2] * 4, "strides": [1, 1]})
    b.output(y, "y", ["batch", out_channels, "height", "width"])
    return b.to_model(f"conv{kernel}x{kernel}_{in_channels}_{out_channels}")


# ---------------------------------------------------------------------------------------------
# PixelDCL graph variants

Taps = list[tuple[int, int]]  # (kernel index, offset in input pixels)


def _phase_taps(k: int) -> dict[str, tuple[Taps, Taps]]:
    from pixeldcn_core import pixel_dcl_phase_taps  # the core's own derivation

    return pixel_dcl_phase_taps(k)


@dataclasses.dataclass
class _Window:
    """A dense conv kernel over a window of input offsets, filled tap by tap."""

    out_channels: int
    in_channels: int
    rows: tuple[int, int]  # lowest and highest row offset
    cols: tuple[int, int]

    def __post_init__(self) -> None:
        (r0, r1), (c0, c1) = self.rows, self.cols
        self.w = np.zeros((self.out_channels, self.in_channels, r1 - r0 + 1, c1 - c0 + 1),
                          dtype=np.float32)

    def place(self, out0: int, in0: int, w3: np.ndarray, rows: Taps, cols: Taps) -> None:
        """Put ``w3[:, :, r, c]`` at offset (dr, dc) for every row tap and column tap."""
        c = w3.shape[0]
        for r, dr in rows:
            for cc, dc in cols:
                self.w[out0:out0 + c, in0:in0 + c, dr - self.rows[0], dc - self.cols[0]] = (
                    w3[:, :, r, cc]
                )

    def identity(self, out0: int, in0: int, c: int) -> None:
        self.w[out0:out0 + c, in0:in0 + c, -self.rows[0], -self.cols[0]] += np.eye(c, dtype=np.float32)

    @property
    def pads(self) -> list[int]:
        return [-self.rows[0], -self.cols[0], self.rows[1], self.cols[1]]


def _span(*tap_lists: Taps) -> tuple[int, int]:
    offsets = [d for taps in tap_lists for _, d in taps]
    return min(offsets), max(offsets)


def _conv(b: GraphBuilder, x: str, win: _Window, hint: str) -> str:
    kh, kw = win.w.shape[2:]
    return b.op("Conv", [x, b.initializer(win.w, hint)],
                {"kernel_shape": [int(kh), int(kw)], "pads": win.pads, "strides": [1, 1]})


def _same_conv(b: GraphBuilder, x: str, w: np.ndarray, hint: str) -> str:
    k = int(w.shape[2])
    return b.op("Conv", [x, b.initializer(w, hint)],
                {"kernel_shape": [k, k], "pads": [k // 2] * 4, "strides": [1, 1]})


def _d2s(b: GraphBuilder, phases: list[str]) -> str:
    stacked = b.op("Concat", phases, {"axis": 1})  # (N, 4C, H, W), block 2a + b = phase (a, b)
    return b.op("DepthToSpace", [stacked], {"blocksize": 2, "mode": "DCR"})


def _tail_pair(b: GraphBuilder, f1: str, f2: str, w3: np.ndarray, taps: dict) -> str:
    """y01 and y10 each one conv over Concat(F1, F2) on its own small window (no Add)."""
    c = w3.shape[0]
    z = b.op("Concat", [f1, f2], {"axis": 1})  # (N, 2C, H, W)
    out = []
    for phase in ("01", "10"):
        t1, t2 = taps[f"{phase}_from_f1"], taps[f"{phase}_from_f2"]
        win = _Window(c, 2 * c, _span(t1[0], t2[0]), _span(t1[1], t2[1]))
        win.place(0, 0, w3, *t1)
        win.place(0, c, w3, *t2)
        out.append(_conv(b, z, win, "w3"))
    return _d2s(b, [f1, out[0], out[1], f2])


def _tail_stacked(b: GraphBuilder, f1: str, f2: str, w3: np.ndarray, taps: dict) -> str:
    """One conv from F1 and one from F2, each to (y01, y10) stacked, then one Add."""
    c = w3.shape[0]
    parts = []
    for src, t in ((f1, "f1"), (f2, "f2")):
        a, bb = taps[f"01_from_{t}"], taps[f"10_from_{t}"]
        win = _Window(2 * c, c, _span(a[0], bb[0]), _span(a[1], bb[1]))
        win.place(0, 0, w3, *a)
        win.place(c, 0, w3, *bb)
        parts.append(_conv(b, src, win, "w3"))
    y0110 = b.op("Add", parts)  # (N, 2C, H, W): y01, y10
    return _d2s(b, [f1, y0110, f2])


def _tail_one(b: GraphBuilder, f1: str, f2: str, w3: np.ndarray, taps: dict,
              *, with_identity: bool) -> str:
    """One conv over Concat(F1, F2) to (y01, y10), or to all four phases with identity taps."""
    c = w3.shape[0]
    rows = _span(*(t[0] for t in taps.values()), [(0, 0)])
    cols = _span(*(t[1] for t in taps.values()), [(0, 0)])
    z = b.op("Concat", [f1, f2], {"axis": 1})  # (N, 2C, H, W)
    if not with_identity:
        win = _Window(2 * c, 2 * c, rows, cols)
        for i, phase in enumerate(("01", "10")):
            win.place(i * c, 0, w3, *taps[f"{phase}_from_f1"])
            win.place(i * c, c, w3, *taps[f"{phase}_from_f2"])
        return _d2s(b, [f1, _conv(b, z, win, "w3"), f2])
    win = _Window(4 * c, 2 * c, rows, cols)
    win.identity(0, 0, c)  # y00 = F1
    for i, phase in enumerate(("01", "10"), start=1):
        win.place(i * c, 0, w3, *taps[f"{phase}_from_f1"])
        win.place(i * c, c, w3, *taps[f"{phase}_from_f2"])
    win.identity(3 * c, c, c)  # y11 = F2
    return b.op("DepthToSpace", [_conv(b, z, win, "w3")], {"blocksize": 2, "mode": "DCR"})


def _tail_fused_f2(b: GraphBuilder, f1: str, w2: np.ndarray, w3: np.ndarray, taps: dict) -> str:
    """F2 and F1's share of y01, y10 in one conv of F1 (3C outputs), then F2's share, one Add."""
    c, k = w3.shape[0], w2.shape[2]
    p = k // 2
    a01, a10 = taps["01_from_f1"], taps["10_from_f1"]
    rows = _span(a01[0], a10[0], [(0, -p), (0, p)])
    cols = _span(a01[1], a10[1], [(0, -p), (0, p)])
    win = _Window(3 * c, c, rows, cols)
    win.w[:c, :, -p - rows[0]:p - rows[0] + 1, -p - cols[0]:p - cols[0] + 1] = w2
    win.place(c, 0, w3, *a01)
    win.place(2 * c, 0, w3, *a10)
    t = _conv(b, f1, win, "w23")  # (N, 3C, H, W): F2, F1's share of y01, of y10
    split = b.initializer(np.array([c, 2 * c], dtype=np.int64), "split", cast=False)
    f2, a = b.op("Split", [t, split], {"axis": 1}, num_outputs=2)
    b01, b10 = taps["01_from_f2"], taps["10_from_f2"]
    win2 = _Window(2 * c, c, _span(b01[0], b10[0]), _span(b01[1], b10[1]))
    win2.place(0, 0, w3, *b01)
    win2.place(c, 0, w3, *b10)
    y0110 = b.op("Add", [a, _conv(b, f2, win2, "w3")])
    return _d2s(b, [f1, y0110, f2])


def _tail_convtranspose(b: GraphBuilder, f1: str, f2: str, w3: np.ndarray, taps: dict) -> str:
    """The whole of ``y = S + conv(S, w3 * mask)`` as one stride-2 ConvTranspose of
    Concat(F1, F2): F1 sits at even, F2 at odd output positions."""
    from pixeldcn_core.reference import pixel_dcl_mask

    c, k = w3.shape[0], w3.shape[2]
    p = k // 2
    wm = w3 * pixel_dcl_mask(k).astype(np.float32)
    kk = k + 1  # output offsets -p..p around F1 (even) and 1-p..1+p around F2 (odd)
    wt = np.zeros((2 * c, c, kk, kk), dtype=np.float32)  # ConvTranspose: [in, out, kh, kw]
    for src, shift in ((0, 0), (1, 1)):
        for er in range(-p, p + 1):
            for ec in range(-p, p + 1):
                tap = wm[:, :, p - er, p - ec].T  # (in, out): M[o] += w3m[r] S[o + r - p]
                if er == 0 and ec == 0:
                    tap = tap + np.eye(c, dtype=np.float32)  # y = S + M
                wt[src * c:(src + 1) * c, :, shift + er + p, shift + ec + p] += tap
    z = b.op("Concat", [f1, f2], {"axis": 1})  # (N, 2C, H, W)
    return b.op("ConvTranspose", [z, b.initializer(wt, "wt")],
                {"kernel_shape": [kk, kk], "strides": [2, 2], "pads": [p, p, p, p]})


#: name -> what the variant does after F1 = conv(x, w1) (and F2 = conv(F1, w2) unless fused).
PIXEL_DCL_VARIANTS: dict[str, str] = {
    "core": "the core's emitter (4 small phase convs on F1, F2; 2 Add; Concat; DepthToSpace); "
            "its interleave='concat' is timed as the layer pixel_dcl_k3_concat",
    "pair": "y01, y10 each one conv over Concat(F1, F2) on its small window (no Add)",
    "stacked": "one conv of F1 and one of F2, each to (y01, y10); 1 Add",
    "fused_f2": "F2 and F1's share of (y01, y10) in one conv of F1 (3C out); Split; F2's share; 1 Add",
    "one_tail": "one conv over Concat(F1, F2) to (y01, y10) on the k x k window",
    "full_tail": "one conv over Concat(F1, F2) to all 4 phases (identity taps), DepthToSpace; "
                 "no output Concat",
    "convtranspose": "one stride-2 ConvTranspose of Concat(F1, F2) (k+1 kernel); no DepthToSpace",
}


def pixel_dcl_variant_model(name: str, weights: Mapping[str, np.ndarray], *,
                            dtype: str = "float32") -> onnx.ModelProto:
    """PixelDCL (efficient form, no bias) written as graph variant ``name``
    (see :data:`PIXEL_DCL_VARIANTS`); same input ``x`` and output ``y`` as the core's model."""
    from pixeldcn_core import build_layer_model

    if name not in PIXEL_DCL_VARIANTS:
        raise ValueError(
            f"unknown PixelDCL graph variant {name!r}; expected one of {', '.join(PIXEL_DCL_VARIANTS)}"
        )
    spec = LayerSpec.from_weights("pixel_dcl", weights)
    if spec.bias:
        raise ValueError("the PixelDCL graph variants are written without bias")
    if name == "core":
        return build_layer_model("pixel_dcl", weights, dtype=dtype)
    w1, w2, w3 = (np.asarray(weights[n], np.float32) for n in ("w1", "w2", "w3"))
    taps = _phase_taps(spec.k)
    b = GraphBuilder(dtype=dtype)
    x = b.input("x", dtype, ["batch", spec.in_channels, "height", "width"])
    f1 = _same_conv(b, x, w1, "w1")  # (N, C, H, W)
    if name == "fused_f2":
        y = _tail_fused_f2(b, f1, w2, w3, taps)
    else:
        f2 = _same_conv(b, f1, w2, "w2")  # (N, C, H, W)
        if name == "pair":
            y = _tail_pair(b, f1, f2, w3, taps)
        elif name == "stacked":
            y = _tail_stacked(b, f1, f2, w3, taps)
        elif name == "one_tail":
            y = _tail_one(b, f1, f2, w3, taps, with_identity=False)
        elif name == "full_tail":
            y = _tail_one(b, f1, f2, w3, taps, with_identity=True)
        else:
            y = _tail_convtranspose(b, f1, f2, w3, taps)
    b.output(y, "y", ["batch", spec.out_channels, "2*height", "2*width"])
    return b.to_model(f"pixel_dcl_{name}", doc=PIXEL_DCL_VARIANTS[name])


# ---------------------------------------------------------------------------------------------
# per-node breakdown


@dataclasses.dataclass
class NodeModel:
    """One node of a model as a standalone model, with the feeds it sees in the full model."""

    index: int
    label: str
    op_type: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]


def _label(node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> str:
    if node.op_type in ("Conv", "ConvTranspose"):
        w = shapes[node.input[1]]
        k = f"{w[2]}x{w[3]}"
        cin, cout = (w[0], w[1]) if node.op_type == "ConvTranspose" else (w[1], w[0])
        return f"{node.op_type} {k} {cin}->{cout}"
    outs = ", ".join("x".join(map(str, shapes[o][1:])) for o in node.output if o in shapes)
    return f"{node.op_type} -> {outs}"


def node_models(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[NodeModel]:
    """Split ``model`` into single-node models fed with the real intermediate tensors.

    Every intermediate is computed once by onnxruntime (with graph optimisations off, so the
    nodes are the model's own). Constant-producing nodes without tensor inputs are left out.
    """
    import onnxruntime as ort

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    # Run once with every node output exposed.
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in known:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(exposed.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values: dict[str, np.ndarray] = dict(zip(names, sess.run(None, dict(feeds)), strict=True))
    values.update(feeds)
    shapes = {n: tuple(v.shape) for n, v in values.items()}
    shapes.update({n: tuple(t.dims) for n, t in inits.items()})
    out: list[NodeModel] = []
    for i, node in enumerate(graph.node):
        dynamic = [n for n in node.input if n and n not in inits]
        if not dynamic:
            continue
        node_inputs = [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(values[n].dtype), list(values[n].shape))
            for n in dict.fromkeys(dynamic)
        ]
        node_outputs = [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(values[n].dtype), list(values[n].shape))
            for n in node.output if n
        ]
        g = helper.make_graph([node], f"node_{i}", node_inputs, node_outputs,
                              initializer=[inits[n] for n in dict.fromkeys(node.input) if n in inits])
        m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
        out.append(NodeModel(i, _label(node, shapes), node.op_type, m,
                             {n: values[n] for n in dict.fromkeys(dynamic)}))
    return out


# ---------------------------------------------------------------------------------------------
# MAC count of a whole model


def _inferred_at(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]
                 ) -> onnx.ModelProto:
    """A copy of ``model`` with its inputs fixed to ``input_shapes``, shape-inferred."""
    from onnx import shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, value in zip(dims, input_shapes[inp.name], strict=True):
                d.Clear()
                d.dim_value = int(value)
    return shape_inference.infer_shapes(m, data_prop=True)


def _value_shapes(m: onnx.ModelProto) -> dict[str, tuple[list[int], int]]:
    """name -> (dims, -1 where unknown; ONNX element type) of every typed value of ``m``."""
    out = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        t = vi.type.tensor_type
        out[vi.name] = ([d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim],
                        t.elem_type)
    return out


@dataclasses.dataclass(frozen=True)
class ActivationMemory:
    """Activation memory of a model at one input size (weights not counted).

    Attributes:
        largest_bytes: bytes of the largest tensor a node produces that is not a graph output
            (0 when the graph has no such tensor).
        largest_tensor, largest_op: its name and the op type of the node producing it.
        peak_live_bytes: the most bytes of activations alive at once, walking the nodes in
            graph order: each node's outputs allocated while its inputs are still alive, an
            activation freed after its last consumer (graph inputs and outputs included; no
            in-place reuse, so an upper bound of what a runtime needs).
        output_bytes: bytes of the graph outputs.
    """

    largest_bytes: int
    largest_tensor: str
    largest_op: str
    peak_live_bytes: int
    output_bytes: int

    def as_dict(self) -> dict[str, int | str]:
        return dataclasses.asdict(self)


def activation_memory(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]
                      ) -> ActivationMemory | None:
    """:class:`ActivationMemory` of ``model`` at ``input_shapes``, from ONNX shape inference;
    ``None`` when the size of a tensor cannot be inferred. Works on any model, so every kind
    (and every network) gets it without code of its own."""
    m = _inferred_at(model, input_shapes)
    shapes = _value_shapes(m)
    unknown = [o for n in m.graph.node if n.op_type != "Constant" for o in n.output
               if o and (o not in shapes or min(shapes[o][0], default=0) < 0)]
    if unknown:  # sizes that depend on computed values (a Range over Shape, say): run it
        shapes.update(_run_shapes(m, input_shapes, unknown))
    consts = {t.name for t in m.graph.initializer}
    outputs = {o.name for o in m.graph.output}

    def nbytes(name: str) -> int | None:
        if name not in shapes:
            return None
        dims, elem = shapes[name]
        if any(d < 0 for d in dims):
            return None
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize
        return int(np.prod(dims, dtype=np.int64)) * itemsize

    last_use: dict[str, int] = {}
    for i, node in enumerate(m.graph.node):
        for name in node.input:
            last_use[name] = i
    live: dict[str, int] = {}
    for inp in m.graph.input:
        if inp.name not in consts:
            size = nbytes(inp.name)
            if size is None:
                return None
            live[inp.name] = size
    peak = sum(live.values())
    largest, largest_name, largest_op = 0, "", ""
    for i, node in enumerate(m.graph.node):
        for name in (o for o in node.output if o):
            if node.op_type == "Constant" or (name not in last_use and name not in outputs):
                continue  # constants are weights; an unused output is never materialised
            size = nbytes(name)
            if size is None:
                return None
            live[name] = size
            if name not in outputs and size > largest:
                largest, largest_name, largest_op = size, name, node.op_type
        peak = max(peak, sum(live.values()))
        for name in node.input:
            if last_use.get(name) == i and name not in outputs:
                live.pop(name, None)
    out_bytes = sum(nbytes(o) or 0 for o in outputs)
    return ActivationMemory(largest, largest_name, largest_op, peak, out_bytes)


def _run_shapes(m: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]], names: list[str]
                ) -> dict[str, tuple[list[int], int]]:
    """Shapes and element types of ``names`` in ``m``, from one onnxruntime run on zero inputs of
    ``input_shapes``; empty when onnxruntime is missing or the run fails. For tensors whose size
    shape inference cannot tell because it depends on values computed in the graph (e.g. a
    ``Range`` over a ``Shape``, as DySample's Gather form builds its pixel indices)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in have)
    consts = {t.name for t in probe.graph.initializer}
    feeds = {}
    for inp in probe.graph.input:
        if inp.name in consts:
            continue
        dtype = helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        feeds[inp.name] = np.zeros(tuple(input_shapes[inp.name]), dtype)
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        values = sess.run(names, feeds)
    except Exception:  # the sizes stay unknown, as without the run
        return {}
    return {n: (list(v.shape), int(helper.np_dtype_to_tensor_dtype(v.dtype)))
            for n, v in zip(names, values, strict=True)}


def conv_macs(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]
              ) -> dict[str, int] | None:
    """Multiply-accumulates of the Conv and of the ConvTranspose nodes of ``model`` at fixed
    input shapes (from ONNX shape inference): ``{"Conv": ..., "ConvTranspose": ...}``;
    ``None`` when a shape cannot be inferred."""
    m = _inferred_at(model, input_shapes)
    shapes = {name: dims for name, (dims, _) in _value_shapes(m).items()}
    for t in m.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = {"Conv": 0, "ConvTranspose": 0}
    for node in m.graph.node:
        if node.op_type not in total:
            continue
        w = shapes.get(node.input[1])
        ref = shapes.get(node.output[0] if node.op_type == "Conv" else node.input[0])
        if not w or not ref or min(ref) < 0:
            return None
        n, c, h, wd = ref
        # Conv: every output element takes (in/group) x kh x kw MACs; ConvTranspose: every input
        # element gives (out/group) x kh x kw. Either way: weight dims 1..3.
        total[node.op_type] += n * c * h * wd * w[1] * w[2] * w[3]
    return total
