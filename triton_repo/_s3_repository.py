"""An ``s3://BUCKET/PREFIX`` model repository as it is read: its models, their versions, version
policies (a push's pin) and tombstones (versions withdrawn with
:func:`~triton_repo._s3_push.remove_version`).

- :class:`ServerRepository` is what :class:`~triton_repo.LocalTritonServer` needs of a bucket: the
  URL Triton takes, the credentials for the server's environment, and the models to load (its
  supervisor lists the bucket instead of letting Triton poll it, see :mod:`triton_repo._s3_push`).
- :func:`list_repository` lists the models with their versions and policies (``pixeldcn repo
  ls``); the policy helpers (:func:`_with_policy`, :func:`_served`, :func:`_pin`) are what a push
  or a removal pins and releases.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

from ._config import config_from_text, config_to_text
from ._repository import LOCAL_CONFIG_NAME
from ._s3 import (
    _CREDENTIAL_VARS,
    S3Error,
    S3Location,
    _delete,
    _fail,
    _list_keys,
    _put,
    _read,
    s3_client,
    triton_server_env,
    triton_url,
)

__all__ = ["CONFIG_KEYS", "TOMBSTONE_KEY", "RemoteModel", "ServerRepository", "list_repository"]

#: The configs of a model, in the order a push releases them: a local server falls back to
#: config.pbtxt (a backend it lacks) while configs/local.pbtxt is missing.
CONFIG_KEYS = (f"configs/{LOCAL_CONFIG_NAME}.pbtxt", "config.pbtxt")
#: The tombstone of a model: ``{"withdrawn": [versions]}``, written by
#: :func:`~triton_repo._s3_push.remove_version`; a push skips these versions unless told to
#: republish them.
TOMBSTONE_KEY = "withdrawn.json"


@dataclasses.dataclass(frozen=True)
class ServerRepository:
    """An ``s3://`` repository as a local tritonserver needs it.

    Attributes:
        url: ``s3://BUCKET/PREFIX`` as the user gave it.
        triton_url: the form Triton 2.51 takes (endpoint inside the URL).
        credentials: variables for the server's environment (never its command line).
    """

    url: str
    triton_url: str
    credentials: dict[str, str] = dataclasses.field(repr=False)
    #: The boto3 client the server's supervisor lists the bucket with.
    client: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_url(cls, url: str, *, client: Any = None) -> ServerRepository:
        location = S3Location.parse(url)
        client = client or s3_client()
        return cls(location.url(), triton_url(location, client), triton_server_env(client), client)

    def models(
        self, is_valid: Callable[[str], bool], skipped: dict[str, str] | None = None
    ) -> dict[str, tuple]:
        """``{model: fingerprint}`` of the models in the bucket, like
        :func:`~triton_repo._supervisor.repository_models` for a folder (one listing).

        A model counts once its ``config.pbtxt`` is there (a push uploads it last); the
        fingerprint changes when a config is rewritten (pin, release) or a version folder
        appears or vanishes, not while a version's files land (a pin covers those).

        Raises:
            S3Error: the bucket cannot be listed (the caller keeps what it has loaded).
        """
        location = S3Location.parse(self.url)
        base = location.key() + "/" if location.prefix else ""
        found: dict[str, dict[str, Any]] = {}
        try:
            paginator = (self.client or s3_client()).get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=location.bucket, Prefix=base):
                for item in page.get("Contents", []):
                    name, _, rest = item["Key"][len(base) :].partition("/")
                    model = found.setdefault(name, {"configs": [], "versions": set()})
                    if rest in CONFIG_KEYS:
                        model["configs"].append((rest, item.get("ETag", ""), str(item.get("LastModified"))))
                    head = rest.partition("/")[0]
                    if head.isdigit() and rest != head:
                        model["versions"].add(head)
        except Exception as exc:
            raise _fail("cannot list", str(location), exc) from exc
        models: dict[str, tuple] = {}
        for name, model in sorted(found.items()):
            if not is_valid(name):
                continue
            if not any(c[0] == "config.pbtxt" for c in model["configs"]):
                if skipped is not None:
                    skipped[name] = "no config.pbtxt (an upload in progress, or not a model)"
                continue
            models[name] = (tuple(sorted(model["configs"])), tuple(sorted(model["versions"])))
        return models

    def server_env(self, env: dict[str, str], mount_dir: pathlib.Path) -> dict[str, str]:
        """``env`` with this repository's credentials and a private folder for Triton's copies.

        Triton copies every model it loads from S3 into ``TRITON_AWS_MOUNT_DIRECTORY`` (default
        ``/tmp/folderXXXXXX``, left behind when the server is killed); ``mount_dir`` (created
        0700) lives in the launcher's temp folder and is removed with it.
        """
        env = {k: v for k, v in env.items() if k not in _CREDENTIAL_VARS}
        env.update(self.credentials)
        mount_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env["TRITON_AWS_MOUNT_DIRECTORY"] = str(mount_dir)
        return env


# ------------------------------------------------------------------------------ listing


@dataclasses.dataclass(frozen=True)
class RemoteModel:
    """A model folder in object storage.

    Attributes:
        versions: version folders present (complete or not).
        policy: ``"latest N"``, ``"all"``, ``"pinned [...]"`` (a push or removal in progress or
            interrupted), or ``"no config"``.
        files: version -> {relative path: size}.
        withdrawn: versions removed with :func:`~triton_repo._s3_push.remove_version` (its
            tombstone): a push skips them unless ``republish``.
    """

    name: str
    versions: tuple[int, ...]
    policy: str
    files: dict[int, dict[str, int]]
    withdrawn: tuple[int, ...] = ()


def _remote_model(client: Any, location: S3Location, name: str) -> RemoteModel:
    base = location.key(name) + "/"
    keys = _list_keys(client, location.bucket, base)
    files: dict[int, dict[str, int]] = {}
    for key, size in keys.items():
        head, _, rest = key[len(base) :].partition("/")
        if head.isdigit() and head == str(int(head)) and int(head) > 0 and rest:
            files.setdefault(int(head), {})[rest] = size
    text = _read(client, location.bucket, base + "config.pbtxt") if base + "config.pbtxt" in keys else None
    withdrawn = _read_tombstone(client, location, name) if base + TOMBSTONE_KEY in keys else []
    return RemoteModel(name, tuple(sorted(files)), _policy_text(text), files, tuple(withdrawn))


def _read_tombstone(client: Any, location: S3Location, name: str) -> list[int]:
    """The versions of ``name`` withdrawn from the bucket (its ``withdrawn.json``; none: [])."""
    key = location.key(name, TOMBSTONE_KEY)
    text = _read(client, location.bucket, key)
    if text is None:
        return []
    try:
        versions = json.loads(text)["withdrawn"]
        if not isinstance(versions, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in versions
        ):
            raise ValueError("not a list of integers >= 1")
    except (ValueError, KeyError, TypeError) as exc:
        raise S3Error(
            f"s3://{location.bucket}/{key} is not a tombstone ({exc}); expected "
            '{"withdrawn": [VERSION, ...]}: fix or delete it'
        ) from None
    return sorted(set(versions))


def _write_tombstone(client: Any, location: S3Location, name: str, versions: Iterable[int]) -> None:
    """Record ``versions`` as withdrawn (an empty set deletes the tombstone)."""
    versions = sorted(set(versions))
    key = location.key(name, TOMBSTONE_KEY)
    if versions:
        _put(client, location.bucket, key, (json.dumps({"withdrawn": versions}) + "\n").encode())
    else:
        _delete(client, location.bucket, [key])


def _policy_text(text: str | None) -> str:
    if text is None:
        return "no config"
    policy = config_from_text(text).version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "specific":
        return f"pinned {sorted(policy.specific.versions)}"
    if which == "all":
        return "all"
    return f"latest {policy.latest.num_versions or 1}"


def list_repository(url: str, *, client: Any = None) -> dict[str, RemoteModel]:
    """The models under ``s3://BUCKET/PREFIX``, with their versions and version policy."""
    location = S3Location.parse(url)
    client = client or s3_client()
    base = location.key() + "/" if location.prefix else ""
    names: set[str] = set()
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=base, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.add(common["Prefix"][len(base) :].rstrip("/"))
    except Exception as exc:
        raise _fail("cannot list", str(location), exc) from exc
    return {name: _remote_model(client, location, name) for name in sorted(names)}


