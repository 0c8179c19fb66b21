"""The ``pixeldcn`` command line.

Subcommands are plugins: every package registers its own under the entry-point group
``pixeldcn.commands``. One naming pattern: ``pixeldcn NAME`` lives in ``<package>/cli_NAME.py``
(e.g. ``triton_repo/cli_serve.py``), registered as ``NAME = "<package>.cli_NAME:register"``.
``register(subparsers)`` adds a subparser and sets ``func=handler``, where
``handler(args) -> int`` returns the exit code. ``register`` imports nothing heavy (no torch,
onnxruntime or tritonclient: the handler imports what it needs), so that ``pixeldcn --help``
starts in well under a second. pixeldcn_core never imports the packages built on top of it.

Every command exits the same way (:data:`EXIT_CODES`): errors are one line on stderr, never a
traceback (set ``PIXELDCN_DEBUG=1`` to see one), and Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from . import __version__
from ._errors import PixelDCNError

__all__ = [
    "DEBUG_ENV",
    "EXIT_CODES",
    "add_image_limit_arguments",
    "attribute_help",
    "build_parser",
    "exit_code",
    "finite_float",
    "main",
    "plain",
    "run_command",
]

ENTRY_POINT_GROUP = "pixeldcn.commands"
#: Set to 1 to let an unexpected error end in its traceback (for bug reports).
DEBUG_ENV = "PIXELDCN_DEBUG"

#: Every subcommand exits the same way (printed by ``pixeldcn --help``).
EXIT_CODES = """exit codes (every command):
  0    success
  1    failure: the work could not be done (a check disagreed, a server failed, ...)
  2    usage: a bad option, file, name or value; the one-line message says which
  130  interrupted (Ctrl-C)

environment: PIXELDCN_MAX_IMAGE_PIXELS, PIXELDCN_MAX_IMAGE_BYTES bound every picture and .npy
input (see --max-image-pixels); PIXELDCN_DEBUG=1 shows the traceback of an unexpected error."""

# File errors that mean "the file or folder you named is not usable": usage, exit 2.
_USAGE_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                    FileExistsError)


def exit_code(err: BaseException) -> int:
    """2 for a usage error (bad input: a :class:`PixelDCNError` that is a ``ValueError``, a
    file that is missing or not readable, text that is not UTF-8), 1 for any other failure."""
    if isinstance(err, PixelDCNError):
        return 2 if isinstance(err, ValueError) else 1
    return 2 if isinstance(err, (*_USAGE_OS_ERRORS, UnicodeError)) else 1


def finite_float(text: str) -> float:
    """argparse ``type=`` for seconds and timeouts: a finite number >= 0 (not inf, not nan)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a finite number >= 0")
    return value


def add_target_arguments(parser: Any, *, phases: str = "up-sampling layers interleave phases") -> None:
    """``--target`` and ``--interleave``, one wording for every command that writes ONNX."""
    from ._targets import INTERLEAVES, TARGETS

    parser.add_argument("--interleave", default=None, choices=INTERLEAVES,
                        help=f"how {phases} (concat: faster on onnxruntime CPU; default: the "
                             "target's)")
    parser.add_argument("--target", default=None, choices=tuple(TARGETS),
                        help="the ONNX consumer the model is for: forms it supports (default "
                             "onnxruntime; any: runs on onnxruntime, ReferenceEvaluator, OpenVINO, "
                             "tract and onnx2torch; tensorrt: no GridSample)")


