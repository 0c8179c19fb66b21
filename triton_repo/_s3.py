"""Model repositories in S3-compatible object storage (AWS S3, MinIO, Ceph), served by Triton.

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
that remain, deletes the version's objects, then releases the pin so that the deletion is seen.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from ._config import config_from_text, config_to_text
from ._errors import ConfigError, TritonNotInstalledError, TritonRepoError
from ._repository import LOCAL_CONFIG_NAME, list_versions, validate_model_name

__all__ = [
    "CONFIG_KEYS",
    "PushReport",
    "S3Error",
    "S3Location",
    "S3LocationError",
    "ServerRepository",
    "is_s3_url",
    "list_repository",
    "push_repository",
    "remove_version",
    "s3_client",
    "triton_server_env",
    "triton_url",
    "triton_url_for",
]

S3_EXTRA_HINT = "pip install 'pixeldcn[s3]'"
#: The configs of a model, in the order a push releases them: a local server falls back to
#: config.pbtxt (a backend it lacks) while configs/local.pbtxt is missing.
CONFIG_KEYS = (f"configs/{LOCAL_CONFIG_NAME}.pbtxt", "config.pbtxt")
#: Triton 2.51's S3 URL grammar (``src/filesystem/implementations/s3.h``).
_TRITON_PART_RE = re.compile(r"[0-9a-zA-Z._\-]+")
_BUCKET_RE = re.compile(r"[0-9a-z][0-9a-z.\-]{1,61}[0-9a-z]")
_HOST_RE = re.compile(r"[0-9a-zA-Z.\-]+")
_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
    "AWS_REGION", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
)  # fmt: skip
#: Seconds a push waits after pinning, so that a poll already under way ends before a new
#: version's first object lands.
DEFAULT_SETTLE_SECS = 3.0


class S3Error(TritonRepoError):
    """Object storage refused or failed an operation (message holds the bucket, key and reason)."""


class S3LocationError(S3Error, ValueError):
    """A malformed ``s3://`` URL, a name Triton cannot read, or an operation that makes no sense."""


def is_s3_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith("s3://")


@dataclasses.dataclass(frozen=True)
class S3Location:
    """``s3://BUCKET/PREFIX``: a bucket and a key prefix (no leading or trailing ``/``)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Parse ``s3://BUCKET[/PREFIX]``; every part must be one Triton can read.

        Raises:
            S3LocationError: not an ``s3://`` URL, bad bucket name, or a prefix part Triton
                cannot read.
        """
        if not is_s3_url(url):
            raise S3LocationError(f"repository {url!r}; expected s3://BUCKET/PREFIX")
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if ":" in bucket:
            raise S3LocationError(
                f"repository {url!r} names an endpoint ({bucket!r}); give s3://BUCKET/PREFIX and "
                "the endpoint through AWS_ENDPOINT_URL or --endpoint-url"
            )
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise S3LocationError(
                f"bucket {bucket!r} in {url!r}; expected 3-63 lower-case letters, digits, '.', '-'"
            )
        parts = [p for p in prefix.strip("/").split("/") if p]
        for part in parts:
            if not _TRITON_PART_RE.fullmatch(part) or part in (".", ".."):
                raise S3LocationError(
                    f"prefix part {part!r} in {url!r}; Triton reads only [0-9a-zA-Z._-] "
                    "in the parts of an S3 path (no '.' or '..')"
                )
        return cls(bucket, "/".join(parts))

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def __str__(self) -> str:
        return self.url()


# ------------------------------------------------------------------------------ client


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise TritonNotInstalledError(
            f"S3 repositories need boto3, which is not installed; install it with: {S3_EXTRA_HINT}"
        ) from exc
    return boto3


def s3_client(*, endpoint_url: str | None = None, profile: str | None = None) -> Any:
    """A boto3 S3 client from the standard AWS configuration.

    Environment (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ...), shared
    config and credentials files, and instance roles apply as in the AWS CLI; ``endpoint_url``
    and ``profile`` override them (MinIO, Ceph: ``endpoint_url="http://host:9000"``).
    """
    boto3 = _boto3()
    import botocore.config

    session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
    config = botocore.config.Config(retries={"max_attempts": 5, "mode": "standard"})
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)


def _fail(what: str, location: str, exc: Exception) -> S3Error:
    return S3Error(f"{what} {location}: {type(exc).__name__}: {exc}")


def triton_url(location: S3Location | str, client: Any) -> str:
    """The repository URL as Triton 2.51 takes it, for the endpoint ``client`` talks to.

    AWS itself: ``s3://bucket/prefix``; any other endpoint (MinIO, Ceph, moto):
    ``s3://[https://]host:port/bucket/prefix``, because Triton ignores ``AWS_ENDPOINT_URL``.
    """
    return triton_url_for(location, client.meta.endpoint_url)


def triton_url_for(location: S3Location | str, endpoint_url: str | None) -> str:
    """:func:`triton_url` for an endpoint given as a URL (``None``: AWS itself)."""
    if isinstance(location, str):
        location = S3Location.parse(location)
    path = f"{location.bucket}/{location.prefix}".rstrip("/")
    if not endpoint_url:
        return f"s3://{path}"
    endpoint = urllib.parse.urlsplit(endpoint_url)
    host = endpoint.hostname or ""
    if host.endswith(".amazonaws.com") or host == "amazonaws.com":
        return f"s3://{path}"
    if endpoint.scheme not in ("http", "https") or not _HOST_RE.fullmatch(host):
        raise S3LocationError(
            f"endpoint {endpoint_url!r}; expected http(s)://host[:port] where Triton reads only "
            f"[0-9a-zA-Z.-] in the host (got {host!r}; no IPv6 literal)"
        )
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    scheme = "https://" if endpoint.scheme == "https" else ""
    return f"s3://{scheme}{host}:{port}/{path}"


