"""Run the ``tritonserver`` binary shipped in the nvidia-pytriton wheel on a model repository.

That binary carries only Triton's Python backend, so it serves the repository's local flavour
(``<name>/configs/local.pbtxt``, picked with ``--model-config-name=local``), which runs the same
``model.onnx`` with ONNX Runtime on CPU. No Docker, no GPU.

The launcher prepares the server the way pytriton does (``pytriton/triton.py``): a temp folder it
owns gets a copy of the Python backend with the stub built for the running interpreter; the
wheel's bundled libraries go on ``LD_LIBRARY_PATH``; the interpreter's folder goes first on
``PATH`` because the stub finds numpy and onnxruntime through the ``python3`` it sees there.

The server runs in explicit model-control mode under a :class:`~triton_repo._supervisor.Supervisor`
thread that loads what the repository holds, restarts dead stubs and a crashed server, and keeps
:meth:`LocalTritonServer.readiness` truthful; a reaper process (``_reaper.py``) takes the server
down with its launcher, whichever thread started it. The server runs with umask 077, so its
shared-memory files are private (0600).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType

from pixeldcn_core.io import pid_alive

from . import _supervisor
from ._errors import TRITON_EXTRA_HINT, ConfigError, ServerStartError, TritonNotInstalledError
from ._repository import LOCAL_CONFIG_NAME, ModelNameError, remove_stale_staging, validate_model_name
from ._s3 import ServerRepository
from ._shm import guard_private, reap_stale_regions

__all__ = ["RESTRICTED_APIS", "LocalTritonServer", "TritonDistribution", "find_tritonserver"]

#: APIs that need the launcher's admin header: nobody else may load models, map memory,
#: change logging or trace requests.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
ADMIN_HEADER = "pixeldcn-admin-key"
_LOG_TAIL_CHARS = 4000
# Names of the launcher's temp folder and the Python backend's shared memory: <prefix><pid>-...
_WORKDIR_PREFIX = "pixeldcn-tritonserver-"
_SHM_PREFIX = "pixeldcn-shm-"
_ERROR_LINE_CHARS = 1000
# Error lines every CPU-only start prints; they explain nothing.
_LOG_NOISE = ("CudaDriverHelper has not been initialized",)
_PORT_IN_USE_MARKERS = ("address already in use", "already in use", "failed to start")
_SERVER_PID_FILE = "server.pid"
_REAPER = pathlib.Path(__file__).with_name("_reaper.py")
#: Default ``max_shm_bytes``: a stub whose shared memory grew past this is restarted.
DEFAULT_MAX_SHM_BYTES = 512 << 20


class TritonDistribution:
    """Where the wheel keeps the server binary, its libraries and the Python-backend stubs."""

    def __init__(self, root: pathlib.Path, libs: pathlib.Path):
        self.root = root
        self.libs = libs
        self.binary = root / "bin" / "tritonserver"
        self.backends = root / "backends"
        self.caches = root / "caches"

    def stub(self, version: str | None = None) -> pathlib.Path:
        """The Python-backend stub built for Python ``version`` (default: this interpreter)."""
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_tritonserver() -> TritonDistribution:
    """Locate the ``tritonserver`` of the installed nvidia-pytriton wheel, without importing it.

    Raises:
        TritonNotInstalledError: nvidia-pytriton is missing, or lacks the binary or the stub for
            this Python.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalledError(
            "serving locally needs the tritonserver binary shipped in nvidia-pytriton, which is "
            f"not installed; install it with: {TRITON_EXTRA_HINT}"
        )
    package = pathlib.Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    libs = package.parent / "nvidia_pytriton.libs"
    if not libs.is_dir():  # editable install of pytriton
        libs = root / "external_libs"
    dist = TritonDistribution(root, libs)
    if not dist.binary.is_file():
        raise TritonNotInstalledError(
            f"nvidia-pytriton is installed but has no tritonserver binary under {root}; "
            f"reinstall it with: {TRITON_EXTRA_HINT}"
        )
    if not dist.stub().is_file():
        raise TritonNotInstalledError(
            f"nvidia-pytriton has no Python-backend stub for Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; use a Python it supports "
            f"({', '.join(sorted(p.name for p in (root / 'python_backend_stubs').iterdir()))})"
        )
    return dist


