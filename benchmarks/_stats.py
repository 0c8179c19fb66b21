"""Summary statistics of timings, and ratios paired round by round.

The host's speed drifts (up to 40 % between passes on a shared machine), so two variants are
compared by the median of their per-round ratios, never by the ratio of their medians: both
were timed within the same round, a few hundred milliseconds apart, under the same load.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._errors import BenchmarkUsageError

__all__ = ["paired_ratio", "summarize"]


def summarize(seconds: Sequence[float]) -> dict[str, float | int]:
    """Median, p90, p99, mean, min and max of ``seconds``, in milliseconds, and the run count.

    Percentiles interpolate linearly (numpy's default): with 20 runs, p99 is close to the max.
    """
    t = np.asarray(seconds, dtype=np.float64) * 1e3
    if t.size == 0:
        raise BenchmarkUsageError("summarize needs at least one timing, got none")
    return {
        "median": float(np.median(t)),
        "p90": float(np.percentile(t, 90)),
        "p99": float(np.percentile(t, 99)),
        "mean": float(t.mean()),
        "min": float(t.min()),
        "max": float(t.max()),
        "n": int(t.size),
    }


def paired_ratio(
    numerator: Sequence[float], denominator: Sequence[float], *, scale: float = 1.0
) -> dict[str, float | int]:
    """Median (and quartiles) over rounds of ``scale * numerator[r] / denominator[r]``.

    Args:
        numerator, denominator: per-round values timed in the same rounds (same length).
        scale: constant factor applied to every ratio (e.g. a ratio of FLOP counts).

    Returns:
        ``{"median", "p25", "p75", "n"}``; a variant against itself gives exactly 1.0.
    """
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise BenchmarkUsageError(
            f"paired_ratio needs two equal, non-empty series, got {a.size} and {b.size} values"
        )
    r = scale * a / b
    return {
        "median": float(np.median(r)),
        "p25": float(np.percentile(r, 25)),
        "p75": float(np.percentile(r, 75)),
        "n": int(r.size),
    }