def triton_server_env(client: Any) -> dict[str, str]:
    """The variables that give tritonserver the client's credentials and region.

    Resolved through botocore (environment, profile, SSO, instance role), so the server needs no
    profile files; passed in its environment only, never on its command line or in a log.
    """
    env: dict[str, str] = {}
    credentials = client._request_signer._credentials  # resolved by botocore's chain
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        env["AWS_ACCESS_KEY_ID"] = frozen.access_key
        env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
    region = client.meta.region_name
    if region:
        env["AWS_DEFAULT_REGION"] = region
        env["AWS_REGION"] = region
    return env


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

    @classmethod
    def from_url(cls, url: str, *, client: Any = None) -> ServerRepository:
        location = S3Location.parse(url)
        client = client or s3_client()
        return cls(location.url(), triton_url(location, client), triton_server_env(client))

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


def _list_keys(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` with its size."""
    keys: dict[str, int] = {}
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                keys[item["Key"]] = int(item["Size"])
    except Exception as exc:
        raise _fail("cannot list", f"s3://{bucket}/{prefix}", exc) from exc
    return keys


def _read(client: Any, bucket: str, key: str) -> str | None:
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            return None
        raise _fail("cannot read", f"s3://{bucket}/{key}", exc) from exc
    try:
        return response["Body"].read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"s3://{bucket}/{key}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _put(client: Any, bucket: str, key: str, data: bytes) -> None:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data)
    except Exception as exc:
        raise _fail("cannot write", f"s3://{bucket}/{key}", exc) from exc


def _upload_file(client: Any, bucket: str, key: str, path: pathlib.Path) -> None:
    try:
        client.upload_file(str(path), bucket, key)
    except Exception as exc:
        raise _fail("cannot upload", f"{path.name} to s3://{bucket}/{key}", exc) from exc


def _delete(client: Any, bucket: str, keys: Iterable[str]) -> None:
    keys = sorted(keys)
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start : start + 1000]]
        try:
            response = client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        except Exception as exc:
            raise _fail("cannot delete from", f"s3://{bucket}", exc) from exc
        if response.get("Errors"):
            raise S3Error(f"cannot delete from s3://{bucket}: {response['Errors'][:3]}")


@dataclasses.dataclass(frozen=True)
class RemoteModel:
    """A model folder in object storage.

    Attributes:
        versions: version folders present (complete or not).
        policy: ``"latest N"``, ``"all"``, ``"pinned [...]"`` (a push or removal in progress or
            interrupted), or ``"no config"``.
        files: version -> {relative path: size}.
    """

    name: str
    versions: tuple[int, ...]
    policy: str
    files: dict[int, dict[str, int]]


def _remote_model(client: Any, location: S3Location, name: str) -> RemoteModel:
    base = location.key(name) + "/"
    keys = _list_keys(client, location.bucket, base)
    files: dict[int, dict[str, int]] = {}
    for key, size in keys.items():
        head, _, rest = key[len(base) :].partition("/")
        if head.isdigit() and head == str(int(head)) and int(head) > 0 and rest:
            files.setdefault(int(head), {})[rest] = size
    text = _read(client, location.bucket, base + "config.pbtxt") if base + "config.pbtxt" in keys else None
    return RemoteModel(name, tuple(sorted(files)), _policy_text(text), files)


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


# ------------------------------------------------------------------------------ push


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
    """

    url: str
    uploaded: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    pinned: dict[str, list[int]] = dataclasses.field(default_factory=dict)


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
) -> PushReport:
    """Publish a local model repository (or some of its models / versions) to ``s3://...``.

    A server polling the bucket never sees a half-uploaded version (see the module docstring):
    the model is pinned to the versions it serves now, the new versions are uploaded, then the
    configs are released. Versions already complete in the bucket (same files, same sizes) are
    skipped, so running the same push again completes one that was interrupted.

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
        _push_model(client, location, repo / name, wanted, settle_secs, report, notify)
    return report


def _push_model(
    client: Any,
    location: S3Location,
    model_dir: pathlib.Path,
    wanted: set[int] | None,
    settle_secs: float,
    report: PushReport,
    notify: Callable[[str, str], None],
) -> None:
    name = model_dir.name
    local_versions = list_versions(model_dir)
    if wanted is not None:
        missing = sorted(wanted - set(local_versions))
        if missing:
            raise S3LocationError(f"versions {missing} of model {name!r} are not in {model_dir.parent}")
        local_versions = sorted(wanted)
    remote = _remote_model(client, location, name)
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
    that will be served without it (servers unload it), its objects are deleted, and the configs
    are released (back to their policy), which makes the servers rescan.

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
    for key in CONFIG_KEYS:  # release: the policy the configs had; the change makes servers rescan
        if texts[key] is not None:
            _put(client, location.bucket, location.key(name, key), texts[key].encode("utf-8"))
    return left
