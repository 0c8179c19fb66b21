"""Where an S3-compatible model repository lives and how to talk to it: ``s3://BUCKET/PREFIX``
parsed to what Triton 2.51 can read (:class:`S3Location`), a boto3 client from the standard AWS
configuration (:func:`s3_client`), the URL and environment a ``tritonserver`` needs for it
(:func:`triton_url`, :func:`triton_server_env`), and the object operations the rest of the S3
support is built on, each failing with an :class:`S3Error` naming the bucket and key.

Triton 2.51 takes a custom endpoint only inside the URL (``s3://host:port/bucket/prefix``),
ignores ``AWS_ENDPOINT_URL``, reads credentials from its environment, and accepts only
``[0-9a-zA-Z._-]`` in the parts of the path. Reading a repository is
:mod:`triton_repo._s3_repository`; publishing one is :mod:`triton_repo._s3_push`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from ._errors import ConfigError, TritonNotInstalledError, TritonRepoError

__all__ = [
    "S3Error",
    "S3Location",
    "S3LocationError",
    "is_s3_url",
    "s3_client",
    "triton_server_env",
    "triton_url",
    "triton_url_for",
]

S3_EXTRA_HINT = "pip install 'pixeldcn[s3]'"
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


# ------------------------------------------------------------------------------ objects


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
