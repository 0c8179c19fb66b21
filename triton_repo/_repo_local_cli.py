"""``pixeldcn repo write`` / ``rollback`` / ``history``: local model repositories.

``write`` builds :class:`~triton_repo.ServingOptions` from flags generated from the dataclass
itself (its fields, types and the docstring's ``Attributes`` section), so that the options are
described once. Errors are :class:`triton_repo.TritonRepoError`, which ``pixeldcn`` prints as
one line (exit 2 for bad input, 1 for a failure).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import pathlib
import re
import typing
from typing import Any

__all__ = ["add_local_commands", "serving_options_arguments", "serving_options_from_args"]

_PREFIX = "opt_"


def _field_help() -> dict[str, str]:
    """``{field: first sentence}`` from the ``Attributes:`` section of ServingOptions' docstring."""
    from ._config import ServingOptions

    doc = inspect.getdoc(ServingOptions) or ""
    section = doc.split("Attributes:", 1)[-1]
    helps: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"\s{4}(\w+): (.*)", line)
        if match:
            current = match.group(1)
            helps[current] = match.group(2)
        elif current and line.startswith(" " * 8):
            helps[current] += " " + line.strip()
    roles = re.compile(r":\w+:`~?([^`]+)`")
    return {k: roles.sub(r"\1", v).replace("%", "%%").replace("``", "") for k, v in helps.items()}


def serving_options_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`ServingOptions` field (``--max-batch-size``, ``--no-warmup``...)."""
    from ._config import ServingOptions

    hints = typing.get_type_hints(ServingOptions)
    helps = _field_help()
    group = parser.add_argument_group("serving options (triton_repo.ServingOptions)")
    for field in dataclasses.fields(ServingOptions):
        flag = "--" + field.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": _PREFIX + field.name, "default": None, "metavar": field.name.upper()}
        kw["help"] = f"{helps.get(field.name, '')} (default: {field.default!r})"
        hint = hints[field.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
            del kw["metavar"]
        elif hint is int or args == [int]:
            kw["type"] = int
        elif hint is str or args == [str]:
            kw["type"] = str
        elif field.name in ("preferred_batch_sizes", "warmup_shape"):
            kw.update(type=int, nargs="+", metavar="N")
        else:  # pragma: no cover - a new field of another type needs a flag type here
            continue
        group.add_argument(flag, **kw)


def serving_options_from_args(args: argparse.Namespace):
    """The :class:`ServingOptions` the flags ask for (unset flags keep the defaults)."""
    from ._config import ServingOptions

    given = {}
    for field in dataclasses.fields(ServingOptions):
        value = getattr(args, _PREFIX + field.name, None)
        if value is not None:
            given[field.name] = tuple(value) if isinstance(value, list) else value
    return ServingOptions(**given)


def add_local_commands(repo_sub: Any) -> None:
    """Add ``write``, ``rollback`` and ``history`` to the ``pixeldcn repo`` sub-parsers."""
    write = repo_sub.add_parser(
        "write",
        help="write an ONNX model as a new version of MODEL in a local repository",
        description=(
            "Write ONNX as the next version of MODEL in REPO (created if missing), atomically, "
            "with the production config (config.pbtxt) and the local one (configs/local.pbtxt)."
        ),
    )
    write.add_argument("repo", type=pathlib.Path, metavar="REPO", help="model repository folder")
    write.add_argument("model", metavar="MODEL", help="model name (letters, digits, _ - .)")
    write.add_argument("onnx", type=pathlib.Path, metavar="ONNX", help="the exported model")
    write.add_argument("--version", type=int, default=None, help="version number (default: next)")
    write.add_argument("--keep-versions", type=int, default=None, help="prune all but the newest N")
    write.add_argument("--external-data", choices=("auto", "inline", "keep"), default="auto")
    serving_options_arguments(write)
    write.set_defaults(func=_write)

    rollback = repo_sub.add_parser(
        "rollback",
        help="serve the previous version of MODEL again (safe at any moment, even mid-load)",
        description=(
            "Publish the version before the served one again, under a new number, so that a "
            "server (local or Triton polling the folder) loads it beside the served version "
            "and switches when it is ready: nothing is deleted, readiness never drops. Run it "
            "again to go one more version back."
        ),
    )
    rollback.add_argument("repo", type=pathlib.Path, metavar="REPO", help="model repository folder")
    rollback.add_argument("model", metavar="MODEL", help="model name")
    rollback.set_defaults(func=_rollback)

    history = repo_sub.add_parser(
        "history", help="the versions of MODEL that count (rolled-back ones left out), oldest first"
    )
    history.add_argument("repo", type=pathlib.Path, metavar="REPO", help="model repository folder")
    history.add_argument("model", metavar="MODEL", help="model name")
    history.set_defaults(func=_history)


def _write(args: argparse.Namespace) -> int:
    from ._repository import write_repository

    options = serving_options_from_args(args)
    version = write_repository(
        args.repo, args.model, args.onnx, options=options, version=args.version,
        keep_versions=args.keep_versions, external_data=args.external_data,
    )  # fmt: skip
    print(f"wrote {version}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    import json

    from ._repository import VERSION_INFO_FILENAME, rollback

    version = rollback(args.repo, args.model)
    source = json.loads((version / VERSION_INFO_FILENAME).read_text())["source"]
    print(f"rolled back {args.model}: version {version.name} serves version {source}'s files")
    return 0


def _history(args: argparse.Namespace) -> int:
    from ._errors import RepositoryError
    from ._repository import history, validate_model_name

    validate_model_name(args.model)
    if not (args.repo / args.model).is_dir():
        raise RepositoryError(f"model {args.model!r} is not in the repository {str(args.repo)!r}")
    print(" ".join(str(v) for v in history(args.repo / args.model)))
    return 0

