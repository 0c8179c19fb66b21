"""DySample (Liu et al. 2023, "Learning to Upsample by Learning to Sample"), x2, "lp" style with
the static scope factor: ONNX emitters and the registry entry.

``y = sample(x, positions)`` where the positions are ``init_pos + 0.25 * conv1x1(x)``, pixel
shuffled to one (x, y) pair per output pixel and group (see :func:`pixeldcn_core.reference.dysample`
for the exact semantics). Two lowerings of the sampling, the same numbers:

- ``efficient`` (:func:`dysample_gather`): the four neighbours' flat indices (clamped to the
  border) and bilinear weights computed in the graph, four ``Gather`` of whole pixels (each
  group's ``C/G`` channels at once) and a weighted sum. No GridSample: every consumer runs it,
  and onnxruntime's CPU provider runs it in about half the time of GridSample (36 ms against
  89 ms at 1 x 64 x 128 x 128, one thread).
- ``faithful`` (:func:`dysample_grid_sample`): the authors' ``F.grid_sample`` as ``GridSample``
  (opset 16+; ``mode="bilinear"``, renamed ``"linear"`` at opset 20; ``align_corners=0``,
  ``padding_mode="border"``); the Gather form where the target lacks or miscomputes GridSample
  (:attr:`pixeldcn_core.Target.grid_sample`).

The Gather form keeps a position as an integer pixel index (``Floor`` of the offset, a small
number, cast to int64) and a fraction in ``[0, 1)``, so it is exact in float16 at any image size.
``GridSample``'s normalised grid ``2 px / W - 1`` carries ``W / 2`` times the rounding of its
dtype (float16: up to ``W / 2^12`` pixels), so the faithful form builds it in float32.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from onnx import TensorProto, numpy_helper

from .. import reference as ref
from .._builder import GraphBuilder
from .._errors import SpecError, WeightError
from .._specs import KindInfo, LayerSpec, register_kind
from ._ops import add_bias, conv, int64_const

__all__ = ["GRID_SAMPLE_OPSET", "dysample_gather", "dysample_grid_sample"]

#: The first opset with GridSample.
GRID_SAMPLE_OPSET = 16


def _groups(spec: LayerSpec) -> int:
    return spec.param_values["groups"]


def _offsets(b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray]) -> str:
    """``pixel_shuffle(0.25 conv1x1(x) + init_pos)``: ``[N, 2G, 2H, 2W]``, channel ``c G + g``
    (c = 0: x, 1: y) in input pixels. The 0.25 (a power of 2: exact) and ``init_pos`` are folded
    into the conv's weight and bias."""
    g = _groups(spec)
    scope = ref.DYSAMPLE_SCOPE
    weight = w["offset_weight"].astype(np.float64) * scope
    bias = w["offset_bias"].astype(np.float64) * scope + ref.dysample_init_pos(g)
    o = conv(b, x, weight, [0, 0, 0, 0], bias, hint="offset_w")  # (N, 8G, H, W)
    return b.op("DepthToSpace", [o], {"blocksize": 2, "mode": "CRD"})  # (N, 2G, 2H, 2W)


def _split_xy(b: GraphBuilder, off: str, g: int) -> tuple[str, str]:
    """``[N, 2G, 2H, 2W]`` -> x and y offsets ``[N, G, 2H, 2W]`` (Slice: Split changed at 18)."""
    axis = int64_const(b, [1], "axes")
    ox = b.op("Slice", [off, int64_const(b, [0], "starts"), int64_const(b, [g], "ends"), axis])
    oy = b.op("Slice", [off, int64_const(b, [g], "starts"), int64_const(b, [2 * g], "ends"), axis])
    return ox, oy


def _range(b: GraphBuilder, size: str) -> str:
    """``[0, 1, ..., size - 1]`` (int64) of a ``[1]`` int64 size. Range takes 0-d inputs: its
    start and step are Constant nodes (an initializer of a 0-d array is written as ``[1]``)."""
    def scalar(v: int) -> str:
        return b.op("Constant", [], {"value": numpy_helper.from_array(np.array(v, np.int64), "")})

    return b.op("Range", [scalar(0), b.op("Squeeze", [size, int64_const(b, [0], "axes")]), scalar(1)])


