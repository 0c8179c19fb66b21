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
        triton_repo.Client(["a:1", "b:2"], "m", balance="random")
    with pytest.raises(triton_repo.ServerStartError, match=r"replicas=0"):
        LocalReplicas(".", 0)


def test_client_with_several_urls_is_a_replica_client() -> None:
    client = triton_repo.Client("127.0.0.1:1,127.0.0.1:2", "m", balance="least_outstanding")
    assert isinstance(client, ReplicaClient) and isinstance(client, triton_repo.Client)
    assert client.urls == ["127.0.0.1:1", "127.0.0.1:2"]
    single = triton_repo.Client("127.0.0.1:1", "m")
    assert type(single) is triton_repo.Client


def test_nothing_listening_anywhere_raises_unavailable_after_trying_every_replica() -> None:
    from .scale_helpers import free_port

    urls = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    client = triton_repo.Client(urls, "m", protocol="http", timeout=5)
    with pytest.raises(triton_repo.ServerUnavailableError, match=r"every replica tried failed \(2 of 2"):
        client.info()
    assert client.counts() == {"answered": 0, "attempts": 0, "retries": 0, "failed_calls": 0}  # not infer
    assert all(s.down_until > 0 for s in client.replica_stats().values())
    assert not is_retryable(triton_repo.InferenceInputError("x"))
    assert not is_retryable(triton_repo.ServerTimeoutError("slow"))


@pytest.mark.server
@pytest.mark.slow
def test_kill_one_of_three_replicas_mid_load_loses_no_request(tmp_path: pathlib.Path) -> None:
    onnx.save(layer_model(5), tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "m", tmp_path / "m.onnx", options=CPU)
    expected = reference(layer_model(5), X)
    with LocalReplicas(repo, 3, ready_timeout=120) as replicas:
        clients = [
            triton_repo.Client(replicas.grpc_urls, "m", balance="round_robin", down_secs=0.5),
            triton_repo.Client(replicas.http_urls, "m", protocol="http", balance="least_outstanding",
                               down_secs=0.5),
        ]  # fmt: skip
        for client in clients:
            client.wait_ready(60)
        stop = threading.Event()
        issued = [0] * 4
        wrong: list[str] = []
        raised: list[str] = []

        def load(k: int, client: triton_repo.Client) -> None:
            for _ in range(20000):  # bounded; ends when told
                if stop.is_set():
                    return
                issued[k] += 1
                try:
                    y = client.infer(X)
                except Exception as exc:  # counted: the test wants none
                    raised.append(repr(exc))
                    continue
                if not np.allclose(y, expected, atol=ATOL, rtol=0):
                    wrong.append(f"max err {np.abs(y - expected).max():.3g}")

        threads = [threading.Thread(target=load, args=(k, clients[k % 2])) for k in range(4)]
        for t in threads:
            t.start()
        victim = replicas.servers[1]
        try:
            time.sleep(2.0)
            os.kill(victim.pid, signal.SIGKILL)  # mid-load, no warning
            deadline = time.monotonic() + 30
            while victim.is_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not victim.is_alive()
            at_kill = [c.replica_stats()[c.urls[1]].ok for c in clients]
            time.sleep(2.0)  # load on two replicas, retries moving requests off the dead one
            replicas.restart(1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the restarted replica is picked up again
                if all(c.replica_stats()[c.urls[1]].ok > at_kill[i] + 5 for i, c in enumerate(clients)):
                    break
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        server_ok = [success_count(triton_repo.Client(u, "m").statistics()) for u in replicas.grpc_urls]
        stats = [c.replica_stats() for c in clients]
        counts = [c.counts() for c in clients]

    urls = list(zip(clients[0].urls, clients[1].urls, strict=True))
    answered = sum(c["answered"] for c in counts)
    retries = sum(c["retries"] for c in counts)
    print(
        f"\nfailover: 3 replicas, 4 threads (2 gRPC round robin, 2 HTTP least outstanding), "
        f"{sum(issued)} requests, {answered} answered, {len(raised)} raised, {len(wrong)} wrong, "
        f"{retries} retries; per replica (client ok gRPC/HTTP): "
        + ", ".join(f"{i}: {stats[0][u0].ok}/{stats[1][u1].ok}" for i, (u0, u1) in enumerate(urls))
        + f"; server success counts (replica 1 after restart): {server_ok}; killed replica had "
        f"answered {sum(at_kill)}"
    )
    assert raised == [] and wrong == []
    assert answered == sum(issued), "a request was lost"
    for c in counts:
        assert c["failed_calls"] == 0 and c["attempts"] == c["answered"] + c["retries"]
    assert retries >= 1, "the kill should have made at least one request fail over"
    # Survivors: the server counted exactly what the clients received from it.
    for i in (0, 2):
        assert server_ok[i] == sum(s[c.urls[i]].ok for s, c in zip(stats, clients, strict=True))
    # The restarted replica: its fresh counter equals what it answered since the restart.
    pairs = list(zip(stats, clients, strict=True))
    since_restart = sum(s[c.urls[1]].ok - at_kill[k] for k, (s, c) in enumerate(pairs))
    assert since_restart > 0 and server_ok[1] == since_restart
    # Every failed attempt was on the killed replica.
    for s, c in zip(stats, clients, strict=True):
        assert s[c.urls[0]].failed == 0 and s[c.urls[2]].failed == 0
