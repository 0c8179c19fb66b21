"""Replicas and failover: three real tritonservers on one repository, one killed mid-load.

Client-side accounting is checked against the servers' own statistics: for every replica that
survives (and for the restarted one, from its restart on), the server's success count equals the
answers the clients received from it; every request gets a correct answer (ATOL = 1e-5 against
in-process onnxruntime), and every failed attempt is a documented retry on another replica.
"""

from __future__ import annotations

import os
import pathlib
import signal
import threading
import time

import numpy as np
import onnx
import pytest

import triton_repo
from triton_repo._replicas import LocalReplicas, ReplicaClient, is_retryable, split_urls, success_count

from .scale_helpers import layer_model, reference

ATOL = 1e-5
CPU = triton_repo.ServingOptions(kind="cpu", max_batch_size=4)
X = np.random.default_rng(11).standard_normal((1, 3, 8, 8), dtype=np.float32)


def test_split_urls_and_errors() -> None:
    assert split_urls("a:1, b:2") == ["a:1", "b:2"]
    assert split_urls(["a:1"]) == ["a:1"]
    with pytest.raises(triton_repo.ConfigError, match=r"names a replica twice"):
        split_urls("a:1,a:1")
    with pytest.raises(triton_repo.ConfigError, match=r"expected one or more host:port"):
        split_urls("a:1,,b:2")
    with pytest.raises(triton_repo.ConfigError, match=r"balance='random'"):
        triton_repo.ReplicaClient(["a:1", "b:2"], "m", balance="random")
    with pytest.raises(triton_repo.ServerStartError, match=r"replicas=0"):
        LocalReplicas(".", 0)


