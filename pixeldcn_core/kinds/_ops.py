"""ONNX building blocks shared by the kinds' emitters: convs, phase interleaving, constants.

Every up-sampling kind of this package computes output phases ``y_ab`` (output pixel
``(2i + a, 2j + b)``) at input resolution and interleaves them into the 2x output. The two ways
(:data:`pixeldcn_core.INTERLEAVES`) are written by :func:`interleave_phases`:

- ``"depth_to_space"`` (default): ``DepthToSpace(blocksize=2, mode="DCR")`` of
  ``Concat(y00, y01, y10, y11)`` (channel block ``2a + b``). One well-known op that every
  runtime and TensorRT map to a single kernel. For a target without DCR (``builder.target``) the
  channels are reordered to CRD first (Reshape, Transpose, Reshape) and ``DepthToSpace(CRD)``
  interleaves them.
- ``"concat"``: columns by ``Unsqueeze`` + ``Concat`` on a new last axis + ``Reshape``, rows by a
  ``Concat`` of whole rows + ``Reshape``. Only copies and free reshapes: on onnxruntime's CPU
  provider about half the time of Concat + DepthToSpace (a 6-D transpose whose innermost
  dimension is 2): a PixelDCL layer 3-16 % faster at the U-Net's decoder shapes, batch 1.

Helpers here take the :class:`~pixeldcn_core.GraphBuilder` first and return tensor names; a kind's
module imports what it needs (``from ._ops import conv, interleave_phases``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from onnx import numpy_helper

if TYPE_CHECKING:
    from .._builder import GraphBuilder

__all__ = [
    "Taps",
    "add_bias",
    "bias4d",
    "conv",
    "int64_const",
    "interleave_phases",
    "phase_conv",
    "same_pads",
    "zeros_like",
]

#: ``[(kernel index, offset in input pixels), ...]``, offsets ascending.
Taps = list[tuple[int, int]]


def int64_const(b: GraphBuilder, values: list[int], hint: str) -> str:
    """An int64 initializer (shapes, axes, pads, splits): never cast to the graph's dtype."""
    return b.initializer(np.array(values, dtype=np.int64), hint, cast=False)


def conv(
    b: GraphBuilder,
    x: str,
    w: np.ndarray,
    pads: list[int],
    bias: np.ndarray | None = None,
    *,
    hint: str = "w",
) -> str:
    """A stride-1 ``Conv`` of ``x`` with ``w [Co, Ci, kh, kw]`` and ONNX ``pads``
    ``[top, left, bottom, right]``."""
    inputs = [x, b.initializer(w, hint)]
    if bias is not None:
        inputs.append(b.initializer(bias, "b"))
    return b.op(
        "Conv",
        inputs,
        {"kernel_shape": [int(w.shape[2]), int(w.shape[3])], "pads": pads, "strides": [1, 1]},
    )


def same_pads(k: int) -> list[int]:
    """ONNX pads of a 'same' stride-1 conv with an odd kernel ``k``."""
    return [k // 2] * 4


def interleave_phases(b: GraphBuilder, phases: list[str], how: str) -> str:
    """``[y00, y01, y10, y11]`` (each ``[N, C, H, W]``) -> ``[N, C, 2H, 2W]``.

    With ``how="depth_to_space"`` an entry may also hold consecutive phases stacked on channels
    (``[y00, y01 ++ y10, y11]``); ``"concat"`` needs the four apart.
    """
    if how == "depth_to_space":
        stacked = b.op("Concat", phases, {"axis": 1})  # (N, 4C, H, W), block 2a + b = (a, b)
        if b.target.depth_to_space_dcr:
            return b.op("DepthToSpace", [stacked], {"blocksize": 2, "mode": "DCR"})
        # The target lacks DCR: reorder channels to CRD (4c + 2a + b), then DepthToSpace CRD.
        hw = b.op("Shape", [stacked], {"start": 2})  # [H, W]
        blocks = b.op("Reshape", [stacked, b.op("Concat", [int64_const(b, [0, 4, -1], "shape"),
                                                           hw], {"axis": 0})])  # (N, 4, C, H, W)
        crd = b.op("Transpose", [blocks], {"perm": [0, 2, 1, 3, 4]})  # (N, C, 4, H, W)
        flat = b.op("Reshape", [crd, b.op("Concat", [int64_const(b, [0, -1], "shape"), hw],
                                          {"axis": 0})])
        return b.op("DepthToSpace", [flat], {"blocksize": 2, "mode": "CRD"})
    y00, y01, y10, y11 = phases

    def columns(left: str, right: str) -> str:  # (N, C, H, W) x 2 -> (N, C, H, 2W)
        axis = int64_const(b, [4], "axes")
        pair = [b.op("Unsqueeze", [t, axis]) for t in (left, right)]  # (N, C, H, W, 1)
        z = b.op("Concat", pair, {"axis": 4})  # (N, C, H, W, 2): [.., j, b] = column 2j + b
        return b.op("Reshape", [z, int64_const(b, [0, 0, 0, -1], "shape")])

    even, odd = columns(y00, y01), columns(y10, y11)  # output rows 2i and 2i + 1
    rows = b.op("Concat", [even, odd], {"axis": 3})  # (N, C, H, 4W): row 2i, then row 2i + 1
    width = b.op("Shape", [even], {"start": 3})  # [2W]
    shape = b.op("Concat", [int64_const(b, [0, 0, -1], "shape"), width], {"axis": 0})
    return b.op("Reshape", [rows, shape])  # (N, C, 2H, 2W)


def zeros_like(b: GraphBuilder, t: str) -> str:
    """Zeros of ``t``'s (run-time) shape, in the graph's dtype."""
    shape = b.op("Shape", [t])
    zero = np.zeros((1,), dtype=b.np_dtype)
    return b.op("ConstantOfShape", [shape], {"value": numpy_helper.from_array(zero, "")})


def bias4d(b: GraphBuilder, bias: np.ndarray) -> str:
    """A per-channel bias ``[C]`` as a ``[1, C, 1, 1]`` initializer (broadcast by Add)."""
    return b.initializer(bias.reshape(1, -1, 1, 1), "bias")


def add_bias(b: GraphBuilder, y: str, bias: np.ndarray | None) -> str:
    """``y + bias`` per channel, or ``y`` when there is no bias."""
    return y if bias is None else b.op("Add", [y, bias4d(b, bias)])


def phase_conv(
    b: GraphBuilder, x: str, w: np.ndarray, rows: Taps, cols: Taps, bias: np.ndarray | None
) -> str:
    """Conv of ``x`` with the sub-kernel ``w[:, :, rows][:, :, :, cols]`` at input resolution.

    Output ``[i, j]`` reads ``x[i + dr, j + dc]`` for every ``(r, dr)`` in rows and ``(c, dc)``
    in cols; the offsets are contiguous, so this is one Conv with asymmetric zero padding.
    """
    sub = w[:, :, [r for r, _ in rows]][:, :, :, [c for c, _ in cols]]
    pads = [-rows[0][1], -cols[0][1], rows[-1][1], cols[-1][1]]
    return conv(b, x, sub, pads, bias, hint="w3")
