"""``pixeldcn bench``: one subcommand per benchmark, registered as a ``pixeldcn`` plugin.

Every module named in :data:`MODULES` defines ``BENCHMARK`` (a :class:`benchmarks.Benchmark`);
each gets ``pixeldcn bench NAME`` with its own flags and the common ones, and runs
``plan -> run -> write_report``. ``pixeldcn bench report FILE.json`` renders a stored result again.
The heavy imports (onnxruntime, torch, tritonclient, the exporters, triton_repo) happen inside
``run``, so ``pixeldcn bench layers`` works with the core and onnxruntime alone.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from ._protocol import (
    Benchmark,
    BenchmarkError,
    BenchmarkUsageError,
    load_result,
    print_targets,
    registered_benchmarks,
    write_report,
)

__all__ = ["MODULES", "command_line", "register"]

#: Modules of ``benchmarks`` that define a ``BENCHMARK``, in the order of ``pixeldcn bench -h``.
MODULES = ("layers", "network", "decoder", "serve", "quality", "lean")


def _common(p: argparse.ArgumentParser, name: str) -> None:
    g = p.add_argument_group("common")
    g.add_argument("--quick", action="store_true",
                   help="a short run: tiny shapes, few rounds (what the tests use)")
    g.add_argument("--out", default=None, help=f"output folder (default runs/bench-{name})")
    g.add_argument("--rounds", type=int, default=None,
                   help="timed rounds, at most (every variant runs once per round)")
    g.add_argument("--warmup", type=int, default=None, help="untimed warm-up rounds")
    g.add_argument("--budget", type=float, default=None,
                   help="soft time budget in seconds per configuration: stop after it once "
                        "--min-rounds are done (0: no budget)")
    g.add_argument("--min-rounds", type=int, default=None, help="rounds always run")
    g.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of onnxruntime (and torch); default: physical cores")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and orders")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces ``args`` (options that differ from their defaults)."""
    parser: argparse.ArgumentParser = args._parser
    parts = ["pixeldcn", "bench", args.bench]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        value = getattr(args, action.dest, None)
        if value == action.default:
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") \
            else action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            parts.append(flag)
        else:
            parts += [flag, str(value)]
    return " ".join(parts)


def _written(out: Path, paths: list[Path]) -> str:
    return f"{out}/" + ", ".join(p.name for p in paths)


def _run(bench: Benchmark, args: argparse.Namespace) -> int:
    args.command_line = command_line(args)
    out = Path(args.out or f"runs/bench-{bench.name}")
    for flag, value in (("--threads", args.threads), ("--seed", args.seed)):
        if value is not None and value < 0:
            raise BenchmarkUsageError(f"{flag} must be >= 0, got {value}")
    if out.exists() and not out.is_dir():
        raise BenchmarkUsageError(f"--out {out}: not a folder")
    result = bench.run(bench.plan(args), progress=not args.no_progress)
    paths = write_report(bench, result, out, plots=not args.no_plots)
    print_targets(bench.name, result)
    print(f"[{bench.name}] wrote {_written(out, paths)}", flush=True)
    failure = getattr(bench, "failure", lambda result: None)(result)
    if failure:
        raise BenchmarkError(failure)
    return 0


def _report(args: argparse.Namespace) -> int:
    result = load_result(args.result)
    benches = _benchmarks()
    if result.benchmark not in benches:
        raise BenchmarkUsageError(f"{args.result}: a result of benchmark {result.benchmark!r}, "
                                  f"expected one of {', '.join(benches)}")
    bench = benches[result.benchmark]
    out = Path(args.out) if args.out else Path(args.result).parent
    print(f"[report] wrote {_written(out, write_report(bench, result, out, plots=not args.no_plots))}")
    return 0


def _benchmarks() -> dict[str, Benchmark]:
    found = [importlib.import_module(f"benchmarks.{m}").BENCHMARK for m in MODULES]
    return {b.name: b for b in found} | registered_benchmarks()


def register(subparsers: Any) -> None:
    """Add ``bench`` with one subcommand per benchmark, and ``report``."""
    bench = subparsers.add_parser(
        "bench", help="latency benchmarks: " + ", ".join(MODULES),
        description="Benchmarks; each writes JSON, Markdown and PNG plots to --out. Exit codes: "
                    "0 done, 1 a failure (e.g. a server that does not answer), 2 a usage error.")
    sub = bench.add_subparsers(dest="bench", metavar="BENCH")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
    for b in _benchmarks().values():
        doc = (sys.modules[type(b).__module__].__doc__ or "").split("\n\n")[0]
        p = sub.add_parser(b.name, help=b.help, description=doc)
        b.add_arguments(p)
        _common(p, b.name)
        p.set_defaults(func=lambda args, b=b: _run(b, args), _parser=p)
    p = sub.add_parser("report", help="write the Markdown and plots of a result JSON again",
                       description="Render a stored result (NAME.json) as NAME.md and plots; "
                                   "results of another format version are refused.")
    p.add_argument("result", help="a result file written by pixeldcn bench")
    p.add_argument("--out", default=None, help="output folder (default: the file's folder)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=_report)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.cli_bench ARGS``: ``pixeldcn bench`` without the entry points."""
    from pixeldcn_core.cli import run_command

    return run_command(register, "bench", argv)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
