"""The error hierarchy of pixeldcn.

Every error the project raises on purpose derives from :class:`PixelDCNError`. Errors caused by bad
input also derive from :class:`ValueError`, so callers that already catch ``ValueError`` keep working.
Messages name the field, the value received and the value expected.
"""

from __future__ import annotations

__all__ = [
    "InputShapeError",
    "PixelDCNError",
    "SpecError",
    "UnknownKindError",
    "WeightError",
]


class PixelDCNError(Exception):
    """Root of every error raised by pixeldcn."""


class SpecError(PixelDCNError, ValueError):
    """A layer specification is invalid (channels, kernel size, form, dtype, opset...)."""


class UnknownKindError(SpecError, KeyError):
    """An up-sampling layer kind that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class WeightError(PixelDCNError, ValueError):
    """A weight array is missing, unexpected, mis-shaped or of the wrong dtype."""


class InputShapeError(PixelDCNError, ValueError):
    """An input tensor has the wrong rank, channel count or dtype."""
