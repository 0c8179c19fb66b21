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

from . import _supervisor
from ._distribution import check_backend_python, find_tritonserver
from ._errors import ConfigError, ServerStartError
from ._orphans import SERVER_PID_FILE, SHM_PREFIX, WORKDIR_PREFIX, remove_orphans
from ._repository import LOCAL_CONFIG_NAME, ModelNameError, remove_stale_staging, validate_model_name
from ._s3_repository import ServerRepository
from ._server_config import ServerConfig, moved_keywords_error
from ._shm import guard_private, reap_stale_regions

__all__ = ["ADMIN_HEADER", "RESTRICTED_APIS", "LocalTritonServer"]

#: APIs that need the launcher's admin header: nobody else may load models, map memory,
#: change logging or trace requests.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
ADMIN_HEADER = "pixeldcn-admin-key"
_LOG_TAIL_CHARS = 4000
_ERROR_LINE_CHARS = 1000
# Error lines every CPU-only start prints; they explain nothing.
_LOG_NOISE = ("CudaDriverHelper has not been initialized",)
_PORT_IN_USE_MARKERS = ("address already in use", "already in use", "failed to start")
_REAPER = pathlib.Path(__file__).with_name("_reaper.py")


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

    Binds HTTP, gRPC and metrics to ``config.host`` (loopback by default) on free ports unless
    given, loads what the repository (a folder or ``s3://BUCKET/PREFIX``) holds and every new
    version, and restricts the model-repository, shared-memory, logging and trace APIs to callers
    sending :meth:`admin_headers`. A supervisor thread restarts dead stubs and a crashed server
    and keeps :meth:`readiness` truthful; the server dies with its launcher whichever thread
    started it.

    Example::

        with LocalTritonServer("model_repository", ServerConfig(health_port=0)) as server:
            client = Client(server.grpc_url, "unet")

    Args:
        repo_dir: the model repository (written by :func:`write_repository`), or
            ``s3://BUCKET/PREFIX`` (see :mod:`triton_repo._s3_repository`).
        config: how the server runs (ports, timeouts, limits, health endpoint): a
            :class:`ServerConfig`, documented there; default ``ServerConfig()``.

    Raises:
        ConfigError: ``config`` is not a ``ServerConfig``, or a setting was passed as a keyword
            (the pre-0.3 call: :class:`OptionsKeywordError`, whose message shows the new call).
        ServerStartError: ``repo_dir`` is not a folder.

    Attributes:
        config: the :class:`ServerConfig`.
        http_url, grpc_url: ``"127.0.0.1:PORT"``, as tritonclient wants them.
        metrics_url: ``"http://127.0.0.1:PORT/metrics"``.
        log_path: the server's log.
        skipped: entries of the repository that are no model (name -> reason), not loaded.
    """

    def __init__(
        self,
        repo_dir: str | os.PathLike[str],
        config: ServerConfig | None = None,
        **moved: object,
    ):
        if moved:
            raise moved_keywords_error(moved)
        if config is None:
            config = ServerConfig()
        if not isinstance(config, ServerConfig):
            raise ConfigError(f"config is a {type(config).__name__}; expected triton_repo.ServerConfig(...)")
        self.config = config
        # s3://BUCKET/PREFIX: object storage (triton_repo._s3_repository: endpoint, credentials, copies).
        self.s3: ServerRepository | None = None
        if isinstance(repo_dir, str) and repo_dir.startswith("s3://"):
            self.s3 = ServerRepository.from_url(repo_dir)
            self.repo_dir = repo_dir  # type: ignore[assignment]
        else:
            self.repo_dir = pathlib.Path(repo_dir).resolve()
            if not self.repo_dir.is_dir():
                raise ServerStartError(f"repo_dir {str(repo_dir)!r} is not a folder")
        self._supervisor: _supervisor.Supervisor | None = None
        self._health: _supervisor.HealthServer | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._lifecycle = threading.RLock()
        self._ports = {"http": config.http_port, "grpc": config.grpc_port, "metrics": config.metrics_port}
        self._user_log_path = config.log_path
        self._dist = find_tritonserver()
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: pathlib.Path | None = None
        self._tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._shm_prefix = f"{SHM_PREFIX}{self._tag}-"
        self._admin_key = secrets.token_urlsafe(24)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.log_path: pathlib.Path | None = None
        self._started_models: dict[str, tuple] = {}
        #: Entries of the repository that are no model and are not loaded (name -> reason):
        #: a symbolic link, a file, a folder without config.pbtxt. Updated at every look.
        self.skipped: dict[str, str] = {}

    # ---------------------------------------------------------------------------- endpoints

    @property
    def http_url(self) -> str:
        return f"{_url_host(self.config.host)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_url_host(self.config.host)}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.config.host)}:{self.metrics_port}/metrics"

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
        return f"http://{_url_host(self.config.host)}:{self._health.port}"

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
        return urllib.request.urlopen(request, timeout=timeout or self.config.ready_timeout)

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

    def _model_ready(self, model: str) -> bool:
        """Whether Triton says ``model`` has a READY version (``GET /v2/models/<model>/ready``)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/models/{model}/ready", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _repository_models(self) -> dict[str, tuple]:
        """``{model: fingerprint}`` of what the repository holds (local folder or bucket); stray
        entries go to :attr:`skipped`. Raises :class:`S3Error` when the bucket cannot be listed."""
        skipped: dict[str, str] = {}
        if self.s3 is not None:
            models = self.s3.models(_is_model_name, skipped)
        else:
            models = _supervisor.repository_models(self.repo_dir, _is_model_name, skipped)
        self.skipped = skipped
        return models

    def _expected_models(self) -> dict[str, tuple]:
        """The models readiness expects READY: the repository now (local), or as the supervisor
        last listed it (S3: a probe never lists the bucket)."""
        if self.s3 is None:
            return self._repository_models()
        supervisor = self._supervisor
        if supervisor is not None:
            with supervisor.lock:
                if supervisor.known is not None:
                    return dict(supervisor.known)
        return dict(self._started_models)

    # ---------------------------------------------------------------------------- lifecycle

    def _prepare_workdir(self) -> pathlib.Path:
        remove_orphans()
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{self._tag}-"))
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
            f"--exit-on-error={'true' if self.config.exit_on_error else 'false'}",
            f"--exit-timeout-secs={max(0, self.config.exit_timeout)}",
            f"--http-address={self.config.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.config.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={self.config.host}",
            f"--metrics-port={self.metrics_port}",
            f"--http-restricted-api={restricted}",
            f"--grpc-restricted-protocol={restricted}",
            # Reused request objects keep the capacity of the largest request they ever held.
            "--grpc-infer-allocation-pool-size=0",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={self.config.shm_bytes}",
            f"--backend-config=python,shm-growth-byte-size={max(1 << 20, self.config.shm_bytes // 4)}",
            f"--log-verbose={self.config.log_verbose}",
        ]

    def _control_mode(self) -> list[str]:
        """Explicit mode, every model of the repository (folder or bucket) loaded at start and
        then by the supervisor, one load at a time: it can then restart a dead stub by unloading
        and loading its model, which Triton's own polling forbids."""
        models = sorted(self._started_models)
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
                chosen = _free_port(self.config.host or "0.0.0.0")
            taken.add(chosen)
            setattr(self, f"{key}_port", chosen)
        self._started_models = self._repository_models()  # first: an unreachable bucket leaves nothing
        self._workdir = self._prepare_workdir()
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
        (self._workdir / SERVER_PID_FILE).write_text(str(self._proc.pid))
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
            self._supervisor = _supervisor.Supervisor(self, interval=self.config.watchdog_interval)
            self._supervisor.loaded = dict(self._started_models)
            self._supervisor.refresh_stubs()
            self._supervisor.start()
        if self.config.health_port is not None and self._health is None:
            self._health = _supervisor.HealthServer(self, self.config.host, self.config.health_port)

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
        deadline = time.monotonic() + self.config.ready_timeout
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
                    f"tritonserver was not ready after {self.config.ready_timeout:g}s (a model still "
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
                supervisor.join(timeout=self.config.ready_timeout + 30)
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
            (signal.SIGINT, max(self.config.stop_timeout, self.config.exit_timeout + 10)),
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
