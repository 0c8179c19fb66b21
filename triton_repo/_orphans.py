"""What a launcher leaves on the machine, and how the next launcher removes it once orphaned.

Each :class:`~triton_repo.LocalTritonServer` owns a temp folder ``<WORKDIR_PREFIX><launcher
pid>-<tag>-...`` (the Python backend, the server's pid file, its log) and the Python backend's
shared memory ``/dev/shm/<SHM_PREFIX><launcher pid>-<tag>-...``; :func:`remove_orphans` deletes
those of launchers that were killed (SIGKILL) and whose server is dead too.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile

from pixeldcn_core.io import pid_alive

__all__ = ["SERVER_PID_FILE", "SHM_PREFIX", "WORKDIR_PREFIX", "remove_orphans", "server_alive"]

# Names of the launcher's temp folder and the Python backend's shared memory: <prefix><pid>-...
WORKDIR_PREFIX = "pixeldcn-tritonserver-"
SHM_PREFIX = "pixeldcn-shm-"
#: The file in the temp folder holding the pid of the tritonserver started from it.
SERVER_PID_FILE = "server.pid"


def server_alive(workdir: pathlib.Path) -> bool:
    """Whether the tritonserver started from ``workdir`` (its pid file) still runs."""
    try:
        pid = int((workdir / SERVER_PID_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not pid_alive(pid):
        return False
    try:  # a reused pid: some other program
        return b"tritonserver" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def remove_orphans() -> None:
    """Remove temp folders and shared memory left by launchers that were killed (SIGKILL).

    Only where the launcher is dead *and* its server too: files of a live server stay.
    Folders are ``<prefix><launcher pid>-<tag>-...``; the shared memory of the server started
    from a folder shares its ``<launcher pid>-<tag>``.
    """
    tmp, shm = pathlib.Path(tempfile.gettempdir()), pathlib.Path("/dev/shm")
    live_tags = set()
    for entry in tmp.glob(f"{WORKDIR_PREFIX}*"):
        launcher, _, rest = entry.name[len(WORKDIR_PREFIX) :].partition("-")
        tag = f"{launcher}-{rest.split('-', 1)[0]}"
        if not launcher.isdigit() or pid_alive(int(launcher)) or server_alive(entry):
            live_tags.add(tag)
            continue
        shutil.rmtree(entry, ignore_errors=True)
    if not shm.is_dir():
        return
    for entry in shm.glob(f"{SHM_PREFIX}*"):
        launcher, _, rest = entry.name[len(SHM_PREFIX) :].partition("-")
        tag = f"{launcher}-{rest.split('-', 1)[0]}"
        if launcher.isdigit() and not pid_alive(int(launcher)) and tag not in live_tags:
            with contextlib.suppress(OSError):
                entry.unlink()
