"""Starting and stopping a real tritonserver: a model that cannot load, a port in use, a killed
launcher (its server goes down, the next launcher cleans up), the ``pixeldcn serve`` command in the
foreground (SIGTERM stops it cleanly), and stray entries of a repository skipped with a warning.
Helpers: ``tests/server_helpers.py``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

import triton_repo

from .server_helpers import ATOL, SERVING, Exported, inputs, make_exports, make_repo, wait_for

pytestmark = pytest.mark.server

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    return make_exports(tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, exports: dict[str, Exported]) -> pathlib.Path:
    return make_repo(tmp_path_factory, exports)


# ---------------------------------------------------------------------------- start failure


def test_server_that_cannot_load_a_model_raises_with_the_reason_and_log_tail(
    tmp_path: pathlib.Path, exports: dict[str, Exported]
) -> None:
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "broken", exports["seed0"].path)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(triton_repo.ServerStartError, match="exited with code") as info:
        triton_repo.LocalTritonServer(repo, triton_repo.ServerConfig(ready_timeout=60)).start()
    message = str(info.value)
    # Explicit model-control mode (the supervisor loads models) words it this way:
    assert "load failed for model 'broken': version 1" in message and "INVALID_PROTOBUF" in message
    assert "--- tail of" in message


def test_server_on_a_port_in_use_raises_with_the_reason(tmp_path: pathlib.Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(triton_repo.ServerStartError, match=f"Socket '127.0.0.1:{port}' already in use"):
            config = triton_repo.ServerConfig(grpc_port=port, ready_timeout=60)
            triton_repo.LocalTritonServer(tmp_path, config).start()


KILLED_LAUNCHER = """
import sys, time
import triton_repo
server = triton_repo.LocalTritonServer(sys.argv[1]).start()
print(server.pid, server.log_path.parent, flush=True)
time.sleep(600)
"""


def test_killed_launcher_takes_its_server_down_and_the_next_launcher_cleans_up(
    tmp_path: pathlib.Path,
) -> None:
    from triton_repo import _orphans

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_LAUNCHER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pid_text, workdir_text = proc.stdout.readline().split()
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs in the launcher
        proc.wait(timeout=30)
    server_pid, workdir = int(pid_text), pathlib.Path(workdir_text)

    def server_gone() -> bool:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(server_gone, 60, "the orphaned tritonserver to exit (parent-death signal and reaper)")
    # The reaper removes the launcher's folder once the server is gone; a folder left by a
    # launcher whose reaper died too is removed by the next start.
    wait_for(lambda: not workdir.exists(), 30, "the reaper to remove the launcher's folder")
    workdir.mkdir()
    (workdir / "server.pid").write_text(str(server_pid))  # dead launcher, dead server
    _orphans.remove_orphans()  # what every LocalTritonServer.start() does first
    assert not workdir.exists()


# ------------------------------------------------------------------------------------- CLI


def test_pixeldcn_command_line_has_serve_and_infer_when_the_entry_point_is_installed() -> None:
    from importlib import metadata

    names = {ep.name for ep in metadata.entry_points(group="pixeldcn.commands")}
    if not {"serve", "infer"} & names:
        pytest.skip("pyproject.toml does not declare the triton_repo entry points (serve, infer) yet")
    from pixeldcn_core.cli import build_parser

    args = build_parser().parse_args(["serve", "repo", "--http-port", "8000"])
    assert args.http_port == 8000 and callable(args.func)
    args = build_parser().parse_args(["infer", "--url", "h:1", "--model", "m", "--input", "x.npy"])
    assert args.model == "m" and callable(args.func)


def test_cli_serve_runs_in_the_foreground_and_stops_cleanly_on_sigterm(
    repo: pathlib.Path, exports: dict[str, Exported]
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "triton_repo.cli_serve", str(repo), "--http-port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: list[str] = []
    ready = threading.Event()

    def read_stdout() -> None:  # serve prints its URLs, then "press Ctrl-C to stop"
        assert proc.stdout is not None
        for line in proc.stdout:
            printed.append(line)
            if "press Ctrl-C" in line:
                ready.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert ready.wait(timeout=90), printed
        client = triton_repo.Client(f"127.0.0.1:{port}", "up", protocol="http")
        assert client.is_ready()
        x = inputs(1, 1, 8, 8)
        np.testing.assert_allclose(client.infer(x), exports["seed0"](x), rtol=0, atol=ATOL)
        client.close()  # an open keep-alive connection would hold shutdown for --exit-timeout
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert stopped_in < 15, f"took {stopped_in:.1f}s to stop"
    assert f"HTTP    127.0.0.1:{port}" in "".join(printed)
    assert "stopping" in err
    with pytest.raises(triton_repo.ServerUnavailableError):
        client.infer(x)


def test_stray_entries_in_the_repository_are_skipped_with_a_warning(
    tmp_path: pathlib.Path, exports: dict[str, Exported]
) -> None:
    """An empty folder, a symbolic link, a file under a valid model name: serve warns, skips
    them, serves the models, and /readyz says 200 (issue 19, item 7)."""
    import json

    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "good", exports["seed0"].path, options=SERVING)
    (repo / "empty").mkdir()
    (repo / "alias").symlink_to(repo / "good", target_is_directory=True)
    (repo / "dangling").symlink_to(tmp_path / "nowhere")
    (repo / "notes.txt").write_text("not a model")
    proc = subprocess.Popen(
        [sys.executable, "-m", "triton_repo.cli_serve", str(repo), "--health-port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        printed = []
        assert proc.stdout is not None
        for line in proc.stdout:
            printed.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(printed)
        assert "press Ctrl-C" in text, text + proc.stderr.read()  # type: ignore[union-attr]
        http = next(line.split()[1] for line in printed if line.strip().startswith("HTTP"))
        health = next(line.split()[1] for line in printed if line.strip().startswith("health"))
        x = inputs(1, 1, 8, 8)
        client = triton_repo.Client(http, "good", protocol="http")
        np.testing.assert_allclose(client.infer(x), exports["seed0"](x), rtol=0, atol=ATOL)
        client.close()
        with urllib.request.urlopen(health, timeout=10) as response:
            assert response.status == 200 and json.loads(response.read())["ready"] is True
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "warning: skipped 'empty'" in err and "without config.pbtxt" in err, err
    assert "warning: skipped 'alias'" in err and "symbolic link" in err, err
    assert "warning: skipped 'dangling'" in err and "warning: skipped 'notes.txt'" in err, err
    assert "'good'" not in err