def check_backend_python() -> None:
    """Fail early when this interpreter cannot run the local flavour's ``model.py``.

    The Python-backend stub imports numpy and onnxruntime from this interpreter's environment;
    the stub of Triton 2.51 answers valid requests with HTTP 500 under numpy 2.
    """
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise ServerStartError(
            f"the Python-backend stub of the bundled tritonserver needs numpy < 2, found "
            f"{numpy.__version__} in {sys.prefix}; install it with: pip install 'numpy<2'"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        raise ServerStartError(
            f"the local flavour runs model.onnx with onnxruntime, which is not installed in "
            f"{sys.prefix}; install it with: pip install 'pixeldcn[cpu]'"
        )


def _server_alive(workdir: pathlib.Path) -> bool:
    """Whether the tritonserver started from ``workdir`` (its pid file) still runs."""
    try:
        pid = int((workdir / _SERVER_PID_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not pid_alive(pid):
        return False
    try:  # a reused pid: some other program
        return b"tritonserver" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _remove_orphans() -> None:
    """Remove temp folders and shared memory left by launchers that were killed (SIGKILL).

    Only where the launcher is dead *and* its server too: files of a live server stay.
    Folders are ``<prefix><launcher pid>-<tag>-...``; the shared memory of the server started
    from a folder shares its ``<launcher pid>-<tag>``.
    """
    tmp, shm = pathlib.Path(tempfile.gettempdir()), pathlib.Path("/dev/shm")
    live_tags = set()
    for entry in tmp.glob(f"{_WORKDIR_PREFIX}*"):
        launcher, _, rest = entry.name[len(_WORKDIR_PREFIX) :].partition("-")
        tag = f"{launcher}-{rest.split('-', 1)[0]}"
        if not launcher.isdigit() or pid_alive(int(launcher)) or _server_alive(entry):
            live_tags.add(tag)
            continue
        shutil.rmtree(entry, ignore_errors=True)
    if not shm.is_dir():
        return
    for entry in shm.glob(f"{_SHM_PREFIX}*"):
        launcher, _, rest = entry.name[len(_SHM_PREFIX) :].partition("-")
        tag = f"{launcher}-{rest.split('-', 1)[0]}"
        if launcher.isdigit() and not pid_alive(int(launcher)) and tag not in live_tags:
            with contextlib.suppress(OSError):
                entry.unlink()


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _url_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _is_model_name(name: str) -> bool:
    try:
        validate_model_name(name)
    except ModelNameError:
        return False
    return True


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the server dies with its parent


class LocalTritonServer:
    """A local ``tritonserver`` (CPU, Python backend) serving a model repository.

    Binds HTTP, gRPC and metrics to ``host`` (loopback by default) on free ports unless given,
    polls the repository so new versions are picked up, and restricts the model-repository,
    shared-memory, logging and trace APIs to callers sending :meth:`admin_headers`. A supervisor
    thread restarts dead stubs and a crashed server and keeps :meth:`readiness` truthful; the
    server dies with its launcher whichever thread started it.

    Example::

        with LocalTritonServer("model_repository") as server:
            client = Client(server.grpc_url, "unet")

    Args:
        repo_dir: the model repository (written by :func:`write_repository`).
        http_port, grpc_port, metrics_port: ports; ``None`` picks free ones.
        host: address to bind; ``"0.0.0.0"`` exposes the server to the network.
        poll_secs: how often the server looks for new versions in the repository.
        ready_timeout: seconds :meth:`start` waits for the server and every model to be ready.
        stop_timeout: seconds :meth:`stop` waits after SIGINT before SIGTERM (at least
            ``exit_timeout`` + 10), then 10 s after SIGTERM before SIGKILL.
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

    Attributes:
        http_url, grpc_url: ``"127.0.0.1:PORT"``, as tritonclient wants them.
        metrics_url: ``"http://127.0.0.1:PORT/metrics"``.
        log_path: the server's log.
    """

    def __init__(
        self,
        repo_dir: str | os.PathLike[str],
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        host: str = "127.0.0.1",
        poll_secs: int = 1,
        ready_timeout: float = 120.0,
        stop_timeout: float = 30.0,
        exit_timeout: int = 5,
        exit_on_error: bool = True,
        log_path: str | os.PathLike[str] | None = None,
        log_verbose: int = 0,
        shm_bytes: int = 16 << 20,
        max_shm_bytes: int | None = DEFAULT_MAX_SHM_BYTES,
        restart_on_crash: bool = True,
        health_port: int | None = None,
        watchdog_interval: float = 0.1,
    ):
        # s3://BUCKET/PREFIX: object storage (triton_repo._s3: endpoint, credentials, copies).
        self.s3: ServerRepository | None = None
        if isinstance(repo_dir, str) and repo_dir.startswith("s3://"):
            self.s3 = ServerRepository.from_url(repo_dir)
            self.repo_dir = repo_dir  # type: ignore[assignment]
        else:
            self.repo_dir = pathlib.Path(repo_dir).resolve()
            if not self.repo_dir.is_dir():
                raise ServerStartError(f"repo_dir {str(repo_dir)!r} is not a folder")
        for field, port in (
            ("http_port", http_port),
            ("grpc_port", grpc_port),
            ("metrics_port", metrics_port),
        ):
            if port is not None and not (0 < port < 65536):
                raise ServerStartError(f"{field}={port}; expected a port in [1, 65535] or None")
        if poll_secs < 1:
            raise ServerStartError(f"poll_secs={poll_secs}; expected >= 1")
        if exit_timeout < 0:
            raise ServerStartError(f"exit_timeout={exit_timeout}; expected >= 0")
        self.host = host
        self.poll_secs = int(poll_secs)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.exit_timeout = int(exit_timeout)
        self.exit_on_error = exit_on_error
        self.log_verbose = int(log_verbose)
        self.shm_bytes = int(shm_bytes)
        if max_shm_bytes is not None and max_shm_bytes < self.shm_bytes:
            raise ServerStartError(
                f"max_shm_bytes={max_shm_bytes}; expected None or >= shm_bytes ({shm_bytes})"
            )
        if health_port is not None and not (0 <= health_port < 65536):
            raise ServerStartError(f"health_port={health_port}; expected a port in [0, 65535] or None")
        self.max_shm_bytes = max_shm_bytes
        self.restart_on_crash = bool(restart_on_crash)
        self.health_port = health_port
        self.watchdog_interval = float(watchdog_interval)
        self._supervisor: _supervisor.Supervisor | None = None
        self._health: _supervisor.HealthServer | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._lifecycle = threading.RLock()
        self._ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self._user_log_path = pathlib.Path(log_path) if log_path is not None else None
        self._dist = find_tritonserver()
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: pathlib.Path | None = None
        self._tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._shm_prefix = f"{_SHM_PREFIX}{self._tag}-"
        self._admin_key = secrets.token_urlsafe(24)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.log_path: pathlib.Path | None = None

    # ---------------------------------------------------------------------------- endpoints

    @property
    def http_url(self) -> str:
        return f"{_url_host(self.host)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_url_host(self.host)}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.metrics_port}/metrics"

    def admin_headers(self, protocol: str = "http") -> dict[str, str]:
        """The header that unlocks the restricted APIs, for ``headers=`` of a tritonclient call.

        gRPC carries it as metadata with Triton's ``triton-grpc-protocol-`` prefix.
        """
        if protocol not in ("http", "grpc"):
            raise ConfigError(f"protocol={protocol!r}; expected 'http' or 'grpc'")
        prefix = "triton-grpc-protocol-" if protocol == "grpc" else ""
        return {prefix + ADMIN_HEADER: self._admin_key}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def health_url(self) -> str | None:
        """``"http://127.0.0.1:PORT"`` of the health endpoint, or None without ``health_port``."""
        if self._health is None:
            return None
        return f"http://{_url_host(self.host)}:{self._health.port}"

    def readiness(self) -> tuple[bool, str]:
        """``(ready, reason)``: True only while every valid request to every model can succeed.

        Unlike Triton's ``/v2/health/ready`` it is false while a stub is dead or restarting and
        stays true while a new version loads beside the served one (what ``GET /readyz`` of the
        health endpoint answers).
        """
        return _supervisor.readiness(self)

    def is_ready(self) -> bool:
        """``readiness()[0]``."""
        return self.readiness()[0]

    @property
    def supervisor(self) -> _supervisor.Supervisor | None:
        """The watchdog thread (its ``events`` list what it did), or None when not started."""
        return self._supervisor

    # ------------------------------------------------------------------------ model control

    def _admin_request(self, path: str, body: bytes | None = None, timeout: float | None = None):
        request = urllib.request.Request(
            f"http://{self.http_url}{path}", data=body, headers=self.admin_headers("http"),
            method="POST" if body is not None else "GET",
        )  # fmt: skip
        return urllib.request.urlopen(request, timeout=timeout or self.ready_timeout)

    def _control(self, action: str, model: str) -> tuple[bool, str]:
        """Load or unload ``model`` through the model-control API; ``(ok, server message)``."""
        try:
            with self._admin_request(f"/v2/repository/models/{model}/{action}", b"{}"):
                return True, ""
        except urllib.error.HTTPError as exc:
            return False, exc.read().decode(errors="replace")[:_ERROR_LINE_CHARS]
        except (urllib.error.URLError, OSError) as exc:
            return False, repr(exc)

    def _repository_index(self) -> list[dict]:
        import json

        with self._admin_request("/v2/repository/index", b"{}", timeout=5) as response:
            return json.loads(response.read())

    def _repository_models(self) -> dict[str, tuple]:
        if self.s3 is not None:
            return {}
        return _supervisor.repository_models(self.repo_dir, _is_model_name)

    # ---------------------------------------------------------------------------- lifecycle

    def _prepare_workdir(self) -> pathlib.Path:
        _remove_orphans()
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{self._tag}-"))
        backends = workdir / "backends"
        shutil.copytree(
            self._dist.backends,
            backends,
            ignore=shutil.ignore_patterns("__pycache__", "triton_python_backend_stub"),
        )
        shutil.copy2(self._dist.stub(), backends / "python" / "triton_python_backend_stub")
        return workdir

    def _command(self) -> list[str]:
        restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={self._admin_key}"
        assert self._workdir is not None
        return [
            str(self._dist.binary),
            f"--model-repository={self.s3.triton_url if self.s3 else self.repo_dir}",
            f"--backend-directory={self._workdir / 'backends'}",
            f"--cache-directory={self._dist.caches}",
            *self._control_mode(),
            f"--model-config-name={LOCAL_CONFIG_NAME}",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            f"--exit-on-error={'true' if self.exit_on_error else 'false'}",
            f"--exit-timeout-secs={max(0, self.exit_timeout)}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--http-restricted-api={restricted}",
            f"--grpc-restricted-protocol={restricted}",
            # Reused request objects keep the capacity of the largest request they ever held.
            "--grpc-infer-allocation-pool-size=0",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={self.shm_bytes}",
            f"--backend-config=python,shm-growth-byte-size={max(1 << 20, self.shm_bytes // 4)}",
            f"--log-verbose={self.log_verbose}",
        ]

    def _control_mode(self) -> list[str]:
        """Explicit mode, every model of the repository loaded at start and then by the
        supervisor (one load at a time); object storage keeps Triton's own polling."""
        if self.s3 is not None:
            return ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_secs}"]
        models = sorted(self._repository_models())
        return ["--model-control-mode=explicit", *(f"--load-model={m}" for m in models)]

    def _env(self) -> dict[str, str]:
        env = os.environ.copy()
        libs = str(self._dist.libs)
        env["LD_LIBRARY_PATH"] = (
            f"{env['LD_LIBRARY_PATH']}{os.pathsep}{libs}" if env.get("LD_LIBRARY_PATH") else libs
        )
        # The stub runs the python3 it finds first on PATH: make it this interpreter, whose
        # site-packages hold numpy (< 2) and onnxruntime.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        # The stub imports model.py from the version folder; a __pycache__ written there is a
        # repository change that the polling server answers by reloading the model.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # Give the buffers of a huge request back to the system when they are freed (measured:
        # without these, a refused 200 MB gRPC request leaves the server 340 MB larger for good).
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 << 10))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 20))
        env.setdefault("MALLOC_ARENA_MAX", "2")
        if self.s3 is not None and self._workdir is not None:  # credentials: environment only
            env = self.s3.server_env(env, self._workdir / "s3-copies")
        return env

    def start(self) -> LocalTritonServer:
        """Start the server and wait until it and every model are ready.

        Raises:
            ServerStartError: the server exited or was not ready in ``ready_timeout`` seconds;
                the message holds the reason and the tail of the server log.
        """
        if self.is_alive():
            raise ServerStartError(f"the server is running already (pid {self.pid})")
        check_backend_python()
        reap_stale_regions()  # client regions left by killed process groups (._shm)
        guard_private(self._shm_prefix)  # its own regions: 0600 as soon as the backend sets 0644
        if self.s3 is None:
            remove_stale_staging(self.repo_dir)  # what killed writers left
        auto_ports = [k for k, v in self._ports.items() if v is None]
        attempts = 3 if auto_ports else 1
        for attempt in range(attempts):
            try:
                self._start_once()
                self._start_watchers()
                return self
            except ServerStartError as exc:
                log = self.log_tail().lower()
                retry = attempt + 1 < attempts and any(m in log for m in _PORT_IN_USE_MARKERS)
                self.stop()
                if not retry:
                    raise exc from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, *, choose_ports: bool = True) -> None:
        taken: set[int] = set()
        for key, port in self._ports.items() if choose_ports else ():
            chosen = port
            while chosen is None or (port is None and chosen in taken):
                chosen = _free_port(self.host or "0.0.0.0")
            taken.add(chosen)
            setattr(self, f"{key}_port", chosen)
        self._workdir = self._prepare_workdir()
        self._started_models = self._repository_models()
        self.log_path = self._user_log_path or self._workdir / "tritonserver.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        in_main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self._workdir,
                start_new_session=True,  # its own process group: signals reach the stubs too
                preexec_fn=_set_parent_death_signal if in_main else None,
                umask=0o077,  # its shared-memory files: private
            )
        (self._workdir / _SERVER_PID_FILE).write_text(str(self._proc.pid))
        # Takes the group down when this process ends, whatever thread started the server.
        self._reaper = subprocess.Popen(
            [sys.executable, str(_REAPER), str(self._proc.pid), str(self._workdir), self._shm_prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        atexit.register(self.stop)  # never leave a server behind when the caller forgets stop()
        self._wait_ready()
        _supervisor.private_shm(self._shm_prefix)

    def _start_watchers(self) -> None:
        if self._supervisor is None:
            self._supervisor = _supervisor.Supervisor(self, interval=self.watchdog_interval)
            self._supervisor.loaded = dict(self._started_models)
            self._supervisor.refresh_stubs()
            self._supervisor.start()
        if self.health_port is not None and self._health is None:
            self._health = _supervisor.HealthServer(self, self.host, self.health_port)

    def _restart(self) -> None:
        """Start tritonserver again on the same ports after it died (the supervisor calls it)."""
        with self._lifecycle:
            if self._supervisor is None or self._supervisor.stop_event.is_set():
                return
            old = self._proc
            if old is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(old.pid, signal.SIGKILL)  # its stubs
                old.wait()
            self._release_reaper()
            self._cleanup()
            self._start_once(choose_ports=False)

    def _release_reaper(self) -> None:
        """Tell the reaper the server was stopped on purpose, and let it exit."""
        reaper, self._reaper = self._reaper, None
        if reaper is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert reaper.stdin is not None
            reaper.stdin.write(b"done")
            reaper.stdin.close()
        try:
            reaper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            reaper.kill()
            reaper.wait()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while True:
            code = self._proc.poll() if self._proc is not None else -1
            if code is not None:
                raise ServerStartError(
                    f"tritonserver exited with code {code} before it was ready{self._diagnosis()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"tritonserver was not ready after {self.ready_timeout:g}s (a model still "
                    f"loading or failing to load?){self._diagnosis()}"
                )
            time.sleep(0.2)

    def log_errors(self, limit: int = 10) -> list[str]:
        """The last ``limit`` error lines of the server log (glog ``E...`` and ``error:`` lines)."""
        if self.log_path is None or not self.log_path.is_file():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        errors = [
            line[:_ERROR_LINE_CHARS]
            for line in lines
            if (line.startswith("error:") or (line[:1] == "E" and line[1:5].isdigit()))
            and not any(noise in line for noise in _LOG_NOISE)
        ]
        return errors[-limit:]

    def _diagnosis(self) -> str:
        errors = self.log_errors()
        text = "\n--- errors in the server log ---\n" + "\n".join(errors) if errors else ""
        return f"{text}\n--- tail of {self.log_path} ---\n{self.log_tail()}"

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """The last ``chars`` characters of the server log."""
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        with open(self.log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - chars))
            return f.read().decode("utf-8", errors="replace")

    def stop(self) -> int | None:
        """Stop the server: SIGINT, then SIGTERM, then SIGKILL, each after a timeout.

        Returns:
            The server's exit code, or None when it was not started.
        """
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.stop_event.set()
            if supervisor is not threading.current_thread():
                supervisor.join(timeout=self.ready_timeout + 30)
        health, self._health = self._health, None
        if health is not None:
            health.close()
        with self._lifecycle:
            return self._stop_server()

    def _stop_server(self) -> int | None:
        proc, self._proc = self._proc, None
        code = None
        atexit.unregister(self.stop)
        if proc is not None:
            code = proc.poll()
            if code is None:
                code = self._terminate(proc)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # stubs orphaned by a killed server
        self._cleanup()
        self._release_reaper()
        return code

    def _terminate(self, proc: subprocess.Popen[bytes]) -> int:
        for sig, timeout in (
            (signal.SIGINT, max(self.stop_timeout, self.exit_timeout + 10)),
            (signal.SIGTERM, 10.0),
            (signal.SIGKILL, 10.0),
        ):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait()

    def _cleanup(self) -> None:
        shm = pathlib.Path("/dev/shm")
        if shm.is_dir():
            for leftover in shm.glob(f"{self._shm_prefix}*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        if self._proc is None:
            raise ServerStartError("the server is not running")
        return self._proc.wait()

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}, http={self.http_url}" if self.is_alive() else "stopped"
        return f"LocalTritonServer({str(self.repo_dir)!r}, {state})"
