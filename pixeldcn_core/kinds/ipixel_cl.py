"""iPixelCL (the authors' ``ipixel_cl``): ONNX emitters, fold, MAC count and registry entry.

``x [N, Cin, H, W]`` (H, W even) -> ``y [N, C, H, W]``: the layer keeps the size (registry
``scale=1``, ``size_multiple=2``). Its definition (:func:`pixeldcn_core.reference.ipixel_cl`)
builds four H x W maps D1..D4, each non-zero on one phase ``(a, b)`` of the output, from
stride-2 TF-'SAME' convs of ``concat(shift(x, a, b), <earlier maps>)``.

Efficient form. Write ``T1..T4`` for the four stride-2 conv outputs (``[N, C, H/2, W/2]``), so
``y00 = T1, y11 = T2, y10 = T3, y01 = T4``. Each conv reads two things:

- the shifted input: ``conv_s2(shift(x, a, b), w[:, :Cin])``, a stride-2 Conv of the slice
  ``x[.., a:, b:]`` with ``a`` (``b``) more zero rows (columns) of end padding. (Fusing the four
  into one Conv with a ``(k + 1) x (k + 1)`` kernel holding each ``w`` at its offset was tried:
  7/16 of its taps are zeros for k = 3, and it measured slower than the definition's own form.)
- the sparse maps D1 (T1 on phase 00) and S (T1 on 00, T2 on 11): a stride-2 conv over a map that
  is non-zero on one phase only is a stride-1 conv at H/2 x W/2 with the taps of that phase
  (:func:`phase_taps`): 3/4 of D1's taps and 1/2 of S's taps are never multiplied.

The four phases are interleaved as every up-sampling kind does (DepthToSpace or concat). Both
forms end with a Reshape to the input's H x W: free for even sizes, a run-time error for odd ones
(ONNX has no assert; without it an odd input would give an (H - 1) x (W - 1) output).
Faithful form: the definition node for node (Slice + Pad shifts, place() by interleaving with
zeros, stride-2 Convs over the H x W concatenations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import reference as ref
from .._fold import MIN_SCALE
from .._specs import KindInfo, register_kind
from ..reference import same_padding_s2
from ._ops import Taps, add_bias, int64_const, interleave_phases, phase_conv, zeros_like

if TYPE_CHECKING:
    from .._builder import GraphBuilder
    from .._specs import LayerSpec

__all__ = [
    "INFO",
    "ipixel_cl_efficient",
    "ipixel_cl_faithful",
    "ipixel_cl_fold",
    "ipixel_cl_macs",
    "ipixel_cl_weight_shapes",
    "phase_taps",
]

_END = np.iinfo(np.int64).max


def ipixel_cl_weight_shapes(cin: int, c: int, k: int) -> dict[str, tuple[int, ...]]:
    """w1 reads x; w2 reads [shift(x), D1]; w3, w4 read [shift(x), S]."""
    return {"w1": (c, cin, k, k), "w2": (c, cin + c, k, k), "w3": (c, cin + c, k, k),
            "w4": (c, cin + c, k, k)}


def phase_taps(k: int, parity: int) -> Taps:
    """Taps ``r`` of a stride-2 TF-'SAME' conv that land on input rows of ``parity``, with their
    offsets at half resolution: output row i reads row ``2 (i + offset) + parity``."""
    begin = same_padding_s2(k)[0]
    return [(r, (r - begin - parity) // 2) for r in range(k) if (r - begin) % 2 == parity]


def ipixel_cl_macs(cin: int, c: int, k: int) -> int:
    """Useful MACs per input pixel: per H/2 x W/2 output position, four ``C x Cin x k^2`` convs
    of the shifted input, plus w2 over D1's phase-00 taps and w3, w4 over S's 00 and 11 taps
    (integer division by 4 input pixels; off by less than one MAC)."""
    ne, no = len(phase_taps(k, 0)), len(phase_taps(k, 1))
    return (4 * c * cin * k * k + c * c * (3 * ne * ne + 2 * no * no)) // 4


def _slice(b: GraphBuilder, x: str, a: int, bb: int) -> str:
    """``x[..., a:, bb:]``."""
    return b.op("Slice", [x, int64_const(b, [a, bb], "starts"), int64_const(b, [_END, _END], "ends"),
                          int64_const(b, [2, 3], "axes")])


def _conv_s2(b: GraphBuilder, x: str, w: np.ndarray, pads: list[int], hint: str) -> str:
    k = int(w.shape[2])
    return b.op("Conv", [x, b.initializer(w, hint)],
                {"kernel_shape": [k, k], "pads": pads, "strides": [2, 2]})


def _shifted_input_conv(b: GraphBuilder, x: str, wx: np.ndarray, a: int, bb: int) -> str:
    """``conv_s2(shift(x, a, b), wx)`` at ``[N, C, H/2, W/2]``: a stride-2 Conv of the slice
    ``x[.., a:, b:]``, its end padded by ``a`` (resp. ``b``) more rows (columns) of zeros, which
    stand for the shift's zeros. Every tap of ``wx`` is used: no kernel padding."""
    begin, end = same_padding_s2(int(wx.shape[2]))
    src = x if (a, bb) == (0, 0) else _slice(b, x, a, bb)  # (N, Cin, H - a, W - b)
    return _conv_s2(b, src, np.ascontiguousarray(wx), [begin, begin, end + a, end + bb], "wx")


