"""``pixeldcn bench``: the benchmark subcommands, registered as a ``pixeldcn`` plugin.

``register`` only builds parsers; each handler imports what it needs (onnxruntime, torch,
tritonclient, the exporters, triton_repo) when it runs, so ``pixeldcn bench layers`` works
with the core and onnxruntime alone.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    g = p.add_argument_group("common")
    g.add_argument("--quick", action="store_true",
                   help="a short run: tiny shapes, few rounds (what the tests use)")
    g.add_argument("--out", default=None, help=f"output folder (default runs/bench-{kind})")
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


def _handler(module: str, func: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        import importlib

        args.argv = command_line(args).split()[2:]
        return int(getattr(importlib.import_module(module), func)(args) or 0)

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` with the subcommands ``layers``, ``network`` and ``serve``."""
    bench = subparsers.add_parser(
        "bench", help="latency benchmarks: layers, network, served model",
        description="Latency benchmarks; each writes JSON, Markdown and PNG plots to --out.")
    sub = bench.add_subparsers(dest="bench", metavar="BENCH")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])

    from . import layers

    p = sub.add_parser(
        "layers", help="every up-sampling layer kind in onnxruntime (CPU; CUDA/TensorRT if any)",
        description=(layers.__doc__ or "").split("\n\n")[0])
    layers.add_arguments(p)
    _common(p, "layers")
    p.set_defaults(func=_handler("benchmarks.layers", "run_layers"), _parser=p)

    from . import network

    p = sub.add_parser(
        "network", help="the paper's U-Net with each up-sampling kind: onnxruntime and PyTorch",
        description=(network.__doc__ or "").split("\n\n")[0])
    network.add_arguments(p)
    _common(p, "network")
    p.set_defaults(func=_handler("benchmarks.network", "run_network"), _parser=p)

    from . import serve

    p = sub.add_parser(
        "serve", help="a model served by Triton: latency/throughput against concurrency",
        description=(serve.__doc__ or "").split("\n\n")[0])
    serve.add_arguments(p)
    _common(p, "serve")
    p.set_defaults(func=_handler("benchmarks.serve", "run_serve"), _parser=p)
