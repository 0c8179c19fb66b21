"""Errors of the PyTorch exporter; all derive from :class:`pixeldcn_core.PixelDCNError`."""

from __future__ import annotations

from pixeldcn_core import PixelDCNError, WeightError

__all__ = ["CheckpointError", "ExportError", "VerificationError"]


class ExportError(PixelDCNError, ValueError):
    """A model cannot be exported as asked (input shape, dtype, unsupported graph, size...)."""


class VerificationError(PixelDCNError):
    """onnxruntime's outputs differ from PyTorch's beyond tolerance (or hold NaN/Inf, or the
    shapes or dtypes disagree). ``.report`` holds the full :class:`VerificationReport`."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class CheckpointError(WeightError):
    """A checkpoint cannot be read safely, or its keys and shapes do not match the model."""
