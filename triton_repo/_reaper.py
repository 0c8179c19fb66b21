"""``python -m triton_repo._reaper PGID WORKDIR SHM_PREFIX``: take a server down with its launcher.

:class:`~triton_repo.LocalTritonServer` starts this small process beside tritonserver, in a
session of its own, with a pipe on its stdin whose other end only the launcher holds. When the
launcher exits in any way (SIGKILL included, from any thread: the kernel closes its end), the
read below returns; unless the launcher first wrote ``done`` (it stopped the server itself), the
reaper sends SIGTERM then SIGKILL to the server's process group (server and stubs) and, once the
group is gone, removes the launcher's temp folder and the server's shared-memory files.
``PR_SET_PDEATHSIG`` alone is not enough: it fires when the *thread* that started the server
exits, so a server started from a worker thread would die with that thread instead.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import sys
import time


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(pgid: int, workdir: pathlib.Path, shm_prefix: str, grace: float = 5.0) -> None:
    """Stop process group ``pgid`` (SIGTERM, then SIGKILL after ``grace`` s) and remove its files."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_alive(pgid):
            break
    if _group_alive(pgid):  # never delete the files of a server that still runs
        return
    shutil.rmtree(workdir, ignore_errors=True)
    for leftover in pathlib.Path("/dev/shm").glob(f"{shm_prefix}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's business
    pgid, workdir, shm_prefix = int(argv[0]), pathlib.Path(argv[1]), argv[2]
    message = sys.stdin.buffer.read()  # returns when the launcher closes its end or dies
    if message.startswith(b"done"):
        return 0
    reap(pgid, workdir, shm_prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