def add_image_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-image-pixels`` and ``--max-image-bytes`` (see :mod:`pixeldcn_core.images`),
    for commands that read pictures or ``.npy`` inputs; :func:`main` applies them."""
    from .images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ENV_MAX_BYTES, ENV_MAX_PIXELS

    g = parser.add_argument_group("input size bound (checked before a picture is decoded)")
    g.add_argument("--max-image-pixels", default=None, metavar="N",
                   help=f"refuse pictures over N pixels (default {ENV_MAX_PIXELS} or "
                        f"{DEFAULT_MAX_PIXELS:,})")
    g.add_argument("--max-image-bytes", default=None, metavar="N",
                   help=f"refuse pictures and .npy arrays that decode to over N bytes (default "
                        f"{ENV_MAX_BYTES} or {DEFAULT_MAX_BYTES:,})")


def _apply_image_limits(args: argparse.Namespace) -> None:
    """The command's --max-image-* flags, else the environment's bound (each run afresh)."""
    pixels = getattr(args, "max_image_pixels", None)
    nbytes = getattr(args, "max_image_bytes", None)
    from .images import parse_count, set_limits

    set_limits(None if pixels is None else parse_count(pixels, "--max-image-pixels"),
               None if nbytes is None else parse_count(nbytes, "--max-image-bytes"))


_ROLE = re.compile(r":[a-z]+:`~?([^`<]+?)(?:\s*<[^`>]*>)?`")


def plain(text: str) -> str:
    """Help text without reST markup: ``:func:`~a.b``` becomes ``a.b``, double backticks go."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def attribute_help(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a Google-style class docstring, in
    plain text (a line ``a, b: text`` documents both), for flags generated from a dataclass."""
    import inspect

    doc = inspect.getdoc(cls) or ""
    helps: dict[str, str] = {}
    current: list[str] = []
    for line in doc.split("Attributes:", 1)[-1].splitlines():
        match = re.match(r"    ([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*): ?(.*)", line)
        if match:
            current = match.group(1).split(", ")
            for name in current:
                helps[name] = match.group(2)
        elif line.startswith(" " * 8) and current:
            for name in current:
                helps[name] += " " + line.strip()
        elif line.strip():  # another section
            current = []
    return {k: plain(v).replace("%", "%%") for k, v in helps.items()}


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip reST markup from every description, epilog and help below ``parser``."""
    for attr in ("description", "epilog"):
        if getattr(parser, attr):
            setattr(parser, attr, plain(getattr(parser, attr)))
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.help:
                    choice.help = plain(choice.help)
            for sub in set(action.choices.values()):
                _plain_help(sub)


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
    _plain_help(parser)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, UnicodeDecodeError):
        text = f"not UTF-8 text ({err.reason} at byte {err.start})"
    elif isinstance(err, OSError) and err.filename is not None:
        text = f"{err.strerror or type(err).__name__}: {str(err.filename)!r}"
    return text


def _run(args: argparse.Namespace, name: str) -> int:
    """Run a parsed command's handler: one line per error, exit codes as :data:`EXIT_CODES`."""
    try:
        _apply_image_limits(args)
        return int(args.func(args) or 0)
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except PixelDCNError as err:
        print(f"{name}: error: {_one_line(err)}", file=sys.stderr)
        return exit_code(err)
    except (OSError, UnicodeError) as err:  # a file the command was pointed at
        print(f"{name}: error: {_one_line(err)}", file=sys.stderr)
        return exit_code(err)
    except Exception as err:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"{name}: internal error (please report it; {DEBUG_ENV}=1 shows the traceback): "
              f"{type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return 1


def _stdout_gone() -> int:
    """The reader of stdout went away: no traceback now, none when Python flushes at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``pixeldcn [--version] COMMAND ...``; returns the exit code."""
    name = "pixeldcn"
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"pixeldcn {__version__}")  # without loading the commands
        return 0
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        name = f"pixeldcn {args.command}"
        code = _run(args, name)
        sys.stdout.flush()  # a closed stdout fails here, not in Python's exit
        return code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (pixeldcn ... | head)
        return _stdout_gone()


def run_command(register: Callable[[Any], None], command: str,
                argv: Sequence[str] | None = None) -> int:
    """Run one command without the entry points: ``python -m <package>.cli_NAME ARGS`` (the
    module's ``main`` calls this with its own ``register``). Same errors and exit codes."""
    name = f"pixeldcn {command}"
    try:
        parser = argparse.ArgumentParser(prog="pixeldcn")
        register(parser.add_subparsers(dest="command", required=True))
        _plain_help(parser)
        args = parser.parse_args([command, *(sys.argv[1:] if argv is None else argv)])
        code = _run(args, name)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_gone()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
