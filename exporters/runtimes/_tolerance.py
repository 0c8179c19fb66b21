"""Tolerances by scale: ``|got - ref| <= atol + rtol * |ref|`` (numpy's rule), defaults per precision.

``atol`` is stated in units of the output's scale ``max |ref|`` (floored per precision): float32
arithmetic carries ~7 significant digits *of the magnitudes it adds up*, so an output of scale 20
has absolute errors ~20x those of an output of scale 1, also on its elements near zero, where
``rtol * |ref|`` gives no room. Like Polygraphy, every comparison also reports the smallest
tolerance that would have passed, so a user can see how far from the line a result is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pixeldcn_core import SpecError

__all__ = ["TOLERANCES", "Comparison", "Tolerance", "compare", "precision_of"]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Pass when ``|got - ref| <= atol * max(scale, scale_floor) + rtol * |ref|`` everywhere.

    Attributes:
        atol: absolute tolerance per unit of the output's scale ``max |ref|``.
        rtol: relative tolerance (of each element).
        scale_floor: the scale is never taken below this (1.0 for float32: outputs of scale
            <= 1 are held to ``atol`` itself); 0 means the scale as it is (``1`` when all zero).
    """

    atol: float
    rtol: float
    scale_floor: float = 1.0

    def __post_init__(self) -> None:
        for field in ("atol", "rtol", "scale_floor"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise SpecError(f"tolerance {field} must be a finite number >= 0, got {value!r}")

    def absolute(self, scale: float) -> float:
        """The absolute tolerance for an output of scale ``max |ref| = scale``."""
        s = max(float(scale), self.scale_floor)
        return float(self.atol * (s if s > 0 else 1.0))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Defaults per model precision. float32: measured errors of every consumer on every kind are
#: <= 6e-6 x scale (README "Runtimes"); float16 carries ~3 significant digits of the magnitudes
#: in the network, so its atol is 1e-2 of the output's scale.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(atol=1e-5, rtol=1e-3, scale_floor=1.0),
    "float16": Tolerance(atol=1e-2, rtol=1e-2, scale_floor=0.0),
}


def precision_of(dtypes: Any) -> str:
    """"float16" when any of ``dtypes`` is float16, else "float32"."""
    return "float16" if any(np.dtype(d) == np.float16 for d in dtypes) else "float32"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One output of one consumer against the baseline.

    ``min_atol``: the smallest absolute tolerance that passes at this ``rtol``;
    ``min_rtol``: the smallest relative tolerance that passes at this ``atol`` (``inf`` when an
    element of the baseline is 0 and still off by more than ``atol``).
    """

    name: str
    shape: tuple[int, ...]
    ref_shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float
    scale: float
    atol: float
    rtol: float
    min_atol: float
    min_rtol: float
    nonfinite: int
    nonfinite_ref: int
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in d.items()}


def _json_float(v: float) -> float | str:
    return v if np.isfinite(v) else str(v)


def compare(
    got: Any,
    ref: Any,
    *,
    name: str = "y",
    tolerance: Tolerance | None = None,
    precision: str = "float32",
    atol: float | None = None,
    rtol: float | None = None,
) -> Comparison:
    """Compare ``got`` with the baseline ``ref`` element by element.

    Args:
        got, ref: arrays of the same shape (``ref`` is computed in float64 where it can be).
        name: the output's name, for messages.
        tolerance: the rule; ``None`` takes :data:`TOLERANCES` of ``precision``.
        precision: "float32" or "float16".
        atol: an absolute tolerance that replaces the scaled default (in output units).
        rtol: replaces the rule's rtol.

    Returns:
        A :class:`Comparison`; ``passed`` is False on a shape mismatch, NaN / Inf in either array,
        or an element beyond ``atol + rtol * |ref|``.
    """
    if tolerance is None:
        if precision not in TOLERANCES:
            raise SpecError(f"precision {precision!r}; expected one of {', '.join(TOLERANCES)}")
        tolerance = TOLERANCES[precision]
    a = np.asarray(got)
    b = np.asarray(ref, dtype=np.float64)
    problems: list[str] = []
    bad_ref = int(b.size - np.count_nonzero(np.isfinite(b)))
    scale = float(np.abs(b[np.isfinite(b)]).max()) if b.size and bad_ref < b.size else 0.0
    at = tolerance.absolute(scale) if atol is None else float(atol)
    rt = tolerance.rtol if rtol is None else float(rtol)
    nan = float("nan")
    max_abs = max_rel = min_atol = min_rtol = nan
    bad = 0
    if a.shape != b.shape:
        problems.append(f"{name}: shape {a.shape} != baseline {b.shape}")
    else:
        a64 = a.astype(np.float64)
        bad = int(a.size - np.count_nonzero(np.isfinite(a64)))
        if bad:
            problems.append(f"{name}: {bad} NaN/Inf values")
        if bad_ref:
            problems.append(f"{name}: {bad_ref} NaN/Inf values in the baseline")
        diff = np.abs(a64 - b)
        finite = np.isfinite(diff)
        if finite.any():
            d, rb = diff[finite], np.abs(b[finite])
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(rb != 0, d / rb, np.where(d == 0, 0.0, np.inf))
                need_r = np.where(d <= at, 0.0, np.where(rb != 0, (d - at) / rb, np.inf))
            max_abs, max_rel = float(d.max()), float(rel.max())
            min_atol = float(max((d - rt * rb).max(), 0.0))
            min_rtol = float(need_r.max())
            if not np.all(d <= at + rt * rb):
                where = int(np.argmax(d - rt * rb))
                problems.append(
                    f"{name}: max abs err {max_abs:.3e} beyond atol={at:.3e} + rtol={rt:g} * |ref| "
                    f"(worst element: got {a64[finite][where]:.6g}, baseline {b[finite][where]:.6g})"
                )
        elif a.size:
            max_abs = max_rel = float("inf")
    return Comparison(
        name=name, shape=tuple(a.shape), ref_shape=tuple(b.shape), dtype=str(a.dtype),
        max_abs=max_abs, max_rel=max_rel, scale=scale, atol=at, rtol=rt, min_atol=min_atol,
        min_rtol=min_rtol, nonfinite=bad, nonfinite_ref=bad_ref, problems=tuple(problems),
    )