def _same_size(b: GraphBuilder, x: str, y: str) -> str:
    """``y`` reshaped to x's height and width: a no-op for even sizes, and a run-time error
    (Reshape cannot change the element count) for odd ones, where the phases would otherwise
    silently give an (H - 1) x (W - 1) output."""
    nc = b.op("Shape", [y], {"end": 2})  # [N, C]
    hw = b.op("Shape", [x], {"start": 2})  # [H, W]
    return b.op("Reshape", [y, b.op("Concat", [nc, hw], {"axis": 0})])


def ipixel_cl_efficient(b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray],
                        interleave: str) -> str:
    """Stride-2 convs of x at half resolution, the sparse maps' taps only, four phases
    interleaved (see the module docstring)."""
    k, cin, c, bias = spec.k, spec.in_channels, spec.out_channels, w.get("bias")
    even, odd = phase_taps(k, 0), phase_taps(k, 1)
    t1 = _shifted_input_conv(b, x, w["w1"], 0, 0)  # (N, C, h, w)
    # T1 sits on phase 00 of D1 (read by w2) and of S (read by w4, w3): the even taps.
    w_t1 = np.concatenate([w["w2"][:, cin:], w["w4"][:, cin:], w["w3"][:, cin:]], axis=0)
    z = phase_conv(b, t1, w_t1, even, even, None)  # (N, 3C, h, w)
    z2, z43 = b.op("Split", [z, int64_const(b, [c, 2 * c], "split")], {"axis": 1}, num_outputs=2)
    t2 = b.op("Add", [_shifted_input_conv(b, x, w["w2"][:, :cin], 1, 1), z2])
    x43 = b.op("Concat", [_shifted_input_conv(b, x, w["w4"][:, :cin], 0, 1),
                          _shifted_input_conv(b, x, w["w3"][:, :cin], 1, 0)], {"axis": 1})
    p43 = b.op("Add", [x43, z43])  # (N, 2C, h, w): T4, T3 so far
    if odd:  # T2 sits on phase 11 of S: the odd taps of w4, w3
        w_t2 = np.concatenate([w["w4"][:, cin:], w["w3"][:, cin:]], axis=0)
        p43 = b.op("Add", [p43, phase_conv(b, t2, w_t2, odd, odd, None)])  # (N, 2C, h, w)
    if interleave == "depth_to_space":
        y = interleave_phases(b, [t1, p43, t2], interleave)  # blocks 00, (01, 10), 11
    else:
        t4, t3 = b.op("Split", [p43, int64_const(b, [c, c], "split")], {"axis": 1},
                      num_outputs=2)
        y = interleave_phases(b, [t1, t4, t3, t2], interleave)
    return _same_size(b, x, add_bias(b, y, bias))


def ipixel_cl_faithful(b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray],
                       interleave: str) -> str:
    """The definition node for node: H x W maps D1..D4, stride-2 convs over concatenations."""
    k, bias = spec.k, w.get("bias")
    begin, end = same_padding_s2(k)
    pads = [begin, begin, end, end]

    def shift(a: int, bb: int) -> str:  # x[.., i + a, j + b], zero past the bottom/right
        pad = int64_const(b, [0, 0, 0, 0, 0, 0, a, bb], "pads")
        return b.op("Pad", [_slice(b, x, a, bb), pad])

    def place(t: str, a: int, bb: int) -> str:  # t on phase (a, b) of the H x W map
        phases = [zeros] * 4
        phases[2 * a + bb] = t
        return interleave_phases(b, phases, interleave)

    t1 = _conv_s2(b, x, w["w1"], pads, "w1")
    zeros = zeros_like(b, t1)
    d1 = place(t1, 0, 0)
    t2 = _conv_s2(b, b.op("Concat", [shift(1, 1), d1], {"axis": 1}), w["w2"], pads, "w2")
    d2 = place(t2, 1, 1)
    s = b.op("Add", [d1, d2])
    t3 = _conv_s2(b, b.op("Concat", [shift(1, 0), s], {"axis": 1}), w["w3"], pads, "w3")
    t4 = _conv_s2(b, b.op("Concat", [shift(0, 1), s], {"axis": 1}), w["w4"], pads, "w4")
    y = b.op("Sum", [d1, d2, place(t3, 1, 0), place(t4, 0, 1)])
    return _same_size(b, x, add_bias(b, y, bias))


def ipixel_cl_fold(spec: LayerSpec, w: Mapping[str, np.ndarray], s: np.ndarray
                   ) -> dict[str, np.ndarray] | None:
    """``s * ipixel_cl(x)``: every phase T1..T4 scaled by s; the parts of w2..w4 that read T1, T2
    (through D1, S) divide by the scale of the channel they read."""
    if np.any(np.abs(s) < MIN_SCALE):
        return None
    cin = spec.in_channels
    ratio = s[:, None] / s[None, :]  # (C_out, C_in): s[o] / s[i]
    out = {"w1": w["w1"] * s[:, None, None, None]}
    for name in ("w2", "w3", "w4"):
        wn = np.array(w[name], copy=True)
        wn[:, :cin] *= s[:, None, None, None]
        wn[:, cin:] *= ratio[:, :, None, None]
        out[name] = wn
    return out


INFO = register_kind(KindInfo(
    name="ipixel_cl",
    title="iPixelCL (size-keeping; authors' ipixel_cl)",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=False,
    weight_shapes=ipixel_cl_weight_shapes,
    macs_per_input_pixel=ipixel_cl_macs,
    reference=ref.ipixel_cl,
    emitters={"efficient": ipixel_cl_efficient, "faithful": ipixel_cl_faithful},
    interleaves=True,
    fold=ipixel_cl_fold,
    aliases=("ipixelcl",),
    scale=1,
    size_multiple=2,
    paper="Gao et al. 2017, the authors' code (ipixel_cl: conv1, conv2, conv4, conv5 = w1..w4)",
))
