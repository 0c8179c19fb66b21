"""System shared memory for :class:`Client` (``shared_memory="system"``): tensors by reference.

With system shared memory the request and the answer carry region names instead of tensor
bytes: the client writes the input into a POSIX shared-memory region the server has mapped, and
the server writes the output into another one. Only for a server on the same host.

Lifecycle, per client thread (each thread has its own connection and its own two regions):

- created on the thread's first request, sized for it; reused while requests fit; a bigger
  request replaces the region (unregister, unlink, create, register) - never a smaller one;
- names ``pixeldcn-client-<pid>-<random 128 bits>``: unguessable, so no other local user can
  pre-create or open them by name; created exclusively (never attach to an existing region)
  with mode 0600 (Python's ``multiprocessing.shared_memory``, what tritonclient's utilities use);
- unregistered from the server and unlinked on :meth:`Client.close`, when the client is
  garbage-collected or the interpreter exits, and after any failed request (the next request
  starts afresh, which also re-registers after a server restart);
- a client that is killed (SIGKILL) cannot clean up itself: Python's resource tracker, a
  separate process, unlinks its regions when it sees the client die. When the tracker dies too
  (the client's whole process group killed), the regions stay in ``/dev/shm``: the next
  shared-memory client and the next :class:`LocalTritonServer` start unlink every region whose
  creator (the pid in its name) is gone (:func:`reap_stale_regions`). The server keeps its
  mapping of the unlinked memory until the region is unregistered, which the next shared-memory
  client does for regions of dead processes (:func:`unregister_stale`), or a restart.

The output's size is not known before the first answer for an input shape (a model's output
dims may depend on its input's in any way): the first request for each input shape takes its
output by value and records the shape; later requests of that shape take it through the region.
The output array returned is a copy: the region is reused by the next request.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pathlib
import re
import secrets
import struct
import threading
import weakref
from typing import Any

import numpy as np

from ._errors import ConfigError, ServerError, TritonRepoError

__all__ = [
    "REGION_PREFIX", "SHARED_MEMORY", "SharedMemoryPool", "guard_private", "reap_stale_regions",
    "unregister_stale",
]  # fmt: skip

#: ``Client(shared_memory=...)`` values.
SHARED_MEMORY = ("system",)
#: Prefix of every region (key ``/<name>``, Triton name ``<name>``) this package creates.
REGION_PREFIX = "pixeldcn-client-"
_NAME = re.compile(rf"^{REGION_PREFIX}(\d+)-[0-9a-f]{{32}}-(in|out)$")


def _utils() -> Any:
    from tritonclient.utils import shared_memory

    return shared_memory


def check_shared_memory(value: str | None) -> str | None:
    if value is None or value is False:
        return None
    if value == "cuda":
        raise ConfigError("shared_memory='cuda' needs a GPU and tritonclient's CUDA utilities; "
                          "this build supports 'system' (same host) only")
    if value not in SHARED_MEMORY:
        raise ConfigError(f"shared_memory={value!r}; expected None or one of {SHARED_MEMORY}")
    return str(value)


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, to the second), None if unknown."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1]) for line in pathlib.Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )  # fmt: skip
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _creator_gone(pid: int, region: os.stat_result) -> bool:
    """Whether the process that created a region (``pid`` from its name) has ended: no such
    process, or one that started after the region was last changed (a reused pid)."""
    from pixeldcn_core.io import pid_alive

    if pid == os.getpid():
        return False
    if not pid_alive(pid):
        return True
    started = _started_at(pid)
    # The creator started before it created the region; its times only grow since (1 s: btime's
    # precision).
    return started is not None and started > min(region.st_mtime, region.st_ctime) + 1.0


def reap_stale_regions(directory: str | os.PathLike[str] = "/dev/shm") -> list[str]:
    """Unlink this user's client regions (``pixeldcn-client-<pid>-...``) whose creating process
    is gone, as a killed process group leaves them (its resource tracker killed too).

    Called when a shared-memory :class:`Client` or a :class:`LocalTritonServer` starts. Regions
    of live processes stay. Returns the names unlinked.
    """
    folder = pathlib.Path(directory)
    if not folder.is_dir():
        return []
    uid = os.geteuid()
    gone = []
    for path in folder.glob(f"{REGION_PREFIX}*"):
        m = _NAME.match(path.name)
        if m is None:
            continue
        try:
            st = path.lstat()
            if st.st_uid != uid or not _creator_gone(int(m.group(1)), st):
                continue
            path.unlink()
        except OSError:  # unlinked meanwhile (its tracker, another client)
            continue
        gone.append(path.name)
    return gone


class _Region:
    """One registered region: Triton name, POSIX key, size, tritonclient handle."""

    def __init__(self, role: str, byte_size: int):
        self.name = f"{REGION_PREFIX}{os.getpid()}-{secrets.token_hex(16)}-{role}"
        self.key = "/" + self.name
        self.byte_size = int(byte_size)
        self.handle = _utils().create_shared_memory_region(self.name, self.key, self.byte_size,
                                                           create_only=True)
        self.registered = False

    def destroy(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            with contextlib.suppress(Exception):  # already unlinked (resource tracker, a test)
                _utils().destroy_shared_memory_region(handle)


class _ThreadRegions:
    def __init__(self) -> None:
        self.regions: dict[str, _Region] = {}  # "in" / "out" -> region


def _release(regions: list[tuple[_Region, Any, dict[str, str]]], via: Any = None) -> None:
    """Unregister (best effort, through ``via`` or else the connection that registered; an HTTP
    connection is not to be used from another thread) and unlink."""
    for region, conn, headers in regions:
        conn = via if via is not None else conn
        if region.registered and conn is not None:
            with contextlib.suppress(Exception):  # the server may be gone; unlinking still matters
                conn.unregister_system_shared_memory(region.name, headers=headers)
            region.registered = False
        region.destroy()


class SharedMemoryPool:
    """The shared-memory regions of one :class:`Client`, one input and one output per thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        # every live region with the connection that registered it: close() releases them all
        self._live: dict[str, tuple[_Region, Any, dict[str, str]]] = {}
        self._out_shapes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._swept = False  # regions of dead clients unregistered once, on first use
        reap_stale_regions()  # and unlinked from /dev/shm now
        self._finalizer = weakref.finalize(self, _release_all, self._live, self._lock)

    # -- regions ------------------------------------------------------------------------------
    def _thread(self) -> _ThreadRegions:
        t = getattr(self._local, "regions", None)
        if t is None:
            t = self._local.regions = _ThreadRegions()
        return t

    def _region(self, client: Any, role: str, nbytes: int) -> _Region:
        t = self._thread()
        region = t.regions.get(role)
        if region is not None and region.name not in self._live:  # released by close()
            del t.regions[role]
            region = None
        if not self._swept:
            self._swept = True
            unregister_stale(client)
        if region is not None and region.byte_size >= nbytes:
            return region
        if region is not None:  # too small: replace it
            self._drop(region)
        conn, headers = client._client(), client.headers
        region = _Region(role, max(nbytes, 1))
        with self._lock:
            self._live[region.name] = (region, conn, headers)
        try:
            client._call("register_system_shared_memory", conn.register_system_shared_memory,
                         region.name, region.key, region.byte_size, headers=headers,
                         **client._timeout_kw())
        except BaseException:
            self._drop(region)
            raise
        region.registered = True
        t.regions[role] = region
        return region

    def _drop(self, region: _Region) -> None:
        with self._lock:
            entry = self._live.pop(region.name, None)
        t = self._thread()
        for role, r in list(t.regions.items()):
            if r is region:
                del t.regions[role]
        if entry is not None:
            _release([entry])

    def drop_thread(self) -> None:
        """Release this thread's regions (after an error: the next request starts afresh)."""
        for region in list(self._thread().regions.values()):
            self._drop(region)

    def close(self, client: Any = None) -> None:
        """Unregister (through ``client``'s connection of this thread) and unlink every region
        of every thread."""
        _release_all(self._live, self._lock, client._client() if client is not None else None)

    def names(self) -> list[str]:
        """Names of the live regions (all threads)."""
        with self._lock:
            return sorted(self._live)

    # -- inference ------------------------------------------------------------------------------
    def infer(self, client: Any, info: Any, batch: np.ndarray, output: str) -> np.ndarray:
        """One request with the input (and, once its shape is known, the output) in regions."""
        try:
            return self._infer(client, info, batch, output)
        except BaseException:
            self.drop_thread()
            raise

    def _infer(self, client: Any, info: Any, batch: np.ndarray, output: str) -> np.ndarray:
        module = client._module
        shm = _utils()
        region = self._region(client, "in", batch.nbytes)
        shm.set_shared_memory_region(region.handle, [batch])
        tensor = module.InferInput(info.input_name, list(batch.shape), info.datatype)
        tensor.set_shared_memory(region.name, batch.nbytes)
        requested = module.InferRequestedOutput(output)
        key = (output, batch.dtype.str, batch.shape)
        out_shape = self._out_shapes.get(key)
        out_region = None
        if out_shape is not None:
            out_dtype, shape = out_shape[0], out_shape[1:]
            nbytes = int(np.prod(shape)) * np.dtype(out_dtype).itemsize
            out_region = self._region(client, "out", nbytes)
            requested.set_shared_memory(out_region.name, nbytes)
        result = client._call(
            "infer", client._client().infer, client.model, [tensor],
            model_version=client.version, outputs=[requested], headers=client.headers,
            **client._timeout_kw(),
        )  # fmt: skip
        if out_region is None or out_shape is None:
            y = result.as_numpy(output)
            if y is None:
                raise ServerError(f"infer: the server's response has no output {output!r}")
            self._out_shapes[key] = (y.dtype.str, *y.shape)
            return y
        meta = result.get_output(output)
        if meta is None:
            raise ServerError(f"infer: the server's response has no output {output!r}")
        shape = tuple(int(d) for d in (meta["shape"] if isinstance(meta, dict) else meta.shape))
        if shape != tuple(out_shape[1:]):
            raise ServerError(f"infer: output {output!r} has shape {list(shape)} in shared "
                              f"memory; expected {list(out_shape[1:])} from an earlier answer")
        return np.array(shm.get_contents_as_numpy(out_region.handle, np.dtype(out_shape[0]), shape))


