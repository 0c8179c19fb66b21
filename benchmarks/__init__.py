"""Benchmarks of pixeldcn: single layers, whole networks, served models.

Every benchmark follows one protocol (:mod:`benchmarks._protocol`): ``plan`` (flags -> frozen
settings) -> ``run`` (-> a :class:`Result`) -> ``write_report`` (JSON with ``format_version``,
Markdown, PNG plots). Each is a ``pixeldcn bench`` subcommand (:mod:`benchmarks.cli_bench`). The heavy
imports (onnxruntime, torch, tritonclient, the exporters, triton_repo) happen inside ``run``, so
``pixeldcn bench layers`` needs only the core and onnxruntime.

Add a benchmark: write ``benchmarks/NAME.py`` with a class holding ``name``, ``help``,
``add_arguments``, ``plan``, ``run``, ``markdown`` and ``plots`` (optionally ``failure``), set
``BENCHMARK = ThatClass()`` and add ``"NAME"`` to :data:`benchmarks.cli_bench.MODULES` (or, from
outside this package, call :func:`register_benchmark` before ``pixeldcn`` builds its parser).
"""

from ._protocol import (
    BASELINE_KIND,
    FORMAT_VERSION,
    Benchmark,
    BenchmarkError,
    BenchmarkUsageError,
    Result,
    ResultVersionError,
    load_result,
    register_benchmark,
    write_report,
)
from ._report import Target

__all__ = [
    "BASELINE_KIND",
    "FORMAT_VERSION",
    "Benchmark",
    "BenchmarkError",
    "BenchmarkUsageError",
    "Result",
    "ResultVersionError",
    "Target",
    "load_result",
    "register_benchmark",
    "write_report",
]
