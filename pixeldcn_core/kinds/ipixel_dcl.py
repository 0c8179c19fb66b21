"""iPixelDCL (Gao et al. 2017, Eqn. 2 with F3, F4 computed in parallel; the authors' ``ipixel_dcl``).

``x [N, Cin, H, W]`` -> ``y [N, C, 2H, 2W]``; ``w1 [C, Cin, k, k]``, ``w2 [C, Cin + C, k, k]``,
``w3 [2C, Cin + 2C, k, k]``. ``F1 = conv(x, w1)``, ``F2 = conv([x, F1], w2)``,
``F3, F4 = split(conv([x, F1, F2], w3))``; ``y00 = F1``, ``y11 = F2``, ``y10 = F3``,
``y01 = F4`` (reference: :func:`pixeldcn_core.reference.ipixel_dcl`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import reference as ref
from .._fold import MIN_SCALE
from .._specs import KindInfo, register_kind
from ._ops import add_bias, bias4d, conv, int64_const, interleave_phases, same_pads, zeros_like

if TYPE_CHECKING:
    from .._builder import GraphBuilder
    from .._specs import LayerSpec

__all__ = ["INFO", "fold_ipixel_dcl", "ipixel_dcl_efficient", "ipixel_dcl_faithful"]


def _f12(b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray]
         ) -> tuple[str, str, str]:
    k = spec.k
    f1 = conv(b, x, w["w1"], same_pads(k), hint="w1")
    f2 = conv(b, b.op("Concat", [x, f1], {"axis": 1}), w["w2"], same_pads(k), hint="w2")
    x12 = b.op("Concat", [x, f1, f2], {"axis": 1})  # (N, Cin + 2C, H, W)
    return f1, f2, x12


def ipixel_dcl_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """The authors' code: split conv3 into F3, F4, dilate each map to 2H x 2W at its phase with
    zeros, and add the four."""
    k, c, bias = spec.k, spec.out_channels, w.get("bias")
    f1, f2, x12 = _f12(b, x, spec, w)
    f34 = conv(b, x12, w["w3"], same_pads(k), hint="w3")
    f3, f4 = b.op("Split", [f34, int64_const(b, [c, c], "split")], {"axis": 1}, num_outputs=2)
    zeros = zeros_like(b, f1)
    dilated = []
    for block, f in enumerate([f1, f4, f3, f2]):  # phases 00, 01, 10, 11
        phases = [zeros] * 4
        phases[block] = f
        dilated.append(interleave_phases(b, phases, interleave))
    return add_bias(b, b.op("Sum", dilated), bias)


def ipixel_dcl_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """F1, F2 and one conv for (F4, F3) at input resolution, interleaved."""
    k, c, bias = spec.k, spec.out_channels, w.get("bias")
    f1, f2, x12 = _f12(b, x, spec, w)
    # Reorder conv3's output channels to (F4, F3) = (y01, y10), so one Concat with
    # F1 and F2 gives the phase order of DepthToSpace without a Split.
    w3 = np.concatenate([w["w3"][c:], w["w3"][:c]], axis=0)
    b34 = None if bias is None else np.concatenate([bias, bias])
    f43 = conv(b, x12, w3, same_pads(k), b34, hint="w3")  # (N, 2C, H, W): y01, y10
    y00, y11 = f1, f2
    if bias is not None:
        b4 = bias4d(b, bias)
        y00, y11 = b.op("Add", [f1, b4]), b.op("Add", [f2, b4])
    if interleave == "depth_to_space":
        return interleave_phases(b, [y00, f43, y11], interleave)
    y01, y10 = b.op("Split", [f43, int64_const(b, [c, c], "split")], {"axis": 1}, num_outputs=2)
    return interleave_phases(b, [y00, y01, y10, y11], interleave)


def fold_ipixel_dcl(spec: LayerSpec, w: Mapping[str, np.ndarray], s: np.ndarray
                    ) -> dict[str, np.ndarray] | None:
    """w2 reads [x, F1]; w3 reads [x, F1, F2] and writes [F3, F4] (both scaled by s)."""
    if np.any(np.abs(s) < MIN_SCALE):
        return None
    cin, c = spec.in_channels, spec.out_channels
    ratio = s[:, None] / s[None, :]
    w2 = np.array(w["w2"], copy=True)
    w2[:, :cin] *= s[:, None, None, None]
    w2[:, cin:] *= ratio[:, :, None, None]
    s2 = np.concatenate([s, s])
    ratio2 = s2[:, None] / s[None, :]  # (2C, C)
    w3 = np.array(w["w3"], copy=True)
    w3[:, :cin] *= s2[:, None, None, None]
    w3[:, cin : cin + c] *= ratio2[:, :, None, None]
    w3[:, cin + c :] *= ratio2[:, :, None, None]
    return {"w1": w["w1"] * s[:, None, None, None], "w2": w2, "w3": w3}


INFO = register_kind(KindInfo(
    name="ipixel_dcl",
    title="iPixelDCL",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {
        "w1": (c, cin, k, k),
        "w2": (c, cin + c, k, k),
        "w3": (2 * c, cin + 2 * c, k, k),
    },
    macs_per_input_pixel=lambda cin, c, k: (
        k * k * (c * cin + c * (cin + c) + 2 * c * (cin + 2 * c))
    ),
    reference=ref.ipixel_dcl,
    emitters={"efficient": ipixel_dcl_efficient, "faithful": ipixel_dcl_faithful},
    interleaves=True,
    fold=fold_ipixel_dcl,
    # "bilinear" (artifact-free start, exporters _inits) is the default: in `pixeldcn bench quality`
    # it trained at least as well as He init on SR x2, SR x4 and the x4 decoder (3 seeds).
    inits=("bilinear", "default"),
    aliases=("ipixeldcl",),
    paper="Gao et al. 2017, Eqn. 2 with F3, F4 in parallel (authors' ipixel_dcl)",
))
