"""Export targets: which ONNX forms a consumer supports, so that one option picks forms it runs.

Every emitter writes standard operators, but consumers implement different subsets of them
(measured with ``pixeldcn check``, README "Runtimes"):

- onnx2torch (ONNX -> PyTorch) converts ``DepthToSpace`` in CRD mode only, ``ConvTranspose``
  with symmetric pads only, and no op whose version changed at opset 18 (``Split``, ``Resize``,
  ``Pad``, ``Reduce*``);
- onnx2torch has no ``GridSample`` converter, and onnx's ReferenceEvaluator (1.23) runs
  GridSample only with the opset-20 mode names (``"linear"``), not GridSample-16's
  ``"bilinear"``;
- TensorRT miscomputes ``GridSample``: at opset 20 its ONNX parser does not know the renamed
  ``"linear"`` mode and silently samples nearest (NVIDIA/TensorRT#4646, TensorRT 10.13;
  onnx/onnx-tensorrt#1060), and with explicit typing it is wrong since 10.14
  (pytorch/TensorRT#4074);
- onnxruntime, OpenVINO and tract run every form written here.

A :class:`Target` states those facts; the emitters read them from the
:class:`~pixeldcn_core.GraphBuilder` (``builder.target``) and write, where a fact is false,
an equivalent form (the same numbers):

- ``interleave="concat"`` by default (no DepthToSpace); an explicit ``"depth_to_space"``
  becomes ``Reshape/Transpose`` to CRD order + ``DepthToSpace(mode="CRD")``;
- DCL with an odd kernel (TF 'SAME' pads (begin, end) with begin < end): a ``ConvTranspose``
  with pads ``begin`` on both sides, then a ``Slice`` dropping the last ``end - begin`` rows
  and columns;
- the target's ``max_opset`` (17 for onnx2torch and any) when no opset is given, instead of
  :data:`~pixeldcn_core.DEFAULT_OPSET` (18), and an error for a newer one;
- DySample's ``GridSample`` as four ``Gather`` of the neighbours and a bilinear weighted sum;
- (exporters) ``Reshape(allowzero=1)`` with a constant shape holding no zero as ``allowzero=0``;
- (exporters, tract and any) ``Expand(x, shape)`` as ``Add(x, ConstantOfShape(shape, 0))``.

``"any"`` is the intersection (:func:`intersection`, derived from :data:`CONSUMERS`): a model every
consumer above runs. ``"onnxruntime"`` (the default) is the fastest form for onnxruntime, i.e.
what the emitters always wrote. Each consumer has one name, shared with ``pixeldcn check
--runtimes``; ``"ort"`` is still accepted for onnxruntime (:data:`CONSUMER_ALIASES`).
``"tensorrt"`` states the one TensorRT fact above (no GridSample: TensorRT has miscomputed it); it
is a target only, not a consumer: ``pixeldcn check`` does not run TensorRT (it needs an NVIDIA GPU),
and ``"any"`` does not include it.
"""

from __future__ import annotations

import dataclasses

from ._errors import SpecError
from ._opsets import DEFAULT_OPSET, check_opset

__all__ = [
    "CONSUMERS",
    "CONSUMER_ALIASES",
    "DEFAULT_TARGET",
    "INTERLEAVES",
    "TARGETS",
    "Target",
    "check_interleave",
    "consumer_name",
    "get_target",
    "intersection",
    "resolve_target",
]

#: How the efficient forms interleave four phases into the 2x output: ``"depth_to_space"`` (one
#: DepthToSpace) or ``"concat"`` (copies and reshapes only; see ``pixeldcn_core.kinds._ops``).
INTERLEAVES = ("depth_to_space", "concat")


def check_interleave(interleave: str) -> str:
    if interleave not in INTERLEAVES:
        raise SpecError(f"interleave={interleave!r}; expected one of {', '.join(INTERLEAVES)}")
    return interleave


@dataclasses.dataclass(frozen=True)
class Target:
    """What one ONNX consumer supports of the forms pixeldcn writes.

    Attributes:
        name: the name ``target=`` takes.
        title: the consumer, for messages.
        depth_to_space_dcr: implements ``DepthToSpace(mode="DCR")``.
        asymmetric_conv_transpose: implements ``ConvTranspose`` with begin pads != end pads.
        max_opset: the newest default-domain opset it converts (``None``: no limit).
        interleave: the interleave used when none is asked for.
        reshape_allowzero: implements ``Reshape(allowzero=1)`` (which the PyTorch exporter
            writes; the exporters rewrite it to ``allowzero=0`` where the shape is a constant
            without zeros, the same op then).
        grid_sample: runs ``GridSample`` (opset 16+, bilinear, border) as ONNX defines it. Where
            false, DySample's sampling is written as Gather + bilinear weights (the same numbers).
        expand: runs ``Expand`` wherever it appears. tract 0.23's optimiser fails on an Expand
            feeding a Concat and a 1 x 1 Conv (DeepLab's ASPP image pooling: "Trying to
            substitute a 1,256,8,8 by 1,256,1,1"); the exporters then write the broadcast as
            ``Add(x, ConstantOfShape(shape, 0))``.
    """

    name: str
    title: str
    depth_to_space_dcr: bool = True
    asymmetric_conv_transpose: bool = True
    max_opset: int | None = None
    interleave: str = "depth_to_space"
    reshape_allowzero: bool = True
    expand: bool = True
    grid_sample: bool = True


