"""``pixeldcn repo ...``: manage model repositories (local folders and ``s3://`` buckets).

Registered in the ``pixeldcn.commands`` entry-point group; :func:`register` adds ``repo`` with
its sub-commands: ``push``, ``ls``, ``rm`` (S3) and ``write``, ``rollback``, ``history`` (local
folders). Each group adds itself through :data:`SUBCOMMANDS` (a function taking the ``repo``
sub-parsers); append yours. ``write`` builds :class:`~triton_repo.ServingOptions` from flags
generated from the dataclass itself (its fields, types and the docstring's ``Attributes``
section), so that the options are described once. Errors are
:class:`triton_repo.TritonRepoError` (a ``PixelDCNError``), which ``pixeldcn`` prints as one
line: exit code 2 for bad input, 1 for a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import typing
from collections.abc import Callable
from typing import Any

from pixeldcn_core.cli import attribute_help, finite_float, run_command

__all__ = ["SUBCOMMANDS", "main", "register", "serving_options_arguments", "serving_options_from_args"]


def _s3_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="S3 API endpoint (MinIO, Ceph: http://host:9000); default: AWS_ENDPOINT_URL or AWS",
    )
    parser.add_argument("--profile", default=None, help="AWS profile (default: AWS_PROFILE or default)")


def _add_s3_commands(repo_sub: Any) -> None:
    push = repo_sub.add_parser(
        "push",
        help="publish a local model repository to s3://BUCKET/PREFIX",
        description=(
            "Upload LOCAL_REPO (written by write_repository) to s3://BUCKET/PREFIX so that a "
            "Triton server polling the bucket never loads a half-uploaded version: existing "
            "models are pinned to the versions they serve, the new versions are uploaded, then "
            "the configs are released. Versions already complete in the bucket are skipped; "
            "running an interrupted push again completes it. Credentials and endpoint come from "
            "the standard AWS configuration (environment, profiles, AWS_ENDPOINT_URL)."
        ),
    )
    push.add_argument("local_repo", metavar="LOCAL_REPO", help="local model repository folder")
    push.add_argument("url", metavar="s3://BUCKET/PREFIX", help="destination")
    push.add_argument("--model", action="append", default=None, help="push only this model (repeatable)")
    push.add_argument(
        "--version", type=int, action="append", default=None, help="push only this version (repeatable)"
    )
    push.add_argument(
        "--settle-secs",
        type=finite_float,
        default=3.0,
        help="seconds to wait after pinning, before uploading (>= one server poll; default 3)",
    )
    push.add_argument(
        "--republish", action="store_true",
        help="also push versions withdrawn with 'repo rm' (default: a withdrawn version stays withdrawn)",
    )  # fmt: skip
    _s3_options(push)
    push.set_defaults(func=_push)

    ls = repo_sub.add_parser(
        "ls",
        help="list the models and versions in s3://BUCKET/PREFIX",
        description="List models, their version folders and version policy (pinned = a push or "
        "removal in progress, or interrupted: push again to complete it).",
    )
    ls.add_argument("url", metavar="s3://BUCKET/PREFIX")
    _s3_options(ls)
    ls.set_defaults(func=_ls)

    rm = repo_sub.add_parser(
        "rm",
        help="remove one version of a model from s3://BUCKET/PREFIX, the safe way",
        description=(
            "Pin the model to the versions that remain (servers unload VERSION), delete its "
            "objects, record it as withdrawn (a later push skips it unless --republish), then "
            "release the pin so that polling servers rescan. Refuses the model's last version."
        ),
    )
    rm.add_argument("url", metavar="s3://BUCKET/PREFIX")
    rm.add_argument("model", metavar="MODEL")
    rm.add_argument("version", metavar="VERSION", type=int)
    rm.add_argument("--settle-secs", type=finite_float, default=3.0, help="seconds to wait after pinning")
    _s3_options(rm)
    rm.set_defaults(func=_rm)


# -- local repositories: write, rollback, history ----------------------------------------------
_PREFIX = "opt_"


def serving_options_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`ServingOptions` field (``--max-batch-size``, ``--no-warmup``...)."""
    from ._config import ServingOptions

    hints = typing.get_type_hints(ServingOptions)
    helps = attribute_help(ServingOptions)
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


#: Functions adding sub-commands to ``pixeldcn repo``; append yours.
SUBCOMMANDS: list[Callable[[Any], None]] = [_add_s3_commands, add_local_commands]


def register(subparsers: Any) -> None:
    """Add ``repo`` and its sub-commands to ``subparsers`` (from ``add_subparsers``)."""
    repo = subparsers.add_parser(
        "repo",
        help="manage model repositories (write / rollback / history; push to / list / remove from S3)",
        description="Manage model repositories: local folders and s3://BUCKET/PREFIX.",
    )
    repo_sub = repo.add_subparsers(dest="repo_command", metavar="SUBCOMMAND", required=True)
    for add in SUBCOMMANDS:
        add(repo_sub)


def _client(args: argparse.Namespace) -> Any:
    from ._s3 import s3_client

    return s3_client(endpoint_url=args.endpoint_url, profile=args.profile)


def _push(args: argparse.Namespace) -> int:
    from ._s3 import S3Location, S3LocationError
    from ._s3_push import push_repository

    S3Location.parse(args.url)  # a bad URL fails before any credential lookup
    if args.settle_secs < 0:
        raise S3LocationError(f"--settle-secs={args.settle_secs}; expected >= 0")

    def progress(event: str, key: str) -> None:
        if event != "upload":
            print(f"{event:8s} {key}", flush=True)

    report = push_repository(
        args.local_repo, args.url, models=args.model, versions=args.version,
        client=_client(args), settle_secs=args.settle_secs, progress=progress,
        republish=args.republish,
    )  # fmt: skip
    for name, versions in sorted(report.uploaded.items()):
        print(f"uploaded {name} versions {versions}")
    for name, versions in sorted(report.skipped.items()):
        print(f"skipped  {name} versions {versions} (complete in the bucket)")
    for name, versions in sorted(report.withdrawn.items()):
        print(f"withheld {name} versions {versions} (withdrawn with 'repo rm'; --republish to push them)")
    print(f"{report.files} objects, {report.bytes} bytes to {report.url}")
    return 0


def _printable(text: str) -> str:
    """``text`` with control, format and bidirectional characters escaped (``\\x1b``,
    ``\\u202e``): a name read from a bucket must not drive the terminal or reorder a line."""
    return "".join(
        c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _ls(args: argparse.Namespace) -> int:
    from ._s3 import S3Location
    from ._s3_repository import list_repository

    S3Location.parse(args.url)
    models = list_repository(args.url, client=_client(args))
    if not models:
        print(f"no model in {args.url}", file=sys.stderr)
    for name, model in models.items():
        versions = " ".join(str(v) for v in model.versions) or "-"
        withdrawn = "\twithdrawn " + " ".join(str(v) for v in model.withdrawn) if model.withdrawn else ""
        print(f"{_printable(name)}\tversions {versions}\t{_printable(model.policy)}{withdrawn}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from ._s3 import S3Location, S3LocationError
    from ._s3_push import remove_version

    S3Location.parse(args.url)
    if args.settle_secs < 0:
        raise S3LocationError(f"--settle-secs={args.settle_secs}; expected >= 0")
    left = remove_version(
        args.url, args.model, args.version, client=_client(args), settle_secs=args.settle_secs
    )
    print(f"removed {args.model} version {args.version}; versions left: {left}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m triton_repo.cli_repo SUBCOMMAND ...``: ``pixeldcn repo`` without the entry points."""
    return run_command(register, "repo", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
