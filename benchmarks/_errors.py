"""The errors of the benchmarks, and the exit code ``pixeldcn`` gives each."""

from __future__ import annotations

from pixeldcn_core import PixelDCNError

__all__ = ["BenchmarkError", "BenchmarkUsageError", "ResultVersionError"]


class BenchmarkError(PixelDCNError):
    """A benchmark failed (a provider, a server, a lost request): ``pixeldcn`` exits with 1."""


class BenchmarkUsageError(BenchmarkError, ValueError):
    """A benchmark was given a bad setting or input: ``pixeldcn`` exits with 2."""


class ResultVersionError(BenchmarkUsageError):
    """A result file written in another format version."""
