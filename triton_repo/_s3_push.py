"""Publish a model repository to S3-compatible object storage (AWS S3, MinIO, Ceph) so that a
polling Triton never loads a half-uploaded version, and withdraw a version the same way.

What Triton 2.51 does while it polls a repository in S3 (measured with moto's S3 server):

- it sees every object the moment it lands, and loads whatever version folder it finds, even one
  whose upload is not finished: a version holding ``model.onnx`` but not yet ``model.py`` stays
  LOADING forever, stops the polling, and the server then ignores SIGINT and SIGTERM; no upload
  order prevents that;
- a model folder is reloaded when any object under it changes (newer ``LastModified``); a
  *deleted* version is not noticed until a config changes;
- every load copies the whole model folder to ``$TRITON_AWS_MOUNT_DIRECTORY`` (default
  ``/tmp/folderXXXXXX``);
- it takes a custom endpoint only inside the URL (``s3://host:port/bucket/prefix``), ignores
  ``AWS_ENDPOINT_URL``, reads credentials from its environment, and accepts only
  ``[0-9a-zA-Z._-]`` in the parts of the path.

So a push *pins* the model first: both configs (``config.pbtxt`` and ``configs/local.pbtxt``) get
``version_policy { specific { versions: [...] } }`` listing the versions served now; a server
polling during the upload reloads the same versions and never looks at the new folder. The new
version's files are uploaded, then the configs are *released* (the local repository's own
configs, ``latest`` policy), and the next poll loads the complete version. A push killed half-way
leaves the model pinned to its old versions: servers (restarted ones too) keep serving them, and
the next push completes the version and releases the pin. A brand-new model is uploaded version
files first and configs last: Triton ignores a model folder without a config (it fails to load
and is retried; see ``docs/deploy.md``). :func:`remove_version` pins the model to the versions
that remain, deletes the version's objects, records it in the model's tombstone
(``withdrawn.json``: a later push skips it unless ``republish``), then releases the pin so that
the deletion is seen.

:class:`~triton_repo.LocalTritonServer` does not use Triton's polling: its supervisor lists the
bucket (:meth:`~triton_repo._s3_repository.ServerRepository.models`) and loads what changed
through the model-control API, so that it can restart a dead stub; the pin protects its loads
the same way.

Reading the bucket (listing, version policies, tombstones) is :mod:`triton_repo._s3_repository`;
the location, client and object operations are :mod:`triton_repo._s3`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._repository import list_versions, validate_model_name
from ._s3 import (
    S3Error,
    S3Location,
    S3LocationError,
    _delete,
    _list_keys,
    _put,
    _read,
    _upload_file,
    s3_client,
)
from ._s3_repository import (
    CONFIG_KEYS,
    TOMBSTONE_KEY,
    _pin,
    _remote_model,
    _served,
    _write_tombstone,
)

__all__ = ["DEFAULT_SETTLE_SECS", "PushReport", "push_repository", "remove_version"]

#: Seconds a push waits after pinning, so that a poll already under way ends before a new
#: version's first object lands.
DEFAULT_SETTLE_SECS = 3.0


@dataclasses.dataclass
class PushReport:
    """What :func:`push_repository` did.

    Attributes:
        url: the destination.
        uploaded: model -> versions uploaded.
        skipped: model -> versions already complete in the bucket.
        files: objects written (version files and configs).
        bytes: bytes uploaded.
        pinned: model -> versions the model was pinned to during the upload.
        withdrawn: model -> local versions not pushed because they were removed from the
            bucket (:func:`remove_version`); ``republish=True`` pushes them again.
    """

    url: str
    uploaded: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    pinned: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    withdrawn: dict[str, list[int]] = dataclasses.field(default_factory=dict)


def _local_files(version_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    files: dict[str, pathlib.Path] = {}
    for path in sorted(version_dir.rglob("*")):
        if path.is_symlink():
            raise S3LocationError(f"{path} is a symbolic link; a pushed version holds plain files only")
        if path.is_file():
            rel = path.relative_to(version_dir).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            files[rel] = path
    return files


def push_repository(
    local_repo: str | os.PathLike[str],
    url: str,
    *,
    models: Iterable[str] | None = None,
    versions: Iterable[int] | None = None,
    client: Any = None,
    settle_secs: float = DEFAULT_SETTLE_SECS,
    progress: Callable[[str, str], None] | None = None,
    republish: bool = False,
) -> PushReport:
    """Publish a local model repository (or some of its models / versions) to ``s3://...``.

    A server polling the bucket never sees a half-uploaded version (see the module docstring):
    the model is pinned to the versions it serves now, the new versions are uploaded, then the
    configs are released. Versions already complete in the bucket (same files, same sizes) are
    skipped, so running the same push again completes one that was interrupted. A version
    withdrawn with :func:`remove_version` stays withdrawn (the model's tombstone in the bucket):
    it is not pushed again unless ``republish``.

    Args:
        local_repo: a repository written by :func:`write_repository`.
        url: ``s3://BUCKET/PREFIX``.
        models: model names to push; default all.
        versions: version numbers to push; default every local version missing in the bucket.
        client: a boto3 S3 client; default :func:`s3_client` (standard AWS configuration).
        settle_secs: wait after pinning an existing model, before its first new object lands,
            so that a poll under way ends first (at least the servers' poll duration).
        progress: called as ``progress(event, key)`` with ``event`` in ``"pin"``, ``"upload"``,
            ``"release"``, after each object is written.
        republish: push withdrawn versions too (those in ``versions``, default all the local
            ones), and take them off the tombstone.

    Raises:
        S3LocationError: bad URL, no such local repository or model, a symbolic link.
        S3Error: the store refused an operation.
    """
    location = S3Location.parse(url)
    repo = pathlib.Path(local_repo)
    if not repo.is_dir():
        raise S3LocationError(f"local repository {str(local_repo)!r} is not a folder")
    available = sorted(p.name for p in repo.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())
    names = list(models) if models is not None else available
    for name in names:
        validate_model_name(name)
        if name not in available:
            raise S3LocationError(
                f"model {name!r} is not in {str(local_repo)!r} (no {name}/config.pbtxt); "
                f"found {available}"
            )
    if not names:
        raise S3LocationError(f"local repository {str(local_repo)!r} holds no model (no */config.pbtxt)")
    client = client or s3_client()
    wanted = None if versions is None else {int(v) for v in versions}
    report = PushReport(url=location.url())
    notify = progress or (lambda event, key: None)
    for name in names:
        _push_model(client, location, repo / name, wanted, settle_secs, report, notify, republish)
    return report


def _push_model(
    client: Any,
    location: S3Location,
    model_dir: pathlib.Path,
    wanted: set[int] | None,
    settle_secs: float,
    report: PushReport,
    notify: Callable[[str, str], None],
    republish: bool = False,
) -> None:
    name = model_dir.name
    local_versions = list_versions(model_dir)
    if wanted is not None:
        missing = sorted(wanted - set(local_versions))
        if missing:
            raise S3LocationError(f"versions {missing} of model {name!r} are not in {model_dir.parent}")
        local_versions = sorted(wanted)
    remote = _remote_model(client, location, name)
    withdrawn = [v for v in local_versions if v in remote.withdrawn]
    if withdrawn and not republish:
        report.withdrawn[name] = withdrawn
        local_versions = [v for v in local_versions if v not in remote.withdrawn]
    todo: list[tuple[int, dict[str, pathlib.Path]]] = []
    for version in local_versions:
        files = _local_files(model_dir / str(version))
        sizes = {rel: path.stat().st_size for rel, path in files.items()}
        if remote.files.get(version) == sizes:
            report.skipped.setdefault(name, []).append(version)
        else:
            todo.append((version, files))
    configs = {
        key: (model_dir / key).read_text(encoding="utf-8")
        for key in CONFIG_KEYS
        if (model_dir / key).is_file()
    }
    remote_config = _read(client, location.bucket, location.key(name, "config.pbtxt"))
    if todo and remote_config is not None:
        # Pin to what the servers serve now (a pin left by an interrupted push stays as it is).
        complete = [v for v in remote.versions if v not in {t[0] for t in todo}]
        pinned = _served(remote_config, complete)
        _pin(client, location, name, pinned)
        report.pinned[name] = pinned
        notify("pin", location.key(name))
        if settle_secs > 0:
            time.sleep(settle_secs)
    for version, files in todo:
        for rel, path in files.items():
            key = location.key(name, str(version), rel)
            _upload_file(client, location.bucket, key, path)
            report.files += 1
            report.bytes += path.stat().st_size
            notify("upload", key)
        report.uploaded.setdefault(name, []).append(version)
    if republish and withdrawn:  # before the release: the versions count again
        _write_tombstone(client, location, name, set(remote.withdrawn) - set(withdrawn))
        notify("republish", location.key(name, TOMBSTONE_KEY))
    # Release: the local configs, production first, then the local flavour's.
    for key in CONFIG_KEYS:
        if key not in configs:
            continue
        full = location.key(name, key)
        if _read(client, location.bucket, full) != configs[key]:
            data = configs[key].encode("utf-8")
            _put(client, location.bucket, full, data)
            report.files += 1
            report.bytes += len(data)
            notify("release", full)


# ------------------------------------------------------------------------------ remove


def remove_version(
    url: str,
    name: str,
    version: int,
    *,
    client: Any = None,
    settle_secs: float = DEFAULT_SETTLE_SECS,
) -> list[int]:
    """Remove one version of ``name`` from ``s3://...`` the safe way; return the versions left.

    Triton does not notice a deleted version until a config changes, and would fail a load that
    copies a version while its objects are being deleted. So the model is pinned to the versions
    that will be served without it (servers unload it), its objects are deleted, the version is
    added to the model's tombstone (``withdrawn.json``: a later push does not upload it again
    unless told to republish), and the configs are released (back to their policy), which makes
    the servers rescan.

    Raises:
        S3LocationError: no such model or version, or it is the model's last version.
        S3Error: the store refused an operation.
    """
    location = S3Location.parse(url)
    validate_model_name(name)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise S3LocationError(f"version={version!r}; expected an integer >= 1")
    client = client or s3_client()
    remote = _remote_model(client, location, name)
    if remote.policy == "no config":
        raise S3LocationError(f"model {name!r} is not in {location} (no {name}/config.pbtxt)")
    if version not in remote.versions:
        raise S3LocationError(
            f"version {version} of model {name!r} is not in {location}; found {list(remote.versions)}"
        )
    left = [v for v in remote.versions if v != version]
    if not left:
        raise S3LocationError(
            f"version {version} is the only version of model {name!r}; a model needs one version "
            "(push a replacement first)"
        )
    if remote.policy.startswith("pinned"):
        raise S3Error(
            f"model {name!r} in {location} is {remote.policy}: a push or removal is in progress "
            "or was interrupted; run the push again to complete it first"
        )
    texts = {key: _read(client, location.bucket, location.key(name, key)) for key in CONFIG_KEYS}
    production = texts["config.pbtxt"]
    assert production is not None
    _pin(client, location, name, _served(production, left))
    if settle_secs > 0:
        time.sleep(settle_secs)
    prefix = location.key(name, str(version)) + "/"
    _delete(client, location.bucket, _list_keys(client, location.bucket, prefix))
    _write_tombstone(client, location, name, [*remote.withdrawn, version])
    for key in CONFIG_KEYS:  # release: the policy the configs had; the change makes servers rescan
        if texts[key] is not None:
            _put(client, location.bucket, location.key(name, key), texts[key].encode("utf-8"))
    return left
