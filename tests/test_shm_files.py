"""Shared-memory files in /dev/shm without a server (issue 19, item 8): which client regions a
new client or server reaps, and the guard that keeps the server's regions 0600.

Real files in /dev/shm and real processes; names carry this test's own prefix or pid, so nothing
of another program is touched.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import stat
import subprocess
import sys
import time

import pytest

from triton_repo._shm import REGION_PREFIX, guard_private, reap_stale_regions

SHM = pathlib.Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm (Linux)")


def _region(pid: int) -> pathlib.Path:
    path = SHM / f"{REGION_PREFIX}{pid}-{secrets.token_hex(16)}-in"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    return path


def _wait(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_regions_of_gone_or_reused_pids_are_reaped_and_live_ones_stay() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(1.5)  # the child's start time (to the second) is before the next region
        live = _region(child.pid)  # its creator runs: stays
        mine = _region(os.getpid())
        reused = _region(child.pid)  # "created an hour ago": the child (started now) is not its creator
        hour_ago = time.time() - 3600
        os.utime(reused, (hour_ago, hour_ago))
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        gone = _region(int(dead.stdout))
        reaped = reap_stale_regions()
        assert gone.name in reaped and reused.name in reaped
        assert not gone.exists() and not reused.exists()
        assert live.exists() and mine.exists()
    finally:
        child.kill()
        child.wait()
        for path in SHM.glob(f"{REGION_PREFIX}{child.pid}-*"):
            path.unlink()
        for path in SHM.glob(f"{REGION_PREFIX}{os.getpid()}-*"):
            path.unlink()


def test_files_of_a_guarded_prefix_are_made_private_when_something_sets_them_0644() -> None:
    """What Triton's Python backend does to its regions (create, then fchmod 0644): the guard
    sets them back to 0600 as soon as inotify reports it, without any periodic check."""
    prefix = f"pixeldcn-test-guard-{os.getpid()}-"
    assert guard_private(prefix)
    paths = [SHM / f"{prefix}{i}" for i in range(5)]
    try:
        for path in paths:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.fchmod(fd, 0o644)
            os.close(fd)
        assert _wait(lambda: all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths))
        paths[0].chmod(0o640)  # later changes too
        assert _wait(lambda: stat.S_IMODE(paths[0].stat().st_mode) == 0o600)
        other = SHM / f"pixeldcn-test-unguarded-{os.getpid()}"
        paths.append(other)
        fd = os.open(other, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.fchmod(fd, 0o644)
        os.close(fd)
        time.sleep(0.2)
        assert stat.S_IMODE(other.stat().st_mode) == 0o644  # other names are left alone
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
