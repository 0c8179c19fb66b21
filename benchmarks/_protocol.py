"""The benchmark protocol: plan -> run -> typed result -> report.

A benchmark is a small object (see :class:`Benchmark`)::

    @dataclasses.dataclass(frozen=True)
    class EchoSettings:                      # the plan: frozen, validated once
        size: int
        def __post_init__(self):
            if self.size < 1:
                raise BenchmarkUsageError(f"--size must be >= 1, got {self.size}")

    class Echo:
        name = "echo"                        # `pixeldcn bench echo`, writes echo.json / echo.md
        help = "one line for `pixeldcn bench --help`"
        def add_arguments(self, p): p.add_argument("--size", type=int, default=4)
        def plan(self, args): return EchoSettings(args.size)       # flags -> settings
        def run(self, s, *, progress=True):                        # settings -> Result
            return Result("echo", machine_info(), {"size": s.size}, {"rows": [...]})
        def markdown(self, result): return "# Echo\n..."          # views of a Result
        def plots(self, result, out_dir): return []

    BENCHMARK = Echo()                       # in benchmarks/echo.py; add "echo" to cli.MODULES

Optional: ``failure(result) -> str | None`` (a message makes the command exit with 1 after the
report is written). ``args.command_line`` is the command that reproduces the run; record it.

``pixeldcn bench NAME`` then runs ``plan -> run -> write_report`` (JSON + Markdown + PNG, the one
reporting path), prints the targets, and ``pixeldcn bench report NAME.json`` renders a stored
result again. Errors: :class:`BenchmarkUsageError` (also a ``ValueError``; exit code 2) for bad
flags or input, :class:`BenchmarkError` (exit code 1) for a failure; the ``pixeldcn`` command
prints either as one line, without a traceback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ._errors import BenchmarkError, BenchmarkUsageError, ResultVersionError
from ._report import Target, fmt, write_json, write_text

__all__ = [
    "BASELINE_KIND",
    "FORMAT_VERSION",
    "Benchmark",
    "BenchmarkError",
    "BenchmarkUsageError",
    "Result",
    "ResultVersionError",
    "load_result",
    "register_benchmark",
    "registered_benchmarks",
    "write_report",
]

#: Version of the result files' layout; a file of another version is refused on loading.
#: 1: the first files (key ``"schema": 1``); 2: ``format_version``, rows name their network.
FORMAT_VERSION = 2
#: The layer kind every time ratio is taken against: the paper's baseline, regular deconvolution.
BASELINE_KIND = "dcl"


@dataclasses.dataclass(frozen=True)
class Result:
    """What a benchmark's ``run`` returns; data first, reports are views of it.

    Attributes:
        benchmark: the benchmark's name (``"layers"``, ``"network"``, ...).
        machine: :func:`benchmarks._machine.machine_info` at the start of the run.
        settings: the settings as recorded (JSON-ready; ``command`` reproduces the run).
        records: the benchmark's own data, JSON-ready (top-level keys of the file).
        targets: goals reported on, never asserted.
        format_version: the layout version (:data:`FORMAT_VERSION` for a new result).
    """

    benchmark: str
    machine: Mapping[str, Any]
    settings: Mapping[str, Any]
    records: Mapping[str, Any]
    targets: tuple[Target, ...] = ()
    format_version: int = FORMAT_VERSION

    def __getitem__(self, key: str) -> Any:
        """``result["rows"]``: a record (the same key as in the JSON file)."""
        return self.records[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.records.get(key, default)

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "format_version": self.format_version,
                "machine": dict(self.machine), "settings": dict(self.settings), **self.records,
                "targets": [t.as_dict() for t in self.targets]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "result") -> Result:
        """The result a ``to_json`` dict holds; raises :class:`ResultVersionError` for another
        format version and :class:`BenchmarkUsageError` for something that is not a result."""
        if not isinstance(data, Mapping) or not isinstance(data.get("benchmark"), str):
            raise BenchmarkUsageError(f"{source}: not a pixeldcn benchmark result "
                                      "(no 'benchmark' name)")
        version = data.get("format_version", data.get("schema"))
        if version != FORMAT_VERSION:
            raise ResultVersionError(
                f"{source}: result format version {version}, this pixeldcn reads version "
                f"{FORMAT_VERSION}; run `pixeldcn bench {data['benchmark']}` again to remake it")
        fixed = ("benchmark", "format_version", "machine", "settings", "targets")
        try:
            targets = tuple(Target(**{k: v for k, v in t.items() if k != "status"})
                            for t in data.get("targets", []))
        except (TypeError, AttributeError) as err:
            raise BenchmarkUsageError(f"{source}: a target is not a target ({err})") from None
        return cls(data["benchmark"], data.get("machine", {}), data.get("settings", {}),
                   {k: v for k, v in data.items() if k not in fixed}, targets)


class Benchmark(Protocol):
    """What ``pixeldcn bench`` needs of a benchmark (see the module docstring)."""

    name: str
    help: str

    def add_arguments(self, parser: Any) -> None: ...

    def plan(self, args: Any) -> Any: ...

    def run(self, settings: Any, *, progress: bool = True) -> Result: ...

    def markdown(self, result: Result) -> str: ...

    def plots(self, result: Result, out_dir: Path) -> list[Path]: ...


_REGISTERED: dict[str, Benchmark] = {}


def register_benchmark(bench: Benchmark) -> Benchmark:
    """Add ``bench`` to ``pixeldcn bench`` (besides the modules of ``benchmarks.cli_bench.MODULES``);
    a benchmark of the same name is replaced. Returns ``bench``."""
    _REGISTERED[bench.name] = bench
    return bench


def registered_benchmarks() -> dict[str, Benchmark]:
    """The benchmarks added with :func:`register_benchmark`, by name (a copy)."""
    return dict(_REGISTERED)


def load_result(path: str | Path) -> Result:
    """A result file written by :func:`write_report` (this format version only)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkUsageError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchmarkUsageError(f"{path}: not a JSON result file ({err})") from None
    return Result.from_json(data, str(path))


def write_report(bench: Benchmark, result: Result, out_dir: Path, *, plots: bool = True
                 ) -> list[Path]:
    """``NAME.json``, ``NAME.md`` and the plots of ``result`` in ``out_dir``; their paths.

    Raises:
        BenchmarkUsageError: ``result`` lacks a record its report needs (a hand-edited file).
        BenchmarkError: the files cannot be written.
    """
    try:
        markdown = bench.markdown(result) + "\n"
    except (KeyError, TypeError, IndexError) as err:
        raise BenchmarkUsageError(f"the {bench.name} result lacks what its report needs: "
                                  f"{type(err).__name__} {err}") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [write_json(out_dir / f"{bench.name}.json", result.to_json()),
                 write_text(out_dir / f"{bench.name}.md", markdown)]
        return paths + (bench.plots(result, out_dir) if plots else [])
    except OSError as err:
        raise BenchmarkError(f"cannot write the report to {out_dir}: {err}") from None


def print_targets(name: str, result: Result) -> None:
    """One line per target: ``[name] target <description>: <measured> <op> <bound> -> <status>``."""
    for t in result.targets:
        print(f"[{name}] target {t.description}: {fmt(t.measured)} {t.op} {t.threshold:g} "
              f"-> {t.status}")
