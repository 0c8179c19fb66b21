"""Keep a local tritonserver truthful and serving: watch its stubs, load what the repository holds.

Triton 2.51's Python backend never restarts a dead stub (it stays a zombie, every request waits
about 1 s and fails with "Stub ... is not healthy") and both ready endpoints keep saying 200. The
:class:`Supervisor` thread of :class:`~triton_repo.LocalTritonServer` therefore:

- a watcher thread lists the server's stub processes (``/proc``) every ``interval`` seconds,
  never blocked by a load in progress; a stub that is a zombie on two looks in a row marks its
  model *down*: readiness turns false at once, and the loader thread unloads the model
  (requests then fail fast with "not ready") and loads it again, which starts a new stub;
- also restarts a stub whose shared-memory region grew past ``max_shm_bytes`` (a hostile request
  that was refused still grew it), so the server's memory returns to its baseline;
- every ``poll_secs``, looks at the repository (the server runs in explicit model-control mode;
  an ``s3://`` repository is listed, see
  :meth:`~triton_repo._s3_repository.ServerRepository.models`) and loads a model whose folder
  changed, one load at a time: a version removed while another loads can never leave a model
  stuck in LOADING; stray entries (:func:`stray_entry`) are skipped;
- restarts a tritonserver that died (``restart_on_crash``), on the same ports;
- makes the server's shared-memory files private (0600): the Python backend creates them 0644
  whatever the umask, so a file is world-readable until the next tick (at most ``interval``).

:func:`readiness` is the truthful readiness: the server is up, no model is down or reloading, and
every model has a READY version. :class:`HealthServer` serves it over HTTP for probes
(``GET /readyz``, ``GET /healthz``), e.g. a Kubernetes ``readinessProbe``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import pathlib
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

__all__ = ["HealthServer", "Stub", "Supervisor", "list_stubs", "repository_models", "stray_entry"]

_STUB_NAME = "triton_python_backend_stub"


@dataclasses.dataclass(frozen=True)
class Stub:
    """One Python-backend stub process of the server.

    Attributes:
        pid: its process id.
        state: ``/proc`` state letter (``"Z"`` = zombie: dead, not reaped by the server).
        model: the model it runs (first folder of its ``model.py`` path below the repository).
        shm_path: its shared-memory region file, or None.
    """

    pid: int
    state: str
    model: str
    shm_path: pathlib.Path | None

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X")

    def shm_bytes(self) -> int:
        try:
            return self.shm_path.stat().st_size if self.shm_path is not None else 0
        except OSError:
            return 0


def _proc_children(ppid: int) -> list[tuple[int, str, list[bytes]]]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) != ppid:
                continue
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        found.append((int(entry.name), fields[0], cmdline))
    return found


def private_shm(prefix: str) -> int:
    """Make the server's shared-memory files 0600 (the backend creates them 0644, whatever the
    umask); return how many were changed."""
    changed = 0
    for path in pathlib.Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
                changed += 1
    return changed


_CONFIG_NAME_RE = re.compile(rb'^name:\s*"([^"]+)"', re.MULTILINE)
_INSTANCE_RE = re.compile(r"(.+)_\d+_\d+")
#: model folder -> model name, for stubs running a copy of the model (an S3 repository).
_COPY_MODELS: dict[str, str] = {}


def _model_of_copy(model_path: str, instance: str) -> str:
    """The model a stub runs from a folder outside the repository (Triton's local copy of an S3
    model, ``<mount>/folderXXXXXX/<version>/model.py``): the ``name`` of the copied config, else
    the instance name (``<model>_<group>_<instance>``) without its suffix."""
    folder = os.path.dirname(os.path.dirname(model_path))
    name = _COPY_MODELS.get(folder)
    if name is None:
        name = ""
        with contextlib.suppress(OSError):
            with open(os.path.join(folder, "config.pbtxt"), "rb") as f:
                found = _CONFIG_NAME_RE.search(f.read(1 << 16))
            name = found.group(1).decode(errors="replace") if found else ""
        if not name:
            match = _INSTANCE_RE.fullmatch(instance)
            name = match.group(1) if match else ""
        if name:
            if len(_COPY_MODELS) > 4096:
                _COPY_MODELS.clear()
            _COPY_MODELS[folder] = name
    return name


def list_stubs(server_pid: int, repo_dir: pathlib.Path | str) -> list[Stub]:
    """The stub processes of ``server_pid`` (a zombie's command line is empty: model unknown).

    A stub's model is the first folder of its ``model.py`` below ``repo_dir``; a stub running a
    copy (an ``s3://`` repository: Triton loads a local copy of each model) is named by the copy.
    """
    stubs = []
    repo = str(repo_dir).rstrip("/") + "/"
    for pid, state, cmdline in _proc_children(server_pid):
        name = os.path.basename(cmdline[0].decode(errors="replace")) if cmdline and cmdline[0] else ""
        if state in ("Z", "X"):
            stubs.append(Stub(pid, state, "", None))
            continue
        if name != _STUB_NAME or len(cmdline) < 3:
            continue
        model_path = cmdline[1].decode(errors="replace")
        if model_path.startswith(repo):
            model = model_path[len(repo) :].split("/", 1)[0]
        else:
            instance = cmdline[8].decode(errors="replace") if len(cmdline) > 8 else ""
            model = _model_of_copy(model_path, instance)
        shm = pathlib.Path("/dev/shm") / cmdline[2].decode(errors="replace")
        stubs.append(Stub(pid, state, model, shm))
    return stubs


def stray_entry(entry: pathlib.Path, is_valid: Callable[[str], bool]) -> str | None:
    """Why the repository entry ``entry`` is no model to load (None: it is one).

    Hidden entries and names Triton cannot serve are ignored silently (staging folders); a
    symbolic link, a file, or a folder without ``config.pbtxt`` under a valid name gets a reason:
    loading it would fail, and at start fail the whole server.
    """
    if not is_valid(entry.name):
        return ""
    if entry.is_symlink():
        return "a symbolic link (a model folder must be a real folder)"
    if not entry.is_dir():
        return "not a folder"
    if not (entry / "config.pbtxt").is_file():
        return "a folder without config.pbtxt"
    return None


def repository_models(
    repo_dir: pathlib.Path, is_valid: Callable[[str], bool], skipped: dict[str, str] | None = None
) -> dict[str, tuple]:
    """``{model: fingerprint}`` for the model folders Triton should serve.

    The fingerprint changes when a version folder appears or vanishes or a config is replaced
    (version folders are immutable once renamed in). Hidden folders (staging) are skipped, and
    so are stray entries (:func:`stray_entry`), whose reasons go into ``skipped``.
    """
    models: dict[str, tuple] = {}
    try:
        entries = sorted(repo_dir.iterdir())
    except OSError:
        return models
    for entry in entries:
        reason = stray_entry(entry, is_valid)
        if reason is not None:
            if reason and skipped is not None:
                skipped[entry.name] = reason
            continue
        parts = []
        for path in (entry / "config.pbtxt", entry / "configs" / "local.pbtxt"):
            with contextlib.suppress(OSError):
                st = path.stat()
                parts.append((path.name, st.st_ino, st.st_mtime_ns, st.st_size))
        with contextlib.suppress(OSError):
            for sub in entry.iterdir():
                if sub.name.isdigit():
                    with contextlib.suppress(OSError):
                        parts.append((sub.name, sub.stat().st_ino))
        models[entry.name] = tuple(sorted(parts))
    return models


class Supervisor(threading.Thread):
    """The watchdog thread of one :class:`~triton_repo.LocalTritonServer` (see the module doc)."""

    def __init__(self, server, *, interval: float = 0.1):
        super().__init__(name=f"pixeldcn-supervisor-{server.http_port}", daemon=True)
        self.server = server
        self.interval = interval
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        #: Models that cannot answer right now (dead stub, reloading after a crash).
        self.down: set[str] = set()
        self.loaded: dict[str, tuple] = {}
        #: The models the repository held at the last look (None: not looked yet).
        self.known: dict[str, tuple] | None = None
        self._skipped: dict[str, str] = {}
        self.events: list[tuple[float, str, str]] = []  # (monotonic time, model, what happened)
        self.restarts = 0
        #: Dead stubs already handled (the server may never reap them).
        self.handled_zombies: set[int] = set()
        self._pid_model: dict[int, str] = {}
        #: Stubs of a model that was unloaded to restart them (still exiting).
        self.retired: set[int] = set()
        #: Models whose stub the watcher found dead or bloated, for the loader to restart.
        self.pending: set[str] = set()
        self._suspects: set[int] = set()
        self.wake = threading.Event()
        self.watcher = threading.Thread(target=self.watch, name=f"{self.name}-watch", daemon=True)

    def start(self) -> None:
        """Start the loader (this thread) and the watcher (stubs and shared memory, every
        ``interval`` seconds, never blocked by a load in progress)."""
        super().start()
        self.watcher.start()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.watcher.is_alive():
            self.watcher.join(timeout)

    # ------------------------------------------------------------------------------- events

    def note(self, model: str, what: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), model, what))
            del self.events[:-200]

    def is_down(self) -> bool:
        with self.lock:
            return bool(self.down)

    # --------------------------------------------------------------------------- the loop

    def run(self) -> None:
        """The loader: restarts a crashed server, restarts the models the watcher flagged, loads
        what changed in the repository; one model-control call at a time."""
        next_poll = 0.0
        while not self.stop_event.is_set():
            self.wake.wait(self.interval)
            self.wake.clear()
            if self.stop_event.is_set():
                break
            try:
                if not self.server.is_alive():
                    if self.server.config.restart_on_crash:
                        self._restart_server()
                    continue
                with self.lock:
                    pending, self.pending = sorted(self.pending), set()
                for model in pending:
                    self._reload(model, restart_stub=True)
                if time.monotonic() >= next_poll:
                    self._poll_repository()
                    next_poll = time.monotonic() + self.server.config.poll_secs
            except Exception as exc:
                self.note("", f"supervisor error: {exc!r}")

    def watch(self) -> None:
        """The watcher: flags dead or bloated stubs (readiness false at once) and keeps the
        shared-memory files private, every ``interval`` seconds."""
        while not self.stop_event.wait(self.interval):
            try:
                if self.server.is_alive():
                    broken = self._check_stubs()
                    if broken:
                        with self.lock:
                            self.down.update(broken)
                            self.pending.update(broken)
                        self.wake.set()
                private_shm(self.server._shm_prefix)
            except Exception as exc:
                self.note("", f"watcher error: {exc!r}")

    def _restart_server(self) -> None:
        with self.lock:
            self.down.add("*server*")
        self.note("", "tritonserver exited; restarting it")
        try:
            self.server._restart()
            self.restarts += 1
            self.loaded = dict(self.server._started_models)
            with self.lock:
                self._pid_model.clear()
            self.note("", "tritonserver restarted")
        except Exception as exc:
            self.note("", f"restart failed: {exc!r}")
            time.sleep(1.0)
            return
        with self.lock:
            self.down.discard("*server*")

    def refresh_stubs(self) -> None:
        """Remember which model each live stub runs (a zombie's command line is empty)."""
        for stub in list_stubs(self.server.pid, self.server.repo_dir):
            if not stub.dead:
                with self.lock:
                    self._pid_model[stub.pid] = stub.model

    def _check_stubs(self) -> set[str]:
        """The models with a stub that died (a zombie) or holds too much shared memory.

        A stub that exits normally (its version was unloaded) is reaped by the server and
        vanishes; a crashed one stays a zombie, whose model is remembered from its live days.
        """
        limit = self.server.config.max_shm_bytes
        broken: set[str] = set()
        for stub in list_stubs(self.server.pid, self.server.repo_dir):
            if not stub.dead:
                with self.lock:
                    self._pid_model[stub.pid] = stub.model
                    if stub.pid in self.retired or stub.model in self.down:  # being restarted
                        continue
                if limit is not None and stub.shm_bytes() > limit:
                    broken.add(stub.model)
                    self.note(stub.model, f"stub {stub.pid} holds {stub.shm_bytes()} bytes of shared memory")
                continue
            with self.lock:
                if stub.pid in self.handled_zombies or stub.pid in self.retired:
                    continue
                # A stub that exits normally (its version unloaded) is a zombie for the instant
                # before the server reaps it: only one seen on two looks in a row has crashed.
                if stub.pid not in self._suspects:
                    self._suspects.add(stub.pid)
                    continue
                self._suspects.discard(stub.pid)
                self.handled_zombies.add(stub.pid)
                model = self._pid_model.pop(stub.pid, None)
            self.note(model or "?", f"stub {stub.pid} died")
            broken.update([model] if model else list(self.loaded))  # unknown owner: reload them all
        return broken

    def _poll_repository(self) -> None:
        current = self.server._repository_models()  # an unreachable bucket raises: nothing unloaded
        with self.lock:
            self.known = dict(current)
        for name, reason in sorted(self.server.skipped.items()):
            if self._skipped.get(name) != reason:
                self.note(name, f"skipped: {reason}")
        self._skipped = dict(self.server.skipped)
        for model, fingerprint in current.items():
            if self.loaded.get(model) != fingerprint:
                self._reload(model, restart_stub=False, fingerprint=fingerprint)
        for model in sorted(set(self.loaded) - set(current)):
            self.server._control("unload", model)
            self.loaded.pop(model, None)
            self.note(model, "unloaded (folder removed)")

    def _reload(self, model: str, *, restart_stub: bool, fingerprint: tuple | None = None) -> None:
        if restart_stub:
            with self.lock:
                self.down.add(model)
                self.retired.update(pid for pid, m in self._pid_model.items() if m == model)
            self.note(model, "down: unloading to restart its stub")
            self.server._control("unload", model)  # requests now fail at once ("not ready")
        ok, message = self.server._control("load", model)
        if fingerprint is None:  # a stub restart: the repository is as last seen
            fingerprint = self.loaded.get(model, ())
        self.loaded[model] = fingerprint
        self.note(model, "loaded" if ok else f"load failed: {message}")
        self.refresh_stubs()
        if restart_stub:
            with self.lock:
                self.down.discard(model)


def readiness(server) -> tuple[bool, str]:
    """``(ready, reason)``: True when every valid request to every model can succeed now."""
    if not server.is_alive():
        return False, "tritonserver is not running"
    supervisor = server._supervisor
    if supervisor is not None:
        with supervisor.lock:
            down = sorted(supervisor.down)
        if down:
            return False, f"model(s) {down} are down (stub restart in progress)"
    else:  # nobody watches the stubs: look now
        dead = [s.pid for s in list_stubs(server.pid, server.repo_dir) if s.dead]
        if dead:
            return False, f"stub process(es) {dead} died"
    expected = set(server._expected_models())
    try:
        index = server._repository_index()
        ready_models = {m["name"] for m in index if m.get("state") == "READY"}
    except urllib.error.HTTPError:
        # Triton fails its whole index on a stray entry (a dangling symbolic link): ask per model.
        ready_models = {m for m in expected if server._model_ready(m)}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, f"tritonserver does not answer: {exc}"
    missing = sorted(expected - ready_models)
    if missing:
        return False, f"model(s) {missing} have no READY version"
    return True, "ready"


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "pixeldcn-health"

    def do_GET(self) -> None:
        triton = self.server.triton  # type: ignore[attr-defined]
        if self.path in ("/readyz", "/v2/health/ready"):
            ok, reason = readiness(triton)
        elif self.path in ("/healthz", "/livez", "/v2/health/live"):
            ok, reason = (triton.is_alive() or triton.config.restart_on_crash), "live"
        else:
            self.send_error(404, "expected /readyz or /healthz")
            return
        body = json.dumps({"ready" if "ready" in self.path else "live": ok, "reason": reason}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class HealthServer:
    """``GET /readyz`` (200 / 503 with the reason) and ``GET /healthz`` for probes."""

    def __init__(self, triton, host: str, port: int):
        self.httpd = http.server.ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.triton = triton  # type: ignore[attr-defined]
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="pixeldcn-health", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