#: One target per ONNX consumer pixeldcn runs; their names are also the names
#: ``pixeldcn check --runtimes`` takes (``exporters.runtimes.RUNTIMES``): one key per consumer.
CONSUMERS: tuple[Target, ...] = (
    Target("onnxruntime", "onnxruntime"),
    Target("reference", "onnx ReferenceEvaluator", grid_sample=False),
    Target("openvino", "OpenVINO"),
    Target("tract", "tract", expand=False),
    Target("onnx2torch", "onnx2torch", depth_to_space_dcr=False,
           asymmetric_conv_transpose=False, max_opset=17, interleave="concat",
           reshape_allowzero=False, grid_sample=False),
)

#: Targets that are not consumers ``pixeldcn check`` runs: TensorRT needs an NVIDIA GPU.
#: ``"any"`` (the intersection of :data:`CONSUMERS`) does not include them.
EXTRA_TARGETS: tuple[Target, ...] = (Target("tensorrt", "TensorRT", grid_sample=False),)


def intersection(name: str, targets: tuple[Target, ...]) -> Target:
    """The target whose forms every one of ``targets`` runs: a fact holds only where it holds for
    all of them, the oldest ``max_opset``, and ``concat`` unless they all interleave with
    ``depth_to_space`` by default."""
    opsets = [t.max_opset for t in targets if t.max_opset is not None]
    return Target(
        name,
        f"every consumer ({', '.join(t.title for t in targets)})",
        depth_to_space_dcr=all(t.depth_to_space_dcr for t in targets),
        asymmetric_conv_transpose=all(t.asymmetric_conv_transpose for t in targets),
        max_opset=min(opsets) if opsets else None,
        interleave=("depth_to_space" if all(t.interleave == "depth_to_space" for t in targets)
                    else "concat"),
        reshape_allowzero=all(t.reshape_allowzero for t in targets),
        expand=all(t.expand for t in targets),
        grid_sample=all(t.grid_sample for t in targets),
    )


#: Every target, by name: one per consumer, then ``"tensorrt"`` (:data:`EXTRA_TARGETS`), then
#: ``"any"``, the consumers' intersection (a model every consumer runs). The default is
#: :data:`DEFAULT_TARGET`.
TARGETS: dict[str, Target] = {
    t.name: t for t in (*CONSUMERS, *EXTRA_TARGETS, intersection("any", CONSUMERS))
}

#: Earlier spellings of consumer names, still accepted (``pixeldcn check --runtimes ort``).
CONSUMER_ALIASES: dict[str, str] = {"ort": "onnxruntime"}

#: What ``target=None`` means: the fastest forms for onnxruntime.
DEFAULT_TARGET = "onnxruntime"


def consumer_name(name: str) -> str:
    """The canonical name of a consumer (or target) spelled ``name``: lower-cased, aliases
    (:data:`CONSUMER_ALIASES`) resolved. Unknown names come back normalised but unchecked."""
    key = name.strip().lower()
    return CONSUMER_ALIASES.get(key, key)


def get_target(target: str | Target | None) -> Target:
    """The :class:`Target` of a name (``None``: :data:`DEFAULT_TARGET`); SpecError lists the names."""
    if isinstance(target, Target):
        return target
    if target is None:
        return TARGETS[DEFAULT_TARGET]
    if not isinstance(target, str) or consumer_name(target) not in TARGETS:
        raise SpecError(f"target={target!r}; expected one of {', '.join(TARGETS)}")
    return TARGETS[consumer_name(target)]


def resolve_target(
    target: str | Target | None, opset: int | None, interleave: str | None
) -> tuple[Target, int, str]:
    """``(target, opset, interleave)`` with the target's defaults filled in and checked.

    Raises:
        SpecError: unknown target, opset or interleave, or an opset newer than the target takes.
    """
    t = get_target(target)
    if opset is None:
        resolved = DEFAULT_OPSET if t.max_opset is None else min(DEFAULT_OPSET, t.max_opset)
    else:
        resolved = check_opset(opset)
        if t.max_opset is not None and resolved > t.max_opset:
            raise SpecError(
                f"opset {resolved} with target={t.name!r}: {t.title} converts opsets up to "
                f"{t.max_opset} (ops such as Split and Resize changed at 18); leave opset unset "
                f"or pass {t.max_opset}"
            )
    return t, resolved, check_interleave(t.interleave if interleave is None else interleave)
