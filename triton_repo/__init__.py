"""Serve pixeldcn ONNX models with NVIDIA Triton.

- :func:`write_repository` writes a model repository: ``config.pbtxt`` for Triton's ONNX Runtime
  backend on GPU (production) and ``configs/local.pbtxt`` for the Python backend on CPU (local),
  generated through Triton's own ``ModelConfig`` protobuf; every export becomes a new version,
  written atomically.
- :func:`push_repository` publishes a repository to ``s3://BUCKET/PREFIX`` so that a polling
  server never loads a half-uploaded version; :class:`LocalTritonServer` serves either.
- :class:`LocalTritonServer` runs the ``tritonserver`` shipped in nvidia-pytriton on that
  repository (CPU, no Docker).
- :class:`Client` sends arrays to a served model, checked against its metadata first;
  :class:`ReplicaClient` spreads them over several replicas and fails over (:func:`connect`
  picks one or the other from the URLs).
"""

from ._client import Client, ModelInfo
from ._config import ServingOptions, config_from_text, config_to_text
from ._errors import (
    ConfigError,
    InferenceInputError,
    ModelNameError,
    ModelNotFoundError,
    OptionsKeywordError,
    RepositoryError,
    ServerError,
    ServerStartError,
    ServerTimeoutError,
    ServerUnavailableError,
    TritonNotInstalledError,
    TritonRepoError,
)
from ._replicas import LocalReplicas, ReplicaClient, connect
from ._repository import (
    history,
    list_versions,
    remove_stale_staging,
    rollback,
    validate_model_name,
    write_repository,
)
from ._s3 import S3Error, S3LocationError
from ._s3_push import push_repository, remove_version
from ._s3_repository import list_repository
from ._server import LocalTritonServer
from ._server_config import ServerConfig

__all__ = [
    # repository
    "write_repository",
    "list_versions",
    "history",
    "rollback",
    "remove_stale_staging",
    "validate_model_name",
    "ServingOptions",
    "config_from_text",
    "config_to_text",
    # object storage (s3://BUCKET/PREFIX)
    "push_repository",
    "list_repository",
    "remove_version",
    # serving
    "LocalTritonServer",
    "ServerConfig",
    "LocalReplicas",
    # client
    "Client",
    "ReplicaClient",
    "connect",
    "ModelInfo",
    # errors
    "TritonRepoError",
    "ModelNameError",
    "ConfigError",
    "RepositoryError",
    "InferenceInputError",
    "TritonNotInstalledError",
    "ServerStartError",
    "ServerUnavailableError",
    "ServerTimeoutError",
    "ServerError",
    "ModelNotFoundError",
    "OptionsKeywordError",
    "S3Error",
    "S3LocationError",
]
