"""Errors of the PyTorch exporter; all derive from :class:`pixeldcn_core.PixelDCNError`.

Usage errors (the export was asked wrongly: an option, shape, name or file) are also
``ValueError``s, so ``pixeldcn export`` exits 2 on them; any other :class:`ExportError` is a
failure of the export itself (the model could not be traced or converted) and exits 1.
"""

from __future__ import annotations

from pixeldcn_core import PixelDCNError, WeightError

__all__ = [
    "CheckpointError",
    "ExportError",
    "ExportOptionsError",
    "ExportOptionsKeywordError",
    "VerificationError",
]


class ExportError(PixelDCNError):
    """The model could not be exported: tracing or conversion failed (``torch.export``,
    ``torch.onnx.export``, a graph pass, the 2 GiB limit). Exit code 1. The root of every
    export error, :class:`ExportOptionsError` included."""


class ExportOptionsError(ExportError, ValueError):
    """The export was asked wrongly: an :class:`ExportOptions` field, the input shape, input or
    output names, the in-graph I/O options, the calibration data. Exit code 2."""


class ExportOptionsKeywordError(ExportOptionsError, TypeError):
    """An export option passed to ``export_onnx`` as a keyword (the call before
    :class:`ExportOptions`); the message shows the ``options=ExportOptions(...)`` call to make."""


class VerificationError(PixelDCNError):
    """onnxruntime's outputs differ from PyTorch's beyond tolerance (or hold NaN/Inf, or the
    shapes or dtypes disagree). ``.report`` holds the full :class:`VerificationReport`."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class CheckpointError(WeightError):
    """A checkpoint cannot be read safely, or its keys and shapes do not match the model."""
