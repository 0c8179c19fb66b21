"""How :func:`~exporters.pytorch.export_onnx` writes a model: one frozen, validated object."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pixeldcn_core import resolve_target

from ._errors import ExportOptionsError, ExportOptionsKeywordError
from ._io import check_io

__all__ = ["ExportOptions", "moved_keywords_error"]


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ExportOptionsError(f"{name}: got {value!r}, expected True or False")


def _tolerance(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ExportOptionsError(f"{name}: got {value!r}, expected a finite number >= 0 or None")
    return float(value)


def _names(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not items or not all(
            isinstance(v, str) and v for v in items) or len(set(items)) != len(items):
        raise ExportOptionsError(
            f"{name}: got {value!r}, expected distinct non-empty names, e.g. ('x',)"
        )
    return tuple(items)


def _floats(name: str, value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(items, Sequence) or isinstance(items, str) or not items or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in items):
        raise ExportOptionsError(
            f"{name}: got {value!r}, expected finite numbers (one per input channel)"
        )
    return tuple(float(v) for v in items)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How :func:`~exporters.pytorch.export_onnx` writes a model; checked when constructed.

    >>> options = ExportOptions(target="any", interleave="concat", verify=False)
    >>> options.replace(fp16=True).fp16
    True

    Attributes:
        dynamic: batch, height and width (dims 0, 2, 3 of 4-D inputs; dim 0 of others) dynamic.
        opset: default-domain opset (17..21); ``None`` is the core's ``DEFAULT_OPSET`` (18), or
            the newest the target converts (17 for "onnx2torch" and "any").
        fp16: write a float16 model (inputs and outputs float16). Weights are folded in float32
            first, then rounded once.
        verify: run :func:`exporters.pytorch.verify` on the written file and raise
            :class:`VerificationError` beyond tolerance.
        atol, rtol: verification tolerances (``None``: per-precision defaults of ``verify``).
        input_names: names of the graph inputs; default ``x`` (or ``x0, x1, ...``).
        output_names: names of the outputs; default ``y`` for one output, else the model's
            ``onnx_output_names`` attribute, else ``y0, y1, ...``.
        interleave: how the up-sampling layers interleave their phases: "depth_to_space"
            (one DepthToSpace per layer) or "concat" (Unsqueeze/Concat/Reshape, faster on
            onnxruntime's CPU provider); ``None``: the target's. See ``pixeldcn_core.INTERLEAVES``.
        target: the ONNX consumer the model is for (``pixeldcn_core.TARGETS``): "onnxruntime"
            (``None``, the default: its fastest forms), "reference", "openvino", "tract",
            "onnx2torch", "tensorrt" (no GridSample) or "any" (a model that every consumer
            runs; check it with ``pixeldcn check``).
        input_format: "float32" (default: the model's float NCHW input) or "uint8-nhwc" /
            "uint8-nchw": uint8 images, normalised in the graph with ``mean`` and ``std``
            (0..1 range, per channel; default 0 and 1, i.e. ``x / 255``).
        output: "logits" (default), "probabilities" (Softmax over channels), "mask" (ArgMax
            over channels, uint8 up to 256 classes else int32) or "uint8_image" (clamped
            ``round(255 y)``); see :func:`pixeldcn_core.add_postprocessing`. With ``verify``,
            the processed model is checked against the float model + the same processing in
            numpy.
        mean, std: per-channel normalisation of uint8 input (only with a uint8 ``input_format``).

    Raises:
        ExportOptionsError: a field out of range (the message names it and what it expects).
        SpecError: an unknown ``target`` or ``interleave``, an unsupported ``opset``, or an
            opset newer than the target converts (the core's check).
    """

    dynamic: bool = True
    opset: int | None = None
    fp16: bool = False
    verify: bool = True
    atol: float | None = None
    rtol: float | None = None
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    interleave: str | None = None
    target: str | None = None
    input_format: str = "float32"
    output: str = "logits"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("dynamic", "fp16", "verify"):
            _bool(name, getattr(self, name))
        resolve_target(self.target, self.opset, self.interleave)
        layout, output = check_io(self.input_format, self.output)
        fields: dict[str, Any] = {
            "atol": _tolerance("atol", self.atol),
            "rtol": _tolerance("rtol", self.rtol),
            "input_names": _names("input_names", self.input_names),
            "output_names": _names("output_names", self.output_names),
            "input_format": "float32" if layout is None else f"uint8-{layout}",
            "output": output,
            "mean": _floats("mean", self.mean),
            "std": _floats("std", self.std),
        }
        if fields["std"] is not None and min(fields["std"]) <= 0:
            raise ExportOptionsError(f"std: got {self.std!r}, expected positive values")
        if layout is None and (fields["mean"] is not None or fields["std"] is not None):
            raise ExportOptionsError(
                "mean/std: given, but input_format is float32; they normalise uint8 input only "
                "(use input_format='uint8-nhwc' or 'uint8-nchw')"
            )
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def io_layout(self) -> str | None:
        """The uint8 input layout ("nhwc", "nchw"), or ``None`` for the float input."""
        return None if self.input_format == "float32" else self.input_format.split("-", 1)[1]

    @property
    def processes_io(self) -> bool:
        """Whether the graph gets in-graph pre- or post-processing."""
        return self.io_layout is not None or self.output != "logits"

    def replace(self, **changes: Any) -> ExportOptions:
        """A copy with ``changes`` applied (and checked again)."""
        return dataclasses.replace(self, **changes)


#: The keywords ``export_onnx`` took before :class:`ExportOptions` (its fields).
MOVED_KEYWORDS = frozenset(f.name for f in dataclasses.fields(ExportOptions))


def moved_keywords_error(function: str, moved: Mapping[str, object], call: str,
                         allowed: str) -> ExportOptionsKeywordError:
    """The error for ``export_onnx(..., verify=False)``: shows the call to make instead."""
    options = sorted(k for k in moved if k in MOVED_KEYWORDS)
    unknown = sorted(k for k in moved if k not in MOVED_KEYWORDS)
    if unknown:
        return ExportOptionsKeywordError(
            f"{function}() got unexpected keyword argument(s) {unknown}; expected {allowed}"
        )
    args = ", ".join(f"{k}={moved[k]!r}" for k in options)
    return ExportOptionsKeywordError(
        f"{function}() no longer takes export options as keywords (got {options}); pass them "
        f"as options: {call}, options=ExportOptions({args}))"
    )
