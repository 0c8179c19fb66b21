"""Emit one up-sampling layer into a graph: the registry's emitter for its kind and form.

Every emitter (``KindInfo.emitters``, one module per kind in :mod:`pixeldcn_core.kinds`) takes a
:class:`GraphBuilder`, the name of the input tensor ``x [N, Cin, H, W]``, the layer spec, its
checked weights and the interleave, and returns the name of ``y [N, C, s*H, s*W]`` (``s`` the
kind's ``scale``).

The efficient forms compute every output phase at input resolution and interleave the phases in
one of two ways (:data:`INTERLEAVES`, written by ``pixeldcn_core.kinds._ops.interleave_phases``):
``"depth_to_space"`` (default; one DepthToSpace DCR) or ``"concat"`` (Unsqueeze, Concat and
Reshape only: faster on onnxruntime's CPU provider). Kinds that do not interleave phases
(``KindInfo.interleaves`` false: sub-pixel conv's DepthToSpace CRD, DCL's ConvTranspose) ignore it.

The builder's target (``pixeldcn_core.TARGETS``) picks equivalent forms a consumer supports: for
a target without DCR, ``"depth_to_space"`` reorders the channels to CRD first (Reshape,
Transpose, Reshape); for one without asymmetric ConvTranspose pads, odd-kernel DCL is a
symmetric ConvTranspose and a Slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ._errors import SpecError
from ._specs import LayerSpec
from ._targets import INTERLEAVES, check_interleave

if TYPE_CHECKING:
    from ._builder import GraphBuilder

__all__ = ["INTERLEAVES", "check_form", "check_interleave", "emit_layer"]


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
            onnxruntime, ``concat`` for onnx2torch and ``any``). Kinds that do not interleave
            phases ignore it.
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

