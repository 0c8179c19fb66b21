"""How a :class:`~triton_repo.LocalTritonServer` runs: the frozen :class:`ServerConfig`, validated
on construction, and the error that shows the new call for the keywords it replaced (0.3)."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib

from ._errors import ConfigError, OptionsKeywordError

__all__ = ["DEFAULT_MAX_SHM_BYTES", "ServerConfig", "moved_keywords_error"]

#: Default ``max_shm_bytes``: a stub whose shared memory grew past this is restarted.
DEFAULT_MAX_SHM_BYTES = 512 << 20


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How a :class:`LocalTritonServer` runs; validated on construction (the error names the field).

    Example::

        config = ServerConfig(http_port=8000, health_port=8002, ready_timeout=300)
        LocalTritonServer("model_repository", config)
        dataclasses.replace(config, http_port=8010)  # a copy with one field changed

    Attributes:
        http_port, grpc_port, metrics_port: ports; ``None`` picks free ones.
        host: address to bind; ``"0.0.0.0"`` exposes the server to the network.
        poll_secs: how often the repository (folder or bucket) is looked at for new versions.
        ready_timeout: seconds :meth:`LocalTritonServer.start` waits for the server and every
            model to be ready.
        stop_timeout: seconds :meth:`LocalTritonServer.stop` waits after SIGINT before SIGTERM
            (at least ``exit_timeout`` + 10), then 10 s after SIGTERM before SIGKILL.
        exit_timeout: seconds the server gives in-flight requests and open client connections
            when it shuts down (tritonserver ``--exit-timeout-secs``; its default, 30, makes
            Ctrl-C slow while any client keeps a connection open).
        exit_on_error: the server exits when a model fails to load at startup.
        log_path: server log file; default: in the launcher's temp folder (removed on stop).
        log_verbose: tritonserver ``--log-verbose`` level.
        shm_bytes: initial shared memory per Python-backend instance.
        max_shm_bytes: a stub whose shared memory grew past this (a huge request, even refused,
            grows it for good) is restarted so the server's memory returns to its baseline;
            ``None`` never restarts. Default :data:`DEFAULT_MAX_SHM_BYTES` (512 MiB).
        restart_on_crash: restart tritonserver (same ports) when it dies while serving.
        health_port: serve ``GET /readyz`` and ``GET /healthz`` on this port (0: a free one;
            ``None``: no health endpoint), e.g. for a Kubernetes readiness probe.
        watchdog_interval: seconds between two looks at the stubs.
    """

    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    host: str = "127.0.0.1"
    poll_secs: int = 1
    ready_timeout: float = 120.0
    stop_timeout: float = 30.0
    exit_timeout: int = 5
    exit_on_error: bool = True
    log_path: pathlib.Path | None = None
    log_verbose: int = 0
    shm_bytes: int = 16 << 20
    max_shm_bytes: int | None = DEFAULT_MAX_SHM_BYTES
    restart_on_crash: bool = True
    health_port: int | None = None
    watchdog_interval: float = 0.1

    def __post_init__(self) -> None:
        def fail(field: str, expected: str) -> ConfigError:
            return ConfigError(f"ServerConfig.{field}={getattr(self, field)!r}; expected {expected}")

        for field in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, field)
            if port is not None and not (_is_int(port) and 0 < port < 65536):
                raise fail(field, "a port in [1, 65535] or None")
        if self.health_port is not None and not (_is_int(self.health_port) and 0 <= self.health_port < 65536):
            raise fail("health_port", "a port in [0, 65535] (0: a free one) or None")
        if not isinstance(self.host, str):
            raise fail("host", "an address as a str, e.g. '127.0.0.1' or '0.0.0.0'")
        for field, low in (("poll_secs", 1), ("exit_timeout", 0), ("log_verbose", 0), ("shm_bytes", 1)):
            if not (_is_int(getattr(self, field)) and getattr(self, field) >= low):
                raise fail(field, f"an integer >= {low}")
        for field in ("ready_timeout", "watchdog_interval"):
            if not (_is_number(getattr(self, field)) and getattr(self, field) > 0):
                raise fail(field, "a finite number of seconds > 0")
        if not (_is_number(self.stop_timeout) and self.stop_timeout >= 0):
            raise fail("stop_timeout", "a finite number of seconds >= 0")
        if self.max_shm_bytes is not None and not (
            _is_int(self.max_shm_bytes) and self.max_shm_bytes >= self.shm_bytes
        ):
            raise fail("max_shm_bytes", f"None or an integer >= shm_bytes ({self.shm_bytes})")
        for field in ("exit_on_error", "restart_on_crash"):
            if not isinstance(getattr(self, field), bool):
                raise fail(field, "True or False")
        if self.log_path is not None:
            if not isinstance(self.log_path, (str, os.PathLike)):
                raise fail("log_path", "a file path or None")
            object.__setattr__(self, "log_path", pathlib.Path(self.log_path))


#: The keywords LocalTritonServer took before ServerConfig (0.2): now ServerConfig fields.
_MOVED_KEYWORDS = frozenset(f.name for f in dataclasses.fields(ServerConfig))


def moved_keywords_error(
    moved: dict[str, object], call: str = "LocalTritonServer(repo_dir, {})"
) -> OptionsKeywordError:
    """The error for ``LocalTritonServer(repo, http_port=8000)`` (the pre-0.3 call): shows the
    call to make instead (``call`` with ``{}`` standing for the ``ServerConfig(...)``)."""
    owner = call.split("(", 1)[0]
    unknown = sorted(k for k in moved if k not in _MOVED_KEYWORDS)
    if unknown:
        return OptionsKeywordError(
            f"{owner}() got unexpected keyword argument(s) {unknown}; expected "
            f"{call.format('ServerConfig(...)')} with fields {sorted(_MOVED_KEYWORDS)}"
        )
    args = ", ".join(f"{k}={moved[k]!r}" for k in sorted(moved))
    return OptionsKeywordError(
        f"{owner}() no longer takes server settings as keywords (got {sorted(moved)}); "
        f"pass them as a config: {call.format(f'ServerConfig({args})')}"
    )
