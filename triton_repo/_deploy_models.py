"""What the manifests need from each model of a repository (:class:`ModelSummary`), read from the
models' production configs (``config.pbtxt``, generated from :class:`ServingOptions` by
:func:`write_repository`) in a local folder or ``s3://BUCKET/PREFIX`` (:func:`read_models`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from ._config import MAX_REQUEST_BYTES_KEY, config_from_text
from ._errors import ConfigError
from ._s3 import S3Location, is_s3_url

__all__ = ["ModelSummary", "read_models"]


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """What the manifests need from one model's production config.

    Attributes:
        name: the model.
        gpu: ``instance_group`` is ``KIND_GPU``.
        instances: instances per device.
        max_batch_size: 0 for a model without batching.
        max_request_bytes: the config's ``max_request_bytes`` parameter (None: unset).
        trt_cache_path: TensorRT engine cache folder (needs a writable volume), or None.
    """

    name: str
    gpu: bool
    instances: int
    max_batch_size: int
    max_request_bytes: int | None
    trt_cache_path: str | None

    @classmethod
    def from_config_text(cls, text: str) -> ModelSummary:
        config = config_from_text(text)
        if not config.name:
            raise ConfigError("a config.pbtxt names no model (name: ...); expected the model's config")
        groups = list(config.instance_group) or []
        gpu = any(g.kind == 1 for g in groups) or not groups  # KIND_GPU = 1; Triton's default: GPU
        instances = max((g.count or 1 for g in groups), default=1)
        limit = ""
        if MAX_REQUEST_BYTES_KEY in config.parameters:
            limit = config.parameters[MAX_REQUEST_BYTES_KEY].string_value
        cache = None
        for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
            cache = accelerator.parameters.get("trt_engine_cache_path") or cache
        try:
            max_request_bytes = int(limit) if limit else None
        except ValueError:
            raise ConfigError(f"model {config.name!r}: parameter {MAX_REQUEST_BYTES_KEY} is "
                              f"{limit!r}; expected an integer number of bytes") from None
        return cls(config.name, gpu, instances, int(config.max_batch_size), max_request_bytes, cache)


def read_models(source: str | os.PathLike[str], *, client: Any = None) -> list[ModelSummary]:
    """The models of a repository: a local folder or ``s3://BUCKET/PREFIX`` (read with boto3)."""
    texts: list[str] = []
    if is_s3_url(source):
        from ._s3 import s3_client
        from ._s3_repository import list_repository

        location = S3Location.parse(str(source))
        client = client or s3_client()
        for name, model in list_repository(str(source), client=client).items():
            if model.policy == "no config":
                continue
            body = client.get_object(Bucket=location.bucket, Key=location.key(name, "config.pbtxt"))["Body"]
            texts.append(_utf8(body.read(), location.key(name, "config.pbtxt")))
    else:
        folder = pathlib.Path(source)
        if not folder.is_dir():
            raise ConfigError(f"model repository {str(source)!r} is not a folder or an s3:// URL")
        texts = [_utf8(p.read_bytes(), str(p)) for p in sorted(folder.glob("*/config.pbtxt"))]
    if not texts:
        raise ConfigError(f"model repository {str(source)!r} holds no model (no */config.pbtxt)")
    return [ModelSummary.from_config_text(t) for t in texts]


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