def test_replicas_are_made_by_replica_client_or_connect_and_client_takes_one_url() -> None:
    client = triton_repo.ReplicaClient("127.0.0.1:1,127.0.0.1:2", "m", balance="least_outstanding")
    assert isinstance(client, ReplicaClient) and isinstance(client, triton_repo.Client)
    assert client.urls == ["127.0.0.1:1", "127.0.0.1:2"]
    several = triton_repo.connect(["127.0.0.1:1", "127.0.0.1:2"], "m", down_secs=2)
    assert type(several) is ReplicaClient and several.down_secs == 2
    assert type(triton_repo.connect("127.0.0.1:1", "m", balance="least_outstanding")) is triton_repo.Client
    assert type(triton_repo.Client("127.0.0.1:1", "m")) is triton_repo.Client
    for old_call in (["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:1,127.0.0.1:2"):
        with pytest.raises(triton_repo.ConfigError, match=r"Client takes one host:port; for several "
                                                          r"replicas use ReplicaClient"):
            triton_repo.Client(old_call, "m")


def test_nothing_listening_anywhere_raises_unavailable_after_trying_every_replica() -> None:
    from .scale_helpers import free_port

    urls = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    client = triton_repo.ReplicaClient(urls, "m", protocol="http", timeout=5)
    with pytest.raises(triton_repo.ServerUnavailableError, match=r"every replica tried failed \(2 of 2"):
        client.info()
    assert client.counts() == {"answered": 0, "attempts": 0, "retries": 0, "failed_calls": 0}  # not infer
    assert all(s.down and s.down_until > 0 for s in client.replica_stats().values())
    assert not is_retryable(triton_repo.InferenceInputError("x"))
    assert is_retryable(triton_repo.ServerTimeoutError("hung"))  # inference is idempotent


def _quiet_ports(count: int) -> int:
    """A base port b such that b .. b+count-1 are free and below the ephemeral range."""
    import random
    import socket

    low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(max(1024, low - 12000), low - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range below the ephemeral range")


@pytest.mark.server
@pytest.mark.slow
def _failover_config() -> triton_repo.ServerConfig:
    # Ports outside the kernel's ephemeral range: while replica 1 is dead, no other process on
    # this machine is handed its ports by bind(0), so it restarts on them.
    base = _quiet_ports(9)
    return triton_repo.ServerConfig(
        http_port=base, grpc_port=base + 1, metrics_port=base + 2,
        ready_timeout=120, restart_on_crash=False,  # the test restarts it, after a dead window
    )  # fmt: skip


class _Load:
    """Four threads sending X through ``clients`` (alternately) until the ``with`` block ends;
    counts what was issued, what raised and what came back wrong."""

    def __init__(self, clients: list[triton_repo.ReplicaClient], expected: np.ndarray):
        self.stop = threading.Event()
        self.issued = [0] * 4
        self.wrong: list[str] = []
        self.raised: list[str] = []
        self.expected = expected
        self.threads = [threading.Thread(target=self.load, args=(k, clients[k % 2])) for k in range(4)]

    def load(self, k: int, client: triton_repo.Client) -> None:
        for _ in range(20000):  # bounded; ends when told
            if self.stop.is_set():
                return
            self.issued[k] += 1
            try:
                y = client.infer(X)
            except Exception as exc:  # counted: the test wants none
                self.raised.append(repr(exc))
                continue
            if not np.allclose(y, self.expected, atol=ATOL, rtol=0):
                self.wrong.append(f"max err {np.abs(y - self.expected).max():.3g}")

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _kill_and_restart_replica_1(
    replicas: LocalReplicas, clients: list[triton_repo.ReplicaClient]
) -> list[int]:
    """SIGKILL replica 1 mid-load, leave it dead for 2 s, restart it and wait until both clients
    use it again; return what each client had from it before the restart."""
    victim = replicas.servers[1]
    time.sleep(2.0)
    os.kill(victim.pid, signal.SIGKILL)  # mid-load, no warning
    deadline = time.monotonic() + 30
    while victim.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not victim.is_alive()
    time.sleep(2.0)  # load on two replicas, retries moving requests off the dead one
    # Nothing can answer from replica 1 now: its count is final (a thread that had its
    # answer just before the kill may count it just after; 2 s later all have).
    before_restart = [c.replica_stats()[c.urls[1]].ok for c in clients]
    replicas.restart(1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the restarted replica is picked up again
        counts_1 = [c.replica_stats()[c.urls[1]].ok for c in clients]
        if all(now > then + 5 for now, then in zip(counts_1, before_restart, strict=True)):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    return before_restart


def _failover_summary(load: _Load, clients: list, stats: list, counts: list, server_ok: list,
                      before_restart: list[int]) -> str:
    urls = list(zip(clients[0].urls, clients[1].urls, strict=True))
    answered = sum(c["answered"] for c in counts)
    retries = sum(c["retries"] for c in counts)
    return (
        f"\nfailover: 3 replicas, 4 threads (2 gRPC round robin, 2 HTTP least outstanding), "
        f"{sum(load.issued)} requests, {answered} answered, {len(load.raised)} raised, {len(load.wrong)} "
        f"wrong, {retries} retries; per replica (client ok gRPC/HTTP): "
        + ", ".join(f"{i}: {stats[0][u0].ok}/{stats[1][u1].ok}" for i, (u0, u1) in enumerate(urls))
        + f"; server success counts (replica 1 after restart): {server_ok}; killed replica had "
        f"answered {sum(before_restart)}"
    )  # fmt: skip


def test_kill_one_of_three_replicas_mid_load_loses_no_request(tmp_path: pathlib.Path) -> None:
    onnx.save(layer_model(5), tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "m", tmp_path / "m.onnx", options=CPU)
    expected = reference(layer_model(5), X)
    with LocalReplicas(repo, 3, _failover_config(), port_stride=3) as replicas:
        clients = [
            triton_repo.ReplicaClient(replicas.grpc_urls, "m", balance="round_robin", down_secs=0.5),
            triton_repo.ReplicaClient(replicas.http_urls, "m", protocol="http", balance="least_outstanding",
                                      down_secs=0.5),
        ]  # fmt: skip
        for client in clients:
            client.wait_ready(60)
        with _Load(clients, expected) as load:
            before_restart = _kill_and_restart_replica_1(replicas, clients)
        alive = replicas.alive()
        assert all(alive), f"replicas alive {alive}: " + "".join(
            s.log_tail(1500) for s, up in zip(replicas.servers, alive, strict=True) if not up
        )
        server_ok = [success_count(triton_repo.Client(u, "m").statistics()) for u in replicas.grpc_urls]
        assert list(clients[1].server_success_counts().values()) == server_ok  # same, over HTTP
        stats = [c.replica_stats() for c in clients]
        counts = [c.counts() for c in clients]

    print(_failover_summary(load, clients, stats, counts, server_ok, before_restart))
    answered = sum(c["answered"] for c in counts)
    retries = sum(c["retries"] for c in counts)
    assert load.raised == [] and load.wrong == []
    assert answered == sum(load.issued), "a request was lost"
    for c in counts:
        assert c["failed_calls"] == 0 and c["attempts"] == c["answered"] + c["retries"]
    assert retries >= 1, "the kill should have made at least one request fail over"
    # Survivors: the server counted exactly what the clients received from it.
    for i in (0, 2):
        assert server_ok[i] == sum(s[c.urls[i]].ok for s, c in zip(stats, clients, strict=True))
    # The restarted replica: its fresh counter equals what it answered since the restart.
    pairs = list(zip(stats, clients, strict=True))
    since_restart = sum(s[c.urls[1]].ok - before_restart[k] for k, (s, c) in enumerate(pairs))
    assert since_restart > 0 and server_ok[1] == since_restart
    # Every failed attempt was on the killed replica.
    for s, c in zip(stats, clients, strict=True):
        assert s[c.urls[0]].failed == 0 and s[c.urls[2]].failed == 0


def _children(pid: int) -> list[int]:
    """The tritonserver processes started by process ``pid`` (any of its threads)."""
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                exe = pathlib.Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if exe.endswith(b"tritonserver"):
                found.append(int(child))
    return sorted(found)


def test_serve_rejects_a_bad_replica_count(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    from pixeldcn_core.cli import main

    assert main(["serve", str(tmp_path), "--replicas", "0"]) == 2
    assert "--replicas=0; expected an integer in [1, 64]" in capsys.readouterr().err


@pytest.mark.server
@pytest.mark.slow
def test_serve_replicas_command_restarts_a_killed_replica(tmp_path: pathlib.Path) -> None:
    import re
    import subprocess
    import sys

    onnx.save(layer_model(6), tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "m", tmp_path / "m.onnx", options=CPU)
    proc = subprocess.Popen(
        [sys.executable, "-m", "triton_repo.cli_serve", str(repo), "--replicas", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(lines)
        grpc = re.findall(r"gRPC (\S+)", text)
        assert len(grpc) == 2, text
        client = triton_repo.ReplicaClient(grpc, "m").wait_ready(60)
        expected = reference(layer_model(6), X)
        np.testing.assert_allclose(client.infer(X), expected, atol=ATOL, rtol=0)
        servers = _children(proc.pid)
        assert len(servers) == 2
        os.kill(servers[0], signal.SIGKILL)
        for _ in range(20):  # the replica is down: the other one answers every request
            np.testing.assert_allclose(client.infer(X), expected, atol=ATOL, rtol=0)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(set(_children(proc.pid)) - {servers[0]}) < 2:
            time.sleep(0.2)
        client.wait_ready(60)  # both replicas, the restarted one included
        assert len(set(_children(proc.pid)) - {servers[0]}) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.server
@pytest.mark.slow
def test_several_urls_with_shared_memory_give_each_replica_its_regions_and_free_them(
    tmp_path: pathlib.Path,
) -> None:
    """ReplicaClient([u1, u2], shared_memory="system"): correct answers from both replicas through
    shared memory, and no region of this process left in /dev/shm after close."""
    onnx.save(layer_model(5), tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "m", tmp_path / "m.onnx", options=CPU)
    expected = reference(layer_model(5), X)
    mine = f"pixeldcn-client-{os.getpid()}-"
    with LocalReplicas(repo, 2, triton_repo.ServerConfig(ready_timeout=120)) as replicas:
        keys = [server.admin_headers("grpc") for server in replicas.servers]  # one key each
        client = triton_repo.ReplicaClient(replicas.grpc_urls, "m", shared_memory="system", headers=keys)
        client.wait_ready(60)
        for _ in range(6):
            np.testing.assert_allclose(client.infer(X), expected, rtol=0, atol=1e-5)
        assert all(st.ok == 3 for st in client.replica_stats().values())  # round robin
        assert list(pathlib.Path("/dev/shm").glob(f"{mine}*"))  # regions in use
        client.close()
        assert not list(pathlib.Path("/dev/shm").glob(f"{mine}*"))