def _release_all(live: dict[str, tuple[_Region, Any, dict[str, str]]], lock: threading.Lock,
                 via: Any = None) -> None:
    with lock:
        entries = list(live.values())
        live.clear()
    _release(entries, via)


def unregister_stale(client: Any) -> list[str]:
    """Unregister regions of this package whose creating process is gone (a killed client).

    Needs the shared-memory API (on :class:`LocalTritonServer`, its admin header). Returns the
    names unregistered.
    """
    from pixeldcn_core.io import pid_alive

    conn = client._client()
    kw = client._timeout_kw()
    try:
        if client.protocol == "grpc":
            status = conn.get_system_shared_memory_status(headers=client.headers, as_json=True, **kw)
            regions = list(status.get("regions", {}).values())
        else:
            status = conn.get_system_shared_memory_status(headers=client.headers)
            regions = list(status) if isinstance(status, list) else []
    except Exception as exc:  # a server without the API: nothing to clean
        if isinstance(exc, TritonRepoError):
            raise
        return []
    gone = []
    for r in regions:
        m = _NAME.match(str(r.get("name", "")))
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            try:
                conn.unregister_system_shared_memory(r["name"], headers=client.headers, **kw)
                gone.append(r["name"])
            except Exception:  # another client may have just done it
                pass
    return gone