def _input_index(b: GraphBuilder, size: str) -> str:
    """``[0, 0, 1, 1, ..., size - 1, size - 1]`` (int64 ``[2 size]``, ``size`` a ``[1]``
    tensor): the input pixel of each output pixel along one axis."""
    two = _scalar_i(b, 2)
    return b.op("Div", [_range(b, b.op("Mul", [size, two])), two])


def _finish(b: GraphBuilder, y: str, w: Mapping[str, np.ndarray]) -> str:
    return add_bias(b, y, w.get("bias"))


def dysample_grid_sample(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """The authors' lowering: offsets, a normalised grid, one ``GridSample`` over ``N G`` images
    of ``C / G`` channels.

    The grid and the sampling are float32 whatever the graph's dtype (a float16 graph casts the
    offsets and ``x`` up and the result down), as PyTorch's autocast runs ``grid_sample``: a
    float16 grid ``2 px / W - 1`` is off by up to ``W / 2^12`` pixels (measured: 1.7e-2 of the
    output's scale at W = 128, 0.15 at W = 1024).

    Where the target does not run GridSample (``b.target.grid_sample`` false: TensorRT, which
    miscomputes it, and onnx2torch and the ``any`` intersection, which lack it) this writes the
    Gather form instead (:func:`dysample_gather`, the same numbers).

    Raises:
        SpecError: the builder's opset is older than 16 (GridSample does not exist there).
    """
    if not b.target.grid_sample:
        return dysample_gather(b, x, spec, w, interleave)
    if b.opset < GRID_SAMPLE_OPSET:
        raise SpecError(
            f"dysample: the GridSample form needs opset >= {GRID_SAMPLE_OPSET}, got opset "
            f"{b.opset}; use a newer opset or a target without GridSample (target='tensorrt')"
        )
    g, c = _groups(spec), spec.in_channels
    ox, oy = _split_xy(b, _offsets(b, x, spec, w), g)
    half = b.elem_type != TensorProto.FLOAT

    def f32(t: str) -> str:
        return b.op("Cast", [t], {"to": TensorProto.FLOAT}) if half else t

    hw = b.op("Shape", [x], {"start": 2})  # [H, W]
    h, wd = (b.op("Slice", [hw, int64_const(b, [i], "starts"), int64_const(b, [i + 1], "ends")])
             for i in (0, 1))  # [1] each

    def grid(offset: str, size: str, axis_shape: list[int]) -> str:
        # 2 (j + 1/2 + o) / S - 1 = (2 j + 1 - S) / S + o (2 / S), j the input pixel: integers
        # cast to float32 (no float constant, so a float16 graph holds float16 weights only)
        j = _input_index(b, size)  # [2S] int64
        two = _scalar_i(b, 2)
        s = b.op("Cast", [size], {"to": TensorProto.FLOAT})  # [1]
        numerator = b.op("Sub", [b.op("Add", [b.op("Mul", [j, two]), _scalar_i(b, 1)]), size])
        base = b.op("Div", [b.op("Cast", [numerator], {"to": TensorProto.FLOAT}), s])
        base = b.op("Reshape", [base, int64_const(b, axis_shape, "shape")])
        step = b.op("Div", [b.op("Cast", [two], {"to": TensorProto.FLOAT}), s])  # 2 / S
        return b.op("Add", [base, b.op("Mul", [f32(offset), step])])

    gx = grid(ox, wd, [1, 1, 1, -1])  # (N, G, 2H, 2W) float32
    gy = grid(oy, h, [1, 1, -1, 1])
    last = int64_const(b, [4], "axes")
    xy = b.op("Concat", [b.op("Unsqueeze", [gx, last]), b.op("Unsqueeze", [gy, last])],
              {"axis": 4})  # (N, G, 2H, 2W, 2): (x, y) as grid_sample reads them
    out_hw = b.op("Shape", [gx], {"start": 2})  # [2H, 2W]
    grid_shape = b.op("Concat", [int64_const(b, [-1], "shape"), out_hw, int64_const(b, [2], "shape")],
                      {"axis": 0})
    grid4 = b.op("Reshape", [xy, grid_shape])  # (N G, 2H, 2W, 2)
    xg = b.op("Reshape", [f32(x), int64_const(b, [-1, c // g, 0, 0], "shape")])  # (N G, C/G, H, W)
    mode = "linear" if b.opset >= 20 else "bilinear"  # GridSample-20 renamed the mode
    y = b.op("GridSample", [xg, grid4],
             {"align_corners": 0, "mode": mode, "padding_mode": "border"})  # (N G, C/G, 2H, 2W)
    if half:
        y = b.op("Cast", [y], {"to": b.elem_type})
    y_shape = b.op("Concat", [int64_const(b, [-1, c], "shape"), out_hw], {"axis": 0})
    return _finish(b, b.op("Reshape", [y, y_shape]), w)  # (N, C, 2H, 2W)


def _scalar_i(b: GraphBuilder, v: int) -> str:
    """A ``[1]`` int64 constant (broadcasts like a scalar)."""
    return b.initializer(np.array([v], dtype=np.int64), "int", cast=False)


def _scalar_f(b: GraphBuilder, v: float) -> str:
    """A ``[1]`` constant of the graph's float dtype."""
    return b.initializer(np.array([v], dtype=np.float64), "float")


def dysample_gather(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Bilinear sampling without GridSample: four ``Gather`` of whole pixels and a weighted sum.

    For output pixel ``(2i + a, 2j + b)`` of group ``g`` with offsets ``(ox, oy)`` (in input
    pixels, ``init_pos`` included), the sampled input position is ``(j + ox, i + oy)``;
    ``u0 = j + floor(ox)``, ``fx = ox - floor(ox)`` (likewise ``v0``, ``fy``), and::

        y = (1 - fy)(1 - fx) x[v0, u0] + (1 - fy) fx x[v0, u1] + fy (1 - fx) x[v1, u0]
            + fy fx x[v1, u1],   u1 = u0 + 1, v1 = v0 + 1

    with every neighbour index clamped to ``[0, W - 1]`` (``[0, H - 1]``), summed as
    ``sum_k weight_k x[neighbour_k]``. Clamping the four
    indices equals ``padding_mode="border"`` (clamping the position): past an edge both
    neighbours are the edge pixel. The pixels of group ``g`` are rows of ``x`` as
    ``[N G H W, C/G]`` (flat index ``(n G + g) H W + v W + u``).
    """
    g, c = _groups(spec), spec.in_channels
    cg = c // g
    ox, oy = _split_xy(b, _offsets(b, x, spec, w), g)
    shape_x = b.op("Shape", [x])  # [N, C, H, W]
    n, h, wd = (b.op("Slice", [shape_x, int64_const(b, [i], "starts"), int64_const(b, [i + 1], "ends")])
                for i in (0, 2, 3))  # [1] each, int64

    def floor_frac(o: str) -> tuple[str, str]:
        f = b.op("Floor", [o])
        return b.op("Cast", [f], {"to": TensorProto.INT64}), b.op("Sub", [o, f])  # shift, fraction

    dx, fx = floor_frac(ox)  # (N, G, 2H, 2W)
    dy, fy = floor_frac(oy)
    cols = b.op("Reshape", [_input_index(b, wd), int64_const(b, [1, 1, 1, -1], "shape")])  # [2W]
    rows = b.op("Reshape", [_input_index(b, h), int64_const(b, [1, 1, -1, 1], "shape")])  # [2H]
    one, zero = _scalar_i(b, 1), _scalar_i(b, 0)
    w_last = b.op("Sub", [wd, one])
    h_last = b.op("Sub", [h, one])

    def clamp(t: str, top: str) -> str:
        return b.op("Max", [b.op("Min", [t, top]), zero])

    u0 = b.op("Add", [cols, dx])
    v0 = b.op("Add", [rows, dy])
    u = [clamp(u0, w_last), clamp(b.op("Add", [u0, one]), w_last)]
    v = [clamp(v0, h_last), clamp(b.op("Add", [v0, one]), h_last)]
    # Row offset of image n, group g in the flat [N G H W, C/G] pixels: (n G + g) H W.
    hw_size = b.op("Mul", [h, wd])  # [1]
    ng = b.op("Mul", [n, _scalar_i(b, g)])
    start = _range(b, ng)  # [N G]
    base = b.op("Reshape", [b.op("Mul", [start, hw_size]), int64_const(b, [-1, g, 1, 1], "shape")])
    rows_at = [b.op("Add", [base, b.op("Mul", [vv, wd])]) for vv in v]  # (N, G, 2H, 2W)
    pixels = b.op("Transpose", [b.op("Reshape", [x, int64_const(b, [0, g, cg, -1], "shape")])],
                  {"perm": [0, 1, 3, 2]})  # (N, G, H W, C/G)
    pixels = b.op("Reshape", [pixels, int64_const(b, [-1, cg], "shape")])  # (N G H W, C/G)
    last = int64_const(b, [4], "axes")
    one_f = _scalar_f(b, 1.0)
    wx = [b.op("Sub", [one_f, fx]), fx]  # (N, G, 2H, 2W): weights of u0, u1
    wy = [b.op("Sub", [one_f, fy]), fy]
    # Accumulate weight x neighbour one neighbour at a time: at most three tensors of the
    # output's size live at once (sum, neighbour, product).
    y5 = ""
    for i in (0, 1):
        for j in (0, 1):
            weight = b.op("Unsqueeze", [b.op("Mul", [wy[i], wx[j]]), last])  # (N, G, 2H, 2W, 1)
            near = b.op("Gather", [pixels, b.op("Add", [rows_at[i], u[j]])], {"axis": 0})
            term = b.op("Mul", [near, weight])  # (N, G, 2H, 2W, C/G)
            y5 = term if not y5 else b.op("Add", [y5, term])
    y5 = b.op("Transpose", [y5], {"perm": [0, 1, 4, 2, 3]})  # (N, G, C/G, 2H, 2W)
    out_hw = b.op("Shape", [fx], {"start": 2})  # [2H, 2W]
    y_shape = b.op("Concat", [int64_const(b, [0, c], "shape"), out_hw], {"axis": 0})
    return _finish(b, b.op("Reshape", [y5, y_shape]), w)  # (N, C, 2H, 2W)


def _read_weights(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, int, int, dict[str, int]]:
    """``offset_weight [8 G, C, 1, 1]`` -> ``(C, C, 1, {"groups": G})``, G dividing C."""
    shape = tuple(shapes["offset_weight"])
    if len(shape) != 4 or shape[0] % 8 or not shape[0] or shape[1] % (shape[0] // 8):
        raise WeightError(
            f"dysample: offset_weight must be [8 G, C, 1, 1] with G groups dividing C (the "
            f"authors' default G = 4: [32, C, 1, 1]), got {list(shape)}"
        )
    cin = int(shape[1])
    return cin, cin, int(shape[2]), {"groups": int(shape[0]) // 8}


def _weight_shapes(
    cin: int, c: int, k: int, *, groups: int | None = None
) -> dict[str, tuple[int, ...]]:
    groups = ref.dysample_groups(cin) if groups is None else groups
    if cin % groups:
        raise SpecError(f"dysample: groups={groups} must divide the {cin} channels")
    return {"offset_weight": (8 * groups, cin, 1, 1), "offset_bias": (8 * groups,)}


register_kind(KindInfo(
    name="dysample",
    title="DySample (x2, lp, static scope)",
    default_kernel=1,
    min_kernel=1,
    max_kernel=1,
    odd_kernel=True,
    weight_shapes=_weight_shapes,
    # The offset conv (8G x C per input pixel) and 4 taps per output value (4 per input pixel).
    macs_per_input_pixel=lambda cin, c, k, *, groups: 8 * groups * cin + 16 * cin,
    reference=ref.dysample,
    # Gather first: on onnxruntime (CPU, 1 thread) 36 ms against GridSample's 89 ms at
    # 1 x 64 x 128 x 128, and every consumer runs it.
    emitters={"efficient": dysample_gather, "faithful": dysample_grid_sample},
    channels=lambda shape: (shape[1], shape[1]),  # offset_weight [8 G, C, 1, 1]
    in_per_out=1,
    # sampling groups: the authors' default 4, or the largest of 2 and 1 that divides C
    params={"groups": lambda cin, c, k: ref.dysample_groups(cin)},
    read_weights=_read_weights,
    aliases=("dy_sample",),
    paper="Liu et al. 2023, Learning to Upsample by Learning to Sample (authors' DySample, "
          "style='lp', dyscope=False)",
))
