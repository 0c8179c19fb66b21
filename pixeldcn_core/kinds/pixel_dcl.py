"""PixelDCL (Gao et al. 2017, Eqn. 3 and Figure 6; the authors' ``pixel_dcl``).

``x [N, Cin, H, W]`` -> ``y [N, C, 2H, 2W]``; ``w1 [C, Cin, k, k]``, ``w2, w3 [C, C, k, k]``, k odd.
``F1 = conv(x, w1)``, ``F2 = conv(F1, w2)``; S interleaves F1 (phase 00) and F2 (phase 11) with
zeros; ``y = S + conv(S, w3 * mask)`` (reference: :func:`pixeldcn_core.reference.pixel_dcl`).

Efficient form: ``y00 = F1``, ``y11 = F2``, and ``y01``, ``y10`` are four sub-kernel convs of
``w3`` at input resolution over F1 and F2 (:func:`pixel_dcl_phase_taps`; the masked taps are
never multiplied). Faithful form: the figure node for node, the masked conv at 2H x 2W.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import reference as ref
from .._fold import MIN_SCALE
from .._specs import KindInfo, register_kind
from ._ops import Taps, bias4d, conv, interleave_phases, phase_conv, same_pads, zeros_like

if TYPE_CHECKING:
    from .._builder import GraphBuilder
    from .._specs import LayerSpec

__all__ = [
    "INFO",
    "fold_pixel_dcl",
    "pixel_dcl_efficient",
    "pixel_dcl_faithful",
    "pixel_dcl_phase_taps",
]


def _pixel_taps(k: int, parity: int, shift: int) -> Taps:
    """Taps ``r`` with ``(r - k//2) % 2 == parity`` and their offsets ``(r - k//2 + shift) / 2``."""
    p = k // 2
    return [(r, (r - p + shift) // 2) for r in range(k) if (r - p) % 2 == parity]


def pixel_dcl_phase_taps(k: int) -> dict[str, tuple[Taps, Taps]]:
    """For PixelDCL: which taps of ``w3`` reach ``y01`` and ``y10`` from F1 and from F2.

    Derived from ``y = S + conv(S, w3 * mask)`` with F1 at the even-even and F2 at the odd-odd
    positions of S. For k = 3 this is docs/design.md's four-tap formulas, e.g.
    ``y01[i,j] = w3[1,0].F1[i,j] + w3[1,2].F1[i,j+1] + w3[0,1].F2[i-1,j] + w3[2,1].F2[i,j]``.
    """
    return {
        "01_from_f1": (_pixel_taps(k, 0, 0), _pixel_taps(k, 1, 1)),
        "01_from_f2": (_pixel_taps(k, 1, -1), _pixel_taps(k, 0, 0)),
        "10_from_f1": (_pixel_taps(k, 1, 1), _pixel_taps(k, 0, 0)),
        "10_from_f2": (_pixel_taps(k, 0, 0), _pixel_taps(k, 1, -1)),
    }


def _f12(b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray]) -> tuple[str, str]:
    f1 = conv(b, x, w["w1"], same_pads(spec.k), hint="w1")  # (N, C, H, W)
    f2 = conv(b, f1, w["w2"], same_pads(spec.k), hint="w2")  # (N, C, H, W)
    return f1, f2


def pixel_dcl_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Figure 6: S interleaves F1 and F2 with zeros; ``y = S + conv(S, w3 * mask)`` at 2H x 2W."""
    k, bias = spec.k, w.get("bias")
    f1, f2 = _f12(b, x, spec, w)
    zeros = zeros_like(b, f1)
    s = interleave_phases(b, [f1, zeros, zeros, f2], interleave)  # (N, C, 2H, 2W)
    # The conv's bias reaches every output pixel once: y = S + (M + bias).
    masked = w["w3"] * ref.pixel_dcl_mask(k).astype(w["w3"].dtype)
    m = conv(b, s, masked, same_pads(k), bias, hint="w3")
    return b.op("Add", [s, m])


def pixel_dcl_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """F1, F2 and four sub-kernel convs of ``w3`` (masked taps never multiplied), interleaved."""
    k, bias = spec.k, w.get("bias")
    f1, f2 = _f12(b, x, spec, w)
    taps = pixel_dcl_phase_taps(k)
    w3 = w["w3"]
    y01 = b.op("Add", [
        phase_conv(b, f1, w3, *taps["01_from_f1"], bias),
        phase_conv(b, f2, w3, *taps["01_from_f2"], None),
    ])
    y10 = b.op("Add", [
        phase_conv(b, f1, w3, *taps["10_from_f1"], bias),
        phase_conv(b, f2, w3, *taps["10_from_f2"], None),
    ])
    y00, y11 = f1, f2
    if bias is not None:
        b4 = bias4d(b, bias)
        y00, y11 = b.op("Add", [f1, b4]), b.op("Add", [f2, b4])
    return interleave_phases(b, [y00, y01, y10, y11], interleave)


def fold_pixel_dcl(spec: LayerSpec, w: Mapping[str, np.ndarray], s: np.ndarray
                   ) -> dict[str, np.ndarray] | None:
    """F1 and F2 feed w2 and w3: those divide by the scale of the channel they read."""
    if np.any(np.abs(s) < MIN_SCALE):
        return None
    ratio = s[:, None] / s[None, :]  # (C_out, C_in): scale[o] / scale[i]
    return {
        "w1": w["w1"] * s[:, None, None, None],
        "w2": w["w2"] * ratio[:, :, None, None],
        "w3": w["w3"] * ratio[:, :, None, None],
    }


def _mask_taps(k: int) -> int:
    """Number of taps of a k x k kernel with r + c odd (the PixelDCL mask)."""
    return (k * k) // 2


INFO = register_kind(KindInfo(
    name="pixel_dcl",
    title="PixelDCL",
    default_kernel=3,
    min_kernel=3,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"w1": (c, cin, k, k), "w2": (c, c, k, k), "w3": (c, c, k, k)},
    macs_per_input_pixel=lambda cin, c, k: (
        k * k * cin * c + k * k * c * c + 2 * _mask_taps(k) * c * c
    ),
    reference=ref.pixel_dcl,
    emitters={"efficient": pixel_dcl_efficient, "faithful": pixel_dcl_faithful},
    interleaves=True,
    fold=fold_pixel_dcl,
    # "bilinear" (artifact-free start, exporters _inits) is the default: in `pixeldcn bench quality`
    # it trained at least as well as He init on SR x2, SR x4 and the x4 decoder (3 seeds).
    inits=("bilinear", "default"),
    aliases=("pixeldcl",),
    paper="Gao et al. 2017, Eqn. 3 and Figure 6 (authors' pixel_dcl)",
))
