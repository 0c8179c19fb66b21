"""Writing results: JSON with the machine and settings, Markdown tables, target verdicts."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import BenchmarkUsageError

__all__ = [
    "Target",
    "fmt",
    "machine_line",
    "markdown_table",
    "split_list",
    "targets_section",
    "targets_table",
    "write_json",
    "write_text",
]


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal the benchmark reports on (never asserts): ``measured <op> threshold``.

    Attributes:
        name: short id, e.g. ``"pixel_dcl_vs_dcl_k6_b1_1024x512x16"``.
        description: what is compared, in words.
        measured: the measured value (``None`` when it could not be measured in this run).
        threshold: the bound.
        op: ``"<="`` or ``">="``.
        unit: ``"x"`` for ratios, ``"%"`` for percentages.
        note: how it was measured or why it missed.
    """

    name: str
    description: str
    measured: float | None
    threshold: float
    op: str = "<="
    unit: str = "x"
    note: str = ""

    @property
    def status(self) -> str:
        if self.measured is None or not math.isfinite(self.measured):
            return "N/A"
        ok = self.measured <= self.threshold if self.op == "<=" else self.measured >= self.threshold
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status}


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell; ``-`` for missing values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1 or value == 0:
        return f"{value:.{digits}f}"
    return f"{value:.2g}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` per column: ``l``, ``r`` or ``c``."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(targets: Sequence[Target]) -> str:
    rows = []
    for t in targets:
        unit = "%" if t.unit == "%" else "x"
        measured = "-" if t.measured is None else f"{t.measured:.2f}{unit}"
        rows.append([t.description, f"{t.op} {t.threshold:g}{unit}", measured, f"**{t.status}**",
                     t.note or ""])
    return markdown_table(["target", "bound", "measured", "verdict", "note"], rows,
                          ["l", "r", "r", "c", "l"])


def targets_section(title: str, targets: Sequence[Target]) -> list[str]:
    """``## title`` and the targets table, as Markdown lines; nothing without targets."""
    return [f"## {title}", "", targets_table(targets), ""] if targets else []


def machine_line(m: Mapping[str, Any], packages: Sequence[str], extra: str = "") -> str:
    """``CPU, N cores, OS; python X, <package> <version>...[; extra]; timestamp.``"""
    pk = m["packages"]
    versions = ", ".join(
        f"{p} {pk.get(p) or pk.get('onnxruntime-gpu') if p == 'onnxruntime' else pk.get(p)}"
        for p in packages)
    return (f"{m['cpu_model']}, {m['physical_cores']} cores, {m['os']}; python {m['python']}, "
            f"{versions}{'; ' + extra if extra else ''}; {m['timestamp']}.")


def split_list(text: str | None, flag: str, kind: Callable[[str], Any] = str) -> list[Any]:
    """``"a, b"`` -> ``["a", "b"]`` (``[]`` for ``None``); with ``kind=int`` positive integers.

    Raises:
        BenchmarkUsageError: an item is not a positive integer, naming ``flag``.
    """
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if kind is str:
        return items
    try:
        values = [kind(t) for t in items]
    except ValueError:
        values = []
    if len(values) != len(items) or any(v < 1 for v in values):
        raise BenchmarkUsageError(f"{flag}: expected comma-separated positive integers, "
                                  f"got {text!r}")
    return values


def _clean(obj: Any) -> Any:
    """JSON has no NaN/Inf: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_text(path: Path, text: str) -> Path:
    """Write through a temp file and rename, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(_clean(data), indent=1, sort_keys=False) + "\n")