# ------------------------------------------------------------------------------ pinning


def _with_policy(text: str, versions: Iterable[int] | None, num_versions: int | None = None) -> str:
    """``text`` (a config) with its version policy replaced: pinned to ``versions`` or latest."""
    config = config_from_text(text)
    config.ClearField("version_policy")
    if versions is not None:
        config.version_policy.specific.versions.extend(sorted(versions))
    else:
        config.version_policy.latest.num_versions = num_versions or 1
    return config_to_text(config)


def _served(text: str, versions: Iterable[int]) -> list[int]:
    """The versions a server serves under the policy of config ``text``."""
    present = sorted(versions)
    policy = config_from_text(text).version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "specific":
        return sorted(set(policy.specific.versions) & set(present))
    if which == "all":
        return present
    n = policy.latest.num_versions or 1
    return present[-n:]


def _pin(client: Any, location: S3Location, name: str, versions: list[int]) -> None:
    """Pin both remote configs of ``name`` to ``versions`` (local flavour first)."""
    for key in reversed(CONFIG_KEYS):
        full = location.key(name, key)
        text = _read(client, location.bucket, full)
        if text is None:
            continue
        pinned = _with_policy(text, versions)
        if pinned != text:
            _put(client, location.bucket, full, pinned.encode("utf-8"))