# --------------------------------------------------------------------- the server's own regions

_IN_ATTRIB, _IN_CREATE, _IN_MOVED_TO = 0x4, 0x100, 0x80
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class _PrivateGuard(threading.Thread):
    """One thread per process: watches ``/dev/shm`` with inotify and makes every file whose name
    starts with a guarded prefix 0600 the moment it is created or its mode changes."""

    def __init__(self, folder: str = "/dev/shm"):
        super().__init__(name="pixeldcn-shm-guard", daemon=True)
        self.folder = folder
        self.prefixes: set[str] = set()
        self.lock = threading.Lock()
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(
            self.fd, folder.encode(), _IN_CREATE | _IN_ATTRIB | _IN_MOVED_TO
        ) < 0:  # fmt: skip
            raise OSError(ctypes.get_errno(), f"inotify on {folder}: {os.strerror(ctypes.get_errno())}")

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except OSError:
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0").decode(
                    errors="replace"
                )
                offset += _EVENT.size + length
                with self.lock:
                    guarded = any(name.startswith(p) for p in self.prefixes)
                if guarded:
                    _make_private(os.path.join(self.folder, name))


def _make_private(path: str) -> None:
    with contextlib.suppress(OSError):  # removed meanwhile
        if os.lstat(path).st_mode & 0o077:
            os.chmod(path, 0o600, follow_symlinks=False)


_guard: _PrivateGuard | None = None
_guard_lock = threading.Lock()


def guard_private(prefix: str, folder: str = "/dev/shm") -> bool:
    """Keep every ``folder/<prefix>*`` file 0600 from now on: Triton's Python backend creates its
    shared-memory regions and then sets them 0644 (boost's default, whatever the umask; nothing
    in its configuration changes it), and this resets them as soon as inotify reports the change.

    Returns False where inotify is not available (the caller's periodic check remains).
    """
    global _guard
    if not prefix or not os.path.isdir(folder):
        return False
    with _guard_lock:
        if _guard is None:
            try:
                _guard = _PrivateGuard(folder)
            except (OSError, AttributeError):
                return False
            _guard.start()
        guard = _guard
    with guard.lock:
        guard.prefixes.add(prefix)
    for path in pathlib.Path(folder).glob(f"{prefix}*"):  # created before the watch
        _make_private(str(path))
    return True
