"""A small Triton client for pixeldcn models: one input, one output, checked before sending.

Wraps ``tritonclient`` (gRPC or HTTP). The model's metadata and config are read once and every
request is checked against them (dtype, rank, fixed dims such as channels, batch size), so that
the common mistakes fail fast with a message naming the field, the value received and the value
expected. Errors from the server keep its message and status, and a connection that is refused
is reported as :class:`ServerUnavailableError`, never as a timeout.
"""

from __future__ import annotations

import importlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ._errors import (
    TRITON_EXTRA_HINT,
    ConfigError,
    InferenceInputError,
    ModelNotFoundError,
    ServerError,
    ServerTimeoutError,
    ServerUnavailableError,
    TritonNotInstalledError,
    TritonRepoError,
)
from ._repository import validate_model_name
from ._shm import SharedMemoryPool, check_shared_memory

__all__ = ["Client", "ModelInfo"]

T = TypeVar("T")
_PROTOCOLS = ("grpc", "http")
_DTYPES = {
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "BOOL": np.bool_,
}  # fmt: skip
# gRPC status names (as tritonclient reports them) that mean "nobody answered".
_GRPC_UNAVAILABLE = ("StatusCode.UNAVAILABLE",)
_GRPC_TIMEOUT = ("StatusCode.DEADLINE_EXCEEDED",)
# What a server message means, where its words do not say it.
_CAUSES = (
    ("is not healthy", " (the model's Python-backend stub died; a pixeldcn server restarts it in seconds)"),
    ("has no available versions", " (the model is not loaded: loading, or restarting after a crash)"),
)
_NOT_FOUND_MARKERS = ("unknown model", "is not found", "is not ready", "no version is available")


def _import(protocol: str) -> Any:
    try:
        return importlib.import_module(f"tritonclient.{protocol}")
    except ImportError as exc:
        raise TritonNotInstalledError(
            f"protocol={protocol!r} needs tritonclient[{protocol}], which is not installed; "
            f"install it with: {TRITON_EXTRA_HINT}"
        ) from exc


class ModelInfo:
    """What the client knows about the served model (from its metadata and config).

    Attributes:
        name: model name.
        input_name, output_name: the tensors ``infer`` sends and returns.
        datatype: the input's Triton data type, e.g. ``"FP32"``.
        dtype: the matching numpy dtype.
        shape: the input's shape as served, batch dim included (``-1`` = any).
        max_batch_size: the largest batch the server accepts; 0 if the model does not batch.
        max_request_bytes: the largest request in bytes the model accepts (its config's
            ``max_request_bytes`` parameter), or None when the config sets none.
        versions: versions the metadata lists.
    """

    def __init__(self, metadata: dict[str, Any], config: dict[str, Any]):
        inputs, outputs = metadata["inputs"], metadata["outputs"]
        if len(inputs) != 1:
            raise ConfigError(
                f"model {metadata['name']!r} has {len(inputs)} inputs "
                f"{[i['name'] for i in inputs]}; Client handles models with exactly one"
            )
        self.name: str = metadata["name"]
        self.input_name: str = inputs[0]["name"]
        self.output_names: list[str] = [o["name"] for o in outputs]
        self.output_name: str = self.output_names[0]
        self.datatype: str = inputs[0]["datatype"]
        self.dtype = np.dtype(_DTYPES.get(self.datatype, np.object_))
        self.shape: tuple[int, ...] = tuple(int(d) for d in inputs[0]["shape"])
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.versions: list[str] = list(metadata.get("versions", []))
        limit = config.get("parameters", {}).get("max_request_bytes", {}).get("string_value")
        self.max_request_bytes: int | None = int(limit) if limit else None

    def __repr__(self) -> str:
        return (
            f"ModelInfo(name={self.name!r}, input={self.input_name!r} {self.datatype} "
            f"{list(self.shape)}, output={self.output_name!r}, "
            f"max_batch_size={self.max_batch_size})"
        )


