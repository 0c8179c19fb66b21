"""``pixeldcn repo ...``: manage model repositories (local folders and ``s3://`` buckets).

Registered in the ``pixeldcn.commands`` entry-point group; :func:`register` adds ``repo`` with
its sub-commands. Each sub-command module adds itself through :data:`SUBCOMMANDS` (a function
taking the ``repo`` sub-parsers), so that several owners can add sub-commands without touching
each other's code. Errors are :class:`triton_repo.TritonRepoError` (a ``PixelDCNError``), which
``pixeldcn`` prints as one line: exit code 2 for bad input, 1 for a failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["SUBCOMMANDS", "register"]


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
        type=float,
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
    rm.add_argument("--settle-secs", type=float, default=3.0, help="seconds to wait after pinning")
    _s3_options(rm)
    rm.set_defaults(func=_rm)


#: Functions adding sub-commands to ``pixeldcn repo``; append yours.
SUBCOMMANDS: list[Callable[[Any], None]] = [_add_s3_commands]

from ._repo_local_cli import add_local_commands  # noqa: E402 - write, rollback, history (local)

SUBCOMMANDS.append(add_local_commands)


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
    from ._s3 import S3Location, S3LocationError, push_repository

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
    from ._s3 import S3Location, list_repository

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
    from ._s3 import S3Location, S3LocationError, remove_version

    S3Location.parse(args.url)
    if args.settle_secs < 0:
        raise S3LocationError(f"--settle-secs={args.settle_secs}; expected >= 0")
    left = remove_version(
        args.url, args.model, args.version, client=_client(args), settle_secs=args.settle_secs
    )
    print(f"removed {args.model} version {args.version}; versions left: {left}")
    return 0
