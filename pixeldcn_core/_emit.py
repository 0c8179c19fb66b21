"""ONNX emitters: each up-sampling layer written as standard operators.

Every emitter takes a :class:`GraphBuilder`, the name of the input tensor ``x [N, Cin, H, W]``,
the layer spec and its checked weights, and returns the name of ``y [N, C, 2H, 2W]``.

The efficient forms compute every output phase at input resolution and interleave the four
phases ``y_ab`` (output ``(2i + a, 2j + b)``) in one of two ways (:data:`INTERLEAVES`):

- ``"depth_to_space"`` (default): ``DepthToSpace(blocksize=2, mode="DCR")`` of
  ``Concat(y00, y01, y10, y11)`` (channel block ``2a + b``). One well-known op that every
  runtime and TensorRT map to a single kernel.
- ``"concat"``: columns by ``Unsqueeze`` + ``Concat`` on a new last axis + ``Reshape``, rows by a
  ``Concat`` of whole rows + ``Reshape``. Only copies and free reshapes: on onnxruntime's CPU
  provider about half the time of Concat + DepthToSpace (a 6-D transpose whose innermost
  dimension is 2): a PixelDCL layer 3-16 % faster at the U-Net's decoder shapes, batch 1.

Sub-pixel conv keeps its ``DepthToSpace(mode="CRD")`` (pixel shuffle) and DCL its ConvTranspose
whatever the interleave.

The builder's target (``pixeldcn_core.TARGETS``) picks equivalent forms a consumer supports: for
a target without DCR, ``"depth_to_space"`` reorders the channels to CRD first (Reshape,
Transpose, Reshape); for one without asymmetric ConvTranspose pads, odd-kernel DCL is a
symmetric ConvTranspose and a Slice.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._builder import GraphBuilder
from ._errors import SpecError
from ._specs import LayerSpec
from .reference import dcl_padding, pixel_dcl_mask

__all__ = ["INTERLEAVES", "check_form", "check_interleave", "emit_layer", "pixel_dcl_phase_taps"]

#: How the efficient forms interleave four phases into the 2x output (see the module docstring).
INTERLEAVES = ("depth_to_space", "concat")

Taps = list[tuple[int, int]]  # (kernel index, offset in input pixels), offsets ascending


def _conv(
    b: GraphBuilder,
    x: str,
    w: np.ndarray,
    pads: list[int],
    bias: np.ndarray | None = None,
    *,
    hint: str = "w",
) -> str:
    inputs = [x, b.initializer(w, hint)]
    if bias is not None:
        inputs.append(b.initializer(bias, "b"))
    return b.op(
        "Conv",
        inputs,
        {"kernel_shape": [int(w.shape[2]), int(w.shape[3])], "pads": pads, "strides": [1, 1]},
    )


def _same(k: int) -> list[int]:
    return [k // 2] * 4


def _interleave(b: GraphBuilder, phases: list[str], how: str) -> str:
    """``[y00, y01, y10, y11]`` (each ``[N, C, H, W]``) -> ``[N, C, 2H, 2W]``.

    With ``how="depth_to_space"`` an entry may also hold consecutive phases stacked on channels
    (``[y00, y01 ++ y10, y11]``); ``"concat"`` needs the four apart.
    """
    def const(values: list[int], hint: str) -> str:
        return b.initializer(np.array(values, dtype=np.int64), hint, cast=False)

    if how == "depth_to_space":
        stacked = b.op("Concat", phases, {"axis": 1})  # (N, 4C, H, W), block 2a + b = (a, b)
        if b.target.depth_to_space_dcr:
            return b.op("DepthToSpace", [stacked], {"blocksize": 2, "mode": "DCR"})
        # The target lacks DCR: reorder channels to CRD (4c + 2a + b), then DepthToSpace CRD.
        hw = b.op("Shape", [stacked], {"start": 2})  # [H, W]
        blocks = b.op("Reshape", [stacked, b.op("Concat", [const([0, 4, -1], "shape"), hw],
                                                 {"axis": 0})])  # (N, 4, C, H, W)
        crd = b.op("Transpose", [blocks], {"perm": [0, 2, 1, 3, 4]})  # (N, C, 4, H, W)
        flat = b.op("Reshape", [crd, b.op("Concat", [const([0, -1], "shape"), hw], {"axis": 0})])
        return b.op("DepthToSpace", [flat], {"blocksize": 2, "mode": "CRD"})
    y00, y01, y10, y11 = phases

    def columns(left: str, right: str) -> str:  # (N, C, H, W) x 2 -> (N, C, H, 2W)
        axis = const([4], "axes")
        pair = [b.op("Unsqueeze", [t, axis]) for t in (left, right)]  # (N, C, H, W, 1)
        z = b.op("Concat", pair, {"axis": 4})  # (N, C, H, W, 2): [.., j, b] = column 2j + b
        return b.op("Reshape", [z, const([0, 0, 0, -1], "shape")])

    even, odd = columns(y00, y01), columns(y10, y11)  # output rows 2i and 2i + 1
    rows = b.op("Concat", [even, odd], {"axis": 3})  # (N, C, H, 4W): row 2i, then row 2i + 1
    width = b.op("Shape", [even], {"start": 3})  # [2W]
    shape = b.op("Concat", [const([0, 0, -1], "shape"), width], {"axis": 0})
    return b.op("Reshape", [rows, shape])  # (N, C, 2H, 2W)


def _zeros_like(b: GraphBuilder, t: str) -> str:
    shape = b.op("Shape", [t])
    zero = np.zeros((1,), dtype=b.np_dtype)
    from onnx import numpy_helper

    return b.op("ConstantOfShape", [shape], {"value": numpy_helper.from_array(zero, "")})


def _bias4d(b: GraphBuilder, bias: np.ndarray) -> str:
    return b.initializer(bias.reshape(1, -1, 1, 1), "bias")


def _phase_conv(
    b: GraphBuilder, x: str, w: np.ndarray, rows: Taps, cols: Taps, bias: np.ndarray | None
) -> str:
    """Conv of ``x`` with the sub-kernel ``w[:, :, rows][:, :, :, cols]`` at input resolution.

    Output ``[i, j]`` reads ``x[i + dr, j + dc]`` for every ``(r, dr)`` in rows and ``(c, dc)``
    in cols; the offsets are contiguous, so this is one Conv with asymmetric zero padding.
    """
    sub = w[:, :, [r for r, _ in rows]][:, :, :, [c for c, _ in cols]]
    pads = [-rows[0][1], -cols[0][1], rows[-1][1], cols[-1][1]]
    return _conv(b, x, sub, pads, bias, hint="w3")


def _pixel_taps(k: int, parity: int, shift: int) -> Taps:
    """Taps ``r`` with ``(r - k//2) % 2 == parity`` and their offsets ``(r - k//2 + shift) / 2``."""
    p = k // 2
    return [(r, (r - p + shift) // 2) for r in range(k) if (r - p) % 2 == parity]


def pixel_dcl_phase_taps(k: int) -> dict[str, tuple[Taps, Taps]]:
    """For PixelDCL: which taps of ``w3`` reach ``y01`` and ``y10`` from F1 and from F2.

    Derived from ``y = S + conv(S, w3 * mask)`` with F1 at the even-even and F2 at the odd-odd
    positions of S. For k = 3 this is DESIGN.md's four-tap formulas, e.g.
    ``y01[i,j] = w3[1,0].F1[i,j] + w3[1,2].F1[i,j+1] + w3[0,1].F2[i-1,j] + w3[2,1].F2[i,j]``.
    """
    return {
        "01_from_f1": (_pixel_taps(k, 0, 0), _pixel_taps(k, 1, 1)),
        "01_from_f2": (_pixel_taps(k, 1, -1), _pixel_taps(k, 0, 0)),
        "10_from_f1": (_pixel_taps(k, 1, 1), _pixel_taps(k, 0, 0)),
        "10_from_f2": (_pixel_taps(k, 0, 0), _pixel_taps(k, 1, -1)),
    }


def _pixel_dcl_f12(b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray]
                   ) -> tuple[str, str]:
    f1 = _conv(b, x, w["w1"], _same(spec.k), hint="w1")  # (N, C, H, W)
    f2 = _conv(b, f1, w["w2"], _same(spec.k), hint="w2")  # (N, C, H, W)
    return f1, f2


def pixel_dcl_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Figure 6: S interleaves F1 and F2 with zeros; ``y = S + conv(S, w3 * mask)`` at 2H x 2W."""
    k, bias = spec.k, w.get("bias")
    f1, f2 = _pixel_dcl_f12(b, x, spec, w)
    zeros = _zeros_like(b, f1)
    s = _interleave(b, [f1, zeros, zeros, f2], interleave)  # (N, C, 2H, 2W)
    # The conv's bias reaches every output pixel once: y = S + (M + bias).
    m = _conv(b, s, w["w3"] * pixel_dcl_mask(k).astype(w["w3"].dtype), _same(k), bias, hint="w3")
    return b.op("Add", [s, m])


def pixel_dcl_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """F1, F2 and four sub-kernel convs of ``w3`` (masked taps never multiplied), interleaved."""
    k, bias = spec.k, w.get("bias")
    f1, f2 = _pixel_dcl_f12(b, x, spec, w)
    taps = pixel_dcl_phase_taps(k)
    w3 = w["w3"]
    y01 = b.op("Add", [
        _phase_conv(b, f1, w3, *taps["01_from_f1"], bias),
        _phase_conv(b, f2, w3, *taps["01_from_f2"], None),
    ])
    y10 = b.op("Add", [
        _phase_conv(b, f1, w3, *taps["10_from_f1"], bias),
        _phase_conv(b, f2, w3, *taps["10_from_f2"], None),
    ])
    y00, y11 = f1, f2
    if bias is not None:
        b4 = _bias4d(b, bias)
        y00, y11 = b.op("Add", [f1, b4]), b.op("Add", [f2, b4])
    return _interleave(b, [y00, y01, y10, y11], interleave)


def _ipixel_dcl_f12(b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray]
                    ) -> tuple[str, str, str]:
    k = spec.k
    f1 = _conv(b, x, w["w1"], _same(k), hint="w1")
    f2 = _conv(b, b.op("Concat", [x, f1], {"axis": 1}), w["w2"], _same(k), hint="w2")
    x12 = b.op("Concat", [x, f1, f2], {"axis": 1})  # (N, Cin + 2C, H, W)
    return f1, f2, x12


def ipixel_dcl_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """The authors' code: split conv3 into F3, F4, dilate each map to 2H x 2W at its phase with
    zeros, and add the four."""
    k, c, bias = spec.k, spec.out_channels, w.get("bias")
    f1, f2, x12 = _ipixel_dcl_f12(b, x, spec, w)
    f34 = _conv(b, x12, w["w3"], _same(k), hint="w3")
    split = b.initializer(np.array([c, c], dtype=np.int64), "split", cast=False)
    f3, f4 = b.op("Split", [f34, split], {"axis": 1}, num_outputs=2)
    zeros = _zeros_like(b, f1)
    dilated = []
    for block, f in enumerate([f1, f4, f3, f2]):  # phases 00, 01, 10, 11
        phases = [zeros] * 4
        phases[block] = f
        dilated.append(_interleave(b, phases, interleave))
    y = b.op("Sum", dilated)
    return b.op("Add", [y, _bias4d(b, bias)]) if bias is not None else y


def ipixel_dcl_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """F1, F2 and one conv for (F4, F3) at input resolution, interleaved."""
    k, c, bias = spec.k, spec.out_channels, w.get("bias")
    f1, f2, x12 = _ipixel_dcl_f12(b, x, spec, w)
    # Reorder conv3's output channels to (F4, F3) = (y01, y10), so one Concat with
    # F1 and F2 gives the phase order of DepthToSpace without a Split.
    w3 = np.concatenate([w["w3"][c:], w["w3"][:c]], axis=0)
    b34 = None if bias is None else np.concatenate([bias, bias])
    f43 = _conv(b, x12, w3, _same(k), b34, hint="w3")  # (N, 2C, H, W): y01, y10
    y00, y11 = f1, f2
    if bias is not None:
        b4 = _bias4d(b, bias)
        y00, y11 = b.op("Add", [f1, b4]), b.op("Add", [f2, b4])
    if interleave == "depth_to_space":
        return _interleave(b, [y00, f43, y11], interleave)
    split = b.initializer(np.array([c, c], dtype=np.int64), "split", cast=False)
    y01, y10 = b.op("Split", [f43, split], {"axis": 1}, num_outputs=2)
    return _interleave(b, [y00, y01, y10, y11], interleave)


def resize_conv_phase_kernel(w: np.ndarray, a: int, bb: int) -> tuple[np.ndarray, list[int]]:
    """Phase ``(a, bb)`` of nearest-x2-then-conv as one conv at input resolution.

    ``y[2i+a, 2j+b] = sum_rc w[r, c] . x[i + floor((a+r-p)/2), j + floor((b+c-p)/2)]``: taps that
    read the same input pixel add up. Returns the summed kernel and its ONNX pads.
    """
    k = w.shape[2]
    p = k // 2
    rows = [(a + r - p) // 2 for r in range(k)]
    cols = [(bb + c - p) // 2 for c in range(k)]
    r0, c0 = min(rows), min(cols)
    sub = np.zeros(
        (w.shape[0], w.shape[1], max(rows) - r0 + 1, max(cols) - c0 + 1), dtype=np.float64
    )
    for r in range(k):
        for c in range(k):
            sub[:, :, rows[r] - r0, cols[c] - c0] += w[:, :, r, c]
    return sub.astype(w.dtype), [-r0, -c0, max(rows), max(cols)]


def resize_conv_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Resize(nearest, x2) then the k x k conv at 2H x 2W."""
    bias = w.get("bias")
    scales = b.initializer(np.array([1, 1, 2, 2], dtype=np.float32), "scales", cast=False)
    up = b.op(
        "Resize",
        [x, "", scales],
        {"mode": "nearest", "nearest_mode": "floor",
         "coordinate_transformation_mode": "asymmetric"},
    )  # (N, Cin, 2H, 2W)
    return _conv(b, up, w["weight"], _same(spec.k), bias)


def resize_conv_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Each phase one conv at input resolution with the summed sub-kernel, interleaved."""
    bias = w.get("bias")
    phases = []
    for a in (0, 1):
        for bb in (0, 1):
            sub, pads = resize_conv_phase_kernel(w["weight"], a, bb)
            phases.append(_conv(b, x, sub, pads, bias))
    return _interleave(b, phases, interleave)


def subpixel_conv_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """One conv to 4C channels, then DepthToSpace CRD (pixel shuffle) whatever ``interleave``."""
    bias = w.get("bias")
    # Conv channel 4c + 2a + b is output channel c at phase (a, b): pixel_shuffle's CRD order.
    z = _conv(b, x, w["weight"], _same(spec.k), None if bias is None else np.repeat(bias, 4))
    return b.op("DepthToSpace", [z], {"blocksize": 2, "mode": "CRD"})


def dcl_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """One ConvTranspose with TF 'SAME' pads whatever ``interleave``."""
    k = spec.k
    begin, end = dcl_padding(k)
    inputs = [x, b.initializer(w["weight"], "w")]
    if w.get("bias") is not None:
        inputs.append(b.initializer(w["bias"], "b"))
    if begin == end or b.target.asymmetric_conv_transpose:
        # Output size 2(H-1) + k - begin - end = 2H: TF 'SAME', including the asymmetric k = 3.
        return b.op(
            "ConvTranspose",
            inputs,
            {"kernel_shape": [k, k], "strides": [2, 2], "pads": [begin, begin, end, end]},
        )
    # The target lacks asymmetric pads: pad ``begin`` on both sides (2H + end - begin rows and
    # columns), then drop the last ``end - begin``.
    full = b.op("ConvTranspose", inputs,
                {"kernel_shape": [k, k], "strides": [2, 2], "pads": [begin] * 4})
    cut = end - begin

    def const(values: list[int], hint: str) -> str:
        return b.initializer(np.array(values, dtype=np.int64), hint, cast=False)

    return b.op("Slice", [full, const([0, 0], "starts"), const([-cut, -cut], "ends"),
                          const([2, 3], "axes")])


def emit_layer(
    builder: GraphBuilder,
    kind: str,
    x: str,
    weights: Mapping[str, np.ndarray],
    *,
    form: str = "efficient",
    interleave: str | None = None,
    in_channels: int | None = None,
) -> str:
    """Emit one up-sampling layer into ``builder``; returns the name of its output tensor.

    Args:
        builder: the graph being built (its dtype decides the initializers' dtype).
        kind: a registered kind.
        x: name of the input tensor ``[N, Cin, H, W]`` already in the graph.
        weights: the layer's weights as numpy arrays (see :meth:`LayerSpec.weight_shapes`).
        form: "efficient" (default) or "faithful", where the kind has it.
        interleave: how phases become the 2x output: "depth_to_space" or "concat" (see
            :data:`INTERLEAVES`); ``None`` takes the builder's target's (``depth_to_space`` for
            onnxruntime, ``concat`` for onnx2torch and ``any``). Sub-pixel conv and DCL ignore it.
        in_channels: the input's channels; needed only for a kind without weights (see
            :meth:`LayerSpec.from_weights`).

    The forms written also follow ``builder.target`` (see ``pixeldcn_core.TARGETS``).
    """
    spec = LayerSpec.from_weights(kind, weights, in_channels=in_channels)
    checked = spec.check_weights(weights)
    check_form(spec, form)
    interleave = check_interleave(builder.target.interleave if interleave is None else interleave)
    return spec.info.emitters[form](builder, x, spec, checked, interleave)


def check_form(spec: LayerSpec, form: str) -> None:
    if form not in spec.info.forms:
        raise SpecError(
            f"{spec.kind} has no form {form!r}; expected one of {', '.join(spec.info.forms)}"
        )


def check_interleave(interleave: str) -> str:
    if interleave not in INTERLEAVES:
        raise SpecError(f"interleave={interleave!r}; expected one of {', '.join(INTERLEAVES)}")
    return interleave
