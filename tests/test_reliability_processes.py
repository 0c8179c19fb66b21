"""Reliability, killed processes: a repository writer killed at random points never stops the
server or gets half a version served; a server started from a thread dies with its launcher, and
a launcher never deletes the files of a live server (helpers and the short/long forms:
``tests/reliability_helpers.py``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest

import triton_repo

from .reliability_helpers import (
    LONG,
    ROOT,
    make_exports,
    make_repo,
    report,
    valid_request_ok,
    wait_for,
)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[int, pathlib.Path]:
    return make_exports(tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, exports: dict[int, pathlib.Path]) -> pathlib.Path:
    return make_repo(tmp_path_factory.mktemp("reliability") / "repo", exports)


# ----------------------------------------------------------------------- crash-safe writes

KILLED_WRITER = """
import sys, itertools
import triton_repo
repo, onnx_path, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("GO", flush=True)
for i in itertools.count(start):
    triton_repo.write_repository(repo, f"m{i % 7}", onnx_path)  # new models and new versions
"""


@pytest.mark.slow
def test_writer_killed_at_random_points_never_stops_the_server_or_serves_half_a_version(
    tmp_path: pathlib.Path, exports: dict[int, pathlib.Path]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    kills = 100 if LONG else 6
    rng = random.Random(0)
    for k in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(repo), str(exports[k % 3]), str(k)],
            cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"GO"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait(timeout=30)
    sibling = repo.parent / ".repo.pixeldcn-staging"
    leftovers = len(list(repo.glob("*/.staging-*"))) + len(list(sibling.glob(".staging-*")))
    runner = (ROOT / "triton_repo" / "_backend_model.py").read_bytes()
    sources = {path.read_bytes() for path in exports.values()}
    with triton_repo.LocalTritonServer(repo, triton_repo.ServerConfig(ready_timeout=120)) as server:
        assert list(repo.glob("*/.staging-*")) == [] and list(sibling.glob(".staging-*")) == []
        models = sorted(p.name for p in repo.iterdir())
        assert models and all(not name.startswith(".") for name in models)
        for name in models:
            for version in triton_repo.list_versions(repo / name):
                folder = repo / name / str(version)
                assert (folder / "model.py").read_bytes() == runner
                assert (folder / "model.onnx").read_bytes() in sources
            assert valid_request_ok(server, name, "http")
    report("writer killed at random points", kills=kills, models=len(models), leftovers_cleaned=leftovers)


# ----------------------------------------------------------------------------------- orphans

THREAD_LAUNCHER = """
import sys, threading, time
import triton_repo
box = {}
def start():
    box["server"] = triton_repo.LocalTritonServer(sys.argv[1]).start()
worker = threading.Thread(target=start)
worker.start()
worker.join()  # the thread that started the server has ended
time.sleep(1.0)
server = box["server"]
print(server.pid, server.log_path.parent, server.is_alive(), flush=True)
time.sleep(600)
"""


def launch_from_thread(repo: pathlib.Path) -> tuple[subprocess.Popen, int, pathlib.Path, bool]:
    proc = subprocess.Popen(
        [sys.executable, "-c", THREAD_LAUNCHER, str(repo)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    pid, workdir, alive = proc.stdout.readline().split()
    return proc, int(pid), pathlib.Path(workdir), alive == "True"


def processes() -> list[tuple[int, bytes]]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((int(entry.name), (entry / "cmdline").read_bytes()))
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_server_started_from_a_thread_survives_the_thread_and_dies_with_its_launcher(
    repo: pathlib.Path,
) -> None:
    proc, server_pid, workdir, alive_after_thread = launch_from_thread(repo)
    try:
        assert alive_after_thread  # PR_SET_PDEATHSIG alone would have killed it with the thread
    finally:
        proc.kill()  # SIGKILL: no cleanup runs in the launcher
        proc.wait(timeout=30)
    wait_for(lambda: gone(server_pid), 60, "the server to die with its launcher")
    wait_for(lambda: not workdir.exists(), 30, "the launcher's folder to be removed")


@pytest.mark.slow
def test_a_launcher_never_deletes_the_files_of_a_live_server(repo: pathlib.Path) -> None:
    from triton_repo import _orphans

    proc, server_pid, workdir, _ = launch_from_thread(repo)
    mine = str(workdir).encode()
    reapers = [pid for pid, cmdline in processes() if mine in cmdline and b"_reaper.py" in cmdline]
    try:
        assert len(reapers) == 1
        os.kill(reapers[0], signal.SIGKILL)  # no reaper: the server outlives its launcher
        proc.kill()
        proc.wait(timeout=30)
        time.sleep(1.0)
        assert not gone(server_pid)
        _orphans.remove_orphans()  # what the next launcher does first
        assert workdir.is_dir() and (workdir / "backends").is_dir()  # still in use
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server_pid, signal.SIGKILL)
    wait_for(lambda: gone(server_pid) or _zombie(server_pid), 30, "the orphan to die")
    _orphans.remove_orphans()
    assert not workdir.exists()


def _zombie(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
