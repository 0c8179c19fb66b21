"""The ``pixeldcn`` command line.

Subcommands are plugins: every package registers its own under the entry-point group
``pixeldcn.commands`` with a ``register(subparsers)`` function that adds a subparser and sets
``func=handler``, where ``handler(args) -> int`` returns the exit code. pixeldcn_core therefore
never imports the packages built on top of it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

from . import __version__
from ._errors import PixelDCNError

__all__ = ["EXIT_CODES", "build_parser", "exit_code", "main"]

ENTRY_POINT_GROUP = "pixeldcn.commands"

#: Every subcommand exits the same way (printed by ``pixeldcn --help``).
EXIT_CODES = """exit codes (every command):
  0    success
  1    failure: the work could not be done (a check disagreed, a server failed, ...)
  2    usage: a bad option, file, name or value; the one-line message says which
  130  interrupted (Ctrl-C)"""


def exit_code(err: BaseException) -> int:
    """2 for a usage error (bad input: a :class:`PixelDCNError` that is a ``ValueError``),
    1 for any other failure."""
    return 2 if isinstance(err, ValueError) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixeldcn",
        description="Deploy Pixel Deconvolutional Networks: build, export, serve, benchmark.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pixeldcn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    broken: list[str] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except ImportError as err:  # an extra is not installed: say so, keep the rest usable
            broken.append(f"{ep.name} ({err})")
    if broken:
        parser.epilog = f"{EXIT_CODES}\n\nunavailable commands: " + "; ".join(broken)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PixelDCNError as err:
        print(f"pixeldcn {args.command}: error: {err}", file=sys.stderr)
        return exit_code(err)
    except KeyboardInterrupt:
        print(f"pixeldcn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