class Client:
    """Send arrays to one model on a Triton server.

    Safe to share between threads: each thread gets its own connection.

    Example::

        client = Client("127.0.0.1:8001", "unet")     # gRPC; protocol="http" for port 8000
        y = client.infer(x)                           # x: float32 [N, C, H, W] -> y [N, K, H', W']

    One server; for several replicas of one server use :class:`ReplicaClient` (failover, load
    spreading), or :func:`triton_repo.connect`, which takes one URL or several.

    Args:
        url: ``"host:port"`` of the server's gRPC (default) or HTTP endpoint.
        model: model name.
        protocol: ``"grpc"`` or ``"http"``.
        timeout: seconds to wait for one answer (connection and response).
        version: model version to ask for; ``""`` lets the server choose (the latest).
        headers: extra headers sent with every request.
        shared_memory: ``"system"``: tensors travel through POSIX shared-memory regions (one
            input and one output region per thread, reused, released on :meth:`close`; same
            host only; on :class:`LocalTritonServer` pass ``headers=server.admin_headers(...)``,
            as its shared-memory API is restricted). ``None`` (default): by value.

    Raises:
        ModelNameError: ``model`` is not a valid model name.
        ConfigError: ``url`` names several servers, or ``protocol`` or ``timeout`` is invalid.
        TritonNotInstalledError: tritonclient is missing.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        protocol: str = "grpc",
        timeout: float = 60.0,
        version: str | int = "",
        headers: dict[str, str] | None = None,
        shared_memory: str | None = None,
    ):
        if not isinstance(url, str) or "," in url:
            raise ConfigError(
                f"url={url!r}: Client takes one host:port; for several replicas use "
                "ReplicaClient([url, ...], model) or triton_repo.connect(url, model)"
            )
        if protocol not in _PROTOCOLS:
            raise ConfigError(f"protocol={protocol!r}; expected one of {_PROTOCOLS}")
        if not timeout or timeout <= 0:
            raise ConfigError(f"timeout={timeout!r}; expected a positive number of seconds")
        for prefix in ("http://", "https://", "grpc://"):
            if url.startswith(prefix):
                url = url[len(prefix) :]
        self.url = url.rstrip("/")
        self.model = validate_model_name(model)
        self.protocol = protocol
        self.timeout = float(timeout)
        self.version = str(version)
        self.headers = dict(headers or {})
        self._module = _import(protocol)
        self._local = threading.local()
        self._info: ModelInfo | None = None
        self._info_lock = threading.Lock()
        self._shm = SharedMemoryPool() if check_shared_memory(shared_memory) else None

    # ------------------------------------------------------------------------- connections

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._module.InferenceServerClient(self.url)
            else:
                client = self._module.InferenceServerClient(
                    self.url, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            self._local.client = client
        return client

    def _timeout_kw(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def _drop_connection(self) -> None:
        """Forget this thread's connection (the next call opens a new one): after a timeout, a
        late answer must never be read as the next request's, and a hung peer must not be
        reused (gRPC channels to one target may share one TCP connection). It closes when the
        last reference goes (tritonclient closes on ``__del__``): shared-memory regions
        registered through it keep it to unregister themselves."""
        self._local.client = None

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end) and release
        every shared-memory region of this client."""
        if self._shm is not None:
            self._shm.close(self)
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one tritonclient call, turning its failures into this package's errors."""
        try:
            return fn(*args, **kwargs)
        except TritonRepoError:
            raise
        except Exception as exc:
            error = self._translate(what, exc)
            if isinstance(error, ServerTimeoutError):
                self._drop_connection()
            raise error from exc

    def _translate(self, what: str, exc: Exception) -> TritonRepoError:
        where = f"{self.protocol} server at {self.url}"
        status_fn = getattr(exc, "status", None)
        message_fn = getattr(exc, "message", None)
        if callable(status_fn) and callable(message_fn):  # InferenceServerException
            status = str(status_fn()) if status_fn() is not None else None
            message = str(message_fn() or "")
            if status in _GRPC_UNAVAILABLE and "restricted" not in message:
                return ServerUnavailableError(f"{what}: nothing answers at {where}: {message}")
            if status in _GRPC_TIMEOUT or (status is None and "timed out" in message.lower()):
                return ServerTimeoutError(
                    f"{what}: the {where} did not answer within {self.timeout:g}s: {message}"
                )
            cls = ModelNotFoundError if any(m in message.lower() for m in _NOT_FOUND_MARKERS) else ServerError
            hint = next((h for marker, h in _CAUSES if marker in message.lower()), "")
            return cls(
                f"{what}: the {where} answered {status}: {message}{hint}",
                status=status,
                server_message=message,
            )
        if isinstance(exc, ConnectionError | socket.gaierror):  # refused, reset, unknown host
            return ServerUnavailableError(f"{what}: nothing answers at {where}: {exc!r}")
        if isinstance(exc, TimeoutError) or type(exc).__name__ == "Timeout":  # gevent's Timeout
            return ServerTimeoutError(f"{what}: the {where} did not answer within {self.timeout:g}s: {exc!r}")
        if isinstance(exc, OSError):
            return ServerUnavailableError(f"{what}: cannot reach the {where}: {exc!r}")
        return ServerError(f"{what}: {type(exc).__name__}: {exc}", server_message=str(exc))

    # ----------------------------------------------------------------------------- health

    def is_ready(self) -> bool:
        """Whether the server answers and the model is ready; never raises for a down server."""
        try:
            client = self._client()
            return bool(
                self._call(
                    "is_ready",
                    client.is_model_ready,
                    self.model,
                    self.version,
                    headers=self.headers,
                    **self._timeout_kw(),
                )
            )
        except (ServerUnavailableError, ServerTimeoutError, ServerError):
            return False

    def wait_ready(self, timeout: float = 60.0, *, interval: float = 0.2) -> Client:
        """Wait until the model is ready.

        Raises:
            ServerUnavailableError: nothing answered at ``url`` during ``timeout`` seconds.
            ServerTimeoutError: the server answered but the model was not ready in time.
        """
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                client = self._client()
                ready = self._call(
                    "wait_ready",
                    client.is_model_ready,
                    self.model,
                    self.version,
                    headers=self.headers,
                    **self._timeout_kw(),
                )
                if ready:
                    return self
                last = None
            except (ServerUnavailableError, ServerTimeoutError, ServerError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                if isinstance(last, ServerUnavailableError):
                    raise ServerUnavailableError(
                        f"nothing answered at {self.url} ({self.protocol}) for {timeout:g}s: {last}"
                    ) from last
                raise ServerTimeoutError(
                    f"model {self.model!r} was not ready at {self.url} after {timeout:g}s"
                    + (f": {last}" if last else "")
                )
            time.sleep(interval)

    # ------------------------------------------------------------------------------ model

    def info(self, *, refresh: bool = False) -> ModelInfo:
        """The model's input, output and batch limits, read from the server once."""
        with self._info_lock:
            if self._info is None or refresh:
                client = self._client()
                kw = self._timeout_kw()
                if self.protocol == "grpc":
                    metadata = self._call(
                        "get_model_metadata", client.get_model_metadata, self.model,
                        self.version, headers=self.headers, as_json=True, **kw,
                    )  # fmt: skip
                    config = self._call(
                        "get_model_config", client.get_model_config, self.model,
                        self.version, headers=self.headers, as_json=True, **kw,
                    )["config"]  # fmt: skip
                    config["max_batch_size"] = int(config.get("max_batch_size", 0))
                else:
                    metadata = self._call(
                        "get_model_metadata", client.get_model_metadata, self.model,
                        self.version, headers=self.headers,
                    )  # fmt: skip
                    config = self._call(
                        "get_model_config", client.get_model_config, self.model,
                        self.version, headers=self.headers,
                    )  # fmt: skip
                self._info = ModelInfo(metadata, config)
            return self._info

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` as a batch the model accepts, or raise :class:`InferenceInputError`.

        Args:
            x: a batch ``[N, C, H, W]`` or one sample ``[C, H, W]`` (rank as the model's).
        """
        info = self.info()
        if not isinstance(x, np.ndarray):
            raise InferenceInputError(
                f"x is a {type(x).__name__}; expected a numpy array of dtype {info.dtype}"
            )
        if x.dtype != info.dtype:
            raise InferenceInputError(
                f"x.dtype={x.dtype}; expected {info.dtype} (input {info.input_name!r} is "
                f"{info.datatype}); convert with x.astype(np.{info.dtype})"
            )
        rank = len(info.shape)
        batched = info.max_batch_size > 0
        if batched and x.ndim == rank - 1:
            x = x[None]  # one sample -> (1, C, H, W)
        if x.ndim != rank:
            expected = f"{rank} (batch {list(info.shape)})"
            if batched:
                expected += f" or {rank - 1} (one sample {list(info.shape[1:])})"
            raise InferenceInputError(f"x has rank {x.ndim} (shape {list(x.shape)}); expected {expected}")
        start = 1 if batched else 0
        for axis in range(start, rank):
            want = info.shape[axis]
            if want != -1 and x.shape[axis] != want:
                field = "channels" if axis == 1 else f"dim {axis}"
                raise InferenceInputError(
                    f"x has {field}={x.shape[axis]} (shape {list(x.shape)}); expected {want} "
                    f"(model {info.name!r} input shape {list(info.shape)})"
                )
        if 0 in x.shape:
            raise InferenceInputError(
                f"x has shape {list(x.shape)}, an empty batch or image; expected at least one "
                "sample with non-empty dims"
            )
        if batched and x.shape[0] > info.max_batch_size:
            raise InferenceInputError(
                f"x has batch {x.shape[0]}; expected at most max_batch_size="
                f"{info.max_batch_size} of model {info.name!r}; split the batch"
            )
        if info.max_request_bytes is not None and x.nbytes > info.max_request_bytes:
            raise InferenceInputError(
                f"x has {x.nbytes} bytes (shape {list(x.shape)}); expected at most "
                f"max_request_bytes={info.max_request_bytes} of model {info.name!r}; send smaller "
                "images or batches"
            )
        return np.ascontiguousarray(x)

    def infer(self, x: np.ndarray, *, output: str | None = None) -> np.ndarray:
        """Run the model on ``x``.

        Args:
            x: a batch ``[N, C, H, W]`` (``1 <= N <= max_batch_size``) or one sample
                ``[C, H, W]``, of the model's dtype.
            output: output tensor to return; default the model's first output.

        Returns:
            The output, ``[N, ...]`` for a batch, ``[...]`` (no batch dim) for one sample.

        Raises:
            InferenceInputError: ``x`` does not fit the model (checked before sending).
            ModelNotFoundError: the server does not know the model or it is not ready.
            ServerError: the server refused the request (its message and status are kept).
            ServerUnavailableError: nothing answers at ``url``.
            ServerTimeoutError: no answer within ``timeout`` seconds.
        """
        info = self.info()
        single = info.max_batch_size > 0 and isinstance(x, np.ndarray) and x.ndim == len(info.shape) - 1
        batch = self.check_input(x)
        name = output or info.output_name
        if name not in info.output_names:
            raise InferenceInputError(f"output={name!r}; expected one of {info.output_names}")
        if self._shm is not None:  # tensors through shared memory (._shm)
            y = self._shm.infer(self, info, batch, name)
            return y[0] if single else y
        module = self._module
        tensor = module.InferInput(info.input_name, list(batch.shape), info.datatype)
        tensor.set_data_from_numpy(batch)
        requested = [module.InferRequestedOutput(name)]
        client = self._client()
        kw = self._timeout_kw()
        result = self._call(
            "infer", client.infer, self.model, [tensor], model_version=self.version,
            outputs=requested, headers=self.headers, **kw,
        )  # fmt: skip
        y = result.as_numpy(name)
        if y is None:
            raise ServerError(f"infer: the server's response has no output {name!r}")
        return y[0] if single else y

    def statistics(self) -> dict[str, Any]:
        """The server's inference statistics for this model, as JSON-like dicts."""
        client = self._client()
        if self.protocol == "grpc":
            return self._call(
                "get_inference_statistics", client.get_inference_statistics, self.model,
                self.version, headers=self.headers, as_json=True, **self._timeout_kw(),
            )  # fmt: skip
        return self._call(
            "get_inference_statistics", client.get_inference_statistics, self.model,
            self.version, headers=self.headers,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Client({self.url!r}, {self.model!r}, protocol={self.protocol!r})"
