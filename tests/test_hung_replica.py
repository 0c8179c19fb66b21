"""A replica that accepts connections and never answers (issue 19, item 2).

One real tritonserver, and in front of it a TCP proxy on 127.0.0.1 that first *hangs* (accepts
every connection, reads nothing, answers nothing) and later *forwards* to the server: a hung
replica that comes back. Over HTTP and gRPC, a :class:`ReplicaClient` over [hung, good] must
answer every request (correct, ATOL 1e-5 against in-process onnxruntime), spend one timeout on
the hung replica (the request that found it), keep traffic off it while its health probes fail,
and send traffic to it again once a probe finds its model ready.
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import onnx
import pytest

import triton_repo

from .scale_helpers import layer_model, reference

ATOL = 1e-5
CPU = triton_repo.ServingOptions(kind="cpu", max_batch_size=4)
X = np.random.default_rng(19).standard_normal((1, 3, 8, 8), dtype=np.float32)
REQUESTS = 20


class HangingProxy:
    """TCP on 127.0.0.1 that holds every connection silently until :meth:`release`, then forwards
    new connections to ``target`` ("host:port")."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.forwarding = threading.Event()
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self.forwarding.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if not self.forwarding.is_set():
                self._held.append(conn)  # hung: never read, never answered
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        """Stop listening (``shutdown`` first: a bare ``close`` leaves the socket listening while
        the accept thread is blocked on it) and close the held connections."""
        self._closed = True
        for sock in (self._listener, *self._held):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[triton_repo.LocalTritonServer]:
    tmp = tmp_path_factory.mktemp("hung")
    onnx.save(layer_model(7), tmp / "m.onnx")
    triton_repo.write_repository(tmp / "repo", "m", tmp / "m.onnx", options=CPU)
    with triton_repo.LocalTritonServer(tmp / "repo", triton_repo.ServerConfig(ready_timeout=120)) as srv:
        yield srv


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_hung_replica_costs_one_timeout_and_comes_back_after_a_health_probe(
    server: triton_repo.LocalTritonServer, protocol: str, tmp_path: pathlib.Path
) -> None:
    good = server.http_url if protocol == "http" else server.grpc_url
    expected = reference(layer_model(7), X)
    proxy = HangingProxy(good)
    try:
        client = triton_repo.ReplicaClient(
            [proxy.url, good], "m", protocol=protocol, timeout=2, down_secs=0.2
        )  # round robin: the metadata fetch goes to the hung replica first
        raised = []
        for _ in range(REQUESTS):
            try:
                np.testing.assert_allclose(client.infer(X), expected, atol=ATOL, rtol=0)
            except triton_repo.TritonRepoError as exc:
                raised.append(repr(exc))
        stats = client.replica_stats()
        hung = stats[proxy.url]
        print(f"\nhung replica ({protocol}): {REQUESTS} requests, {len(raised)} failed, "
              f"{hung.timeouts} timeout(s) spent on it, {hung.probes} probes, "
              f"good replica answered {stats[good].ok}")
        assert raised == []
        assert hung.timeouts == 1 and hung.ok == 0 and hung.down
        assert stats[good].ok == REQUESTS
        assert client.counts()["failed_calls"] == 0

        proxy.release()  # the replica answers again (through the proxy): a probe brings it back
        deadline = time.monotonic() + 60
        while client.replica_stats()[proxy.url].ok == 0 and time.monotonic() < deadline:
            np.testing.assert_allclose(client.infer(X), expected, atol=ATOL, rtol=0)
            time.sleep(0.05)
        back = client.replica_stats()[proxy.url]
        assert back.ok > 0 and not back.down, back
        assert client.counts()["failed_calls"] == 0
        client.close()
    finally:
        proxy.close()


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_concurrent_requests_lose_nothing_to_a_hung_replica(
    server: triton_repo.LocalTritonServer, protocol: str
) -> None:
    """4 threads x 5 requests: each request spends at most one timeout, none fails."""
    good = server.http_url if protocol == "http" else server.grpc_url
    expected = reference(layer_model(7), X)
    proxy = HangingProxy(good)
    try:
        client = triton_repo.ReplicaClient([proxy.url, good], "m", protocol=protocol, timeout=2)
        client.info()
        raised: list[str] = []
        wrong: list[float] = []

        def load() -> None:
            for _ in range(5):
                try:
                    y = client.infer(X)
                except triton_repo.TritonRepoError as exc:
                    raised.append(repr(exc))
                    continue
                if not np.allclose(y, expected, atol=ATOL, rtol=0):
                    wrong.append(float(np.abs(y - expected).max()))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        hung = client.replica_stats()[proxy.url]
        print(f"\nhung replica, 4 threads ({protocol}): 20 requests, {len(raised)} failed, "
              f"{hung.timeouts} timeout(s) spent on it")
        assert raised == [] and wrong == []
        assert hung.ok == 0 and hung.timeouts <= 1  # the metadata fetch found it; then avoided
        client.close()
    finally:
        proxy.close()


@pytest.mark.server
@pytest.mark.slow
def test_infer_command_with_two_urls_answers_past_a_hung_one(
    server: triton_repo.LocalTritonServer, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from triton_repo.cli_infer import main

    np.save(tmp_path / "x.npy", X)
    proxy = HangingProxy(server.grpc_url)
    try:
        rc = main(["--url", f"{proxy.url},{server.grpc_url}", "--model", "m", "--timeout", "2",
                   "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")])  # fmt: skip
    finally:
        proxy.close()
    assert rc == 0, capsys.readouterr().err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference(layer_model(7), X), atol=ATOL, rtol=0)


@pytest.mark.server
@pytest.mark.slow
def test_statistics_asks_every_replica_at_once_so_hung_ones_cost_one_timeout_in_all(
    server: triton_repo.LocalTritonServer,
) -> None:
    """Two hung replicas and a good one, a 60 s timeout: both hung proxies hold a connection of
    the statistics call long before the first timeout could have passed (asked one after the
    other, the second would be reached only after 60 s: [1, 0] held before the change). Closing
    the proxies ends the held calls; the hung replicas read None, the good one its statistics.
    HTTP only: a gRPC channel connects when it is made and sends nothing to a peer that never
    answers its handshake, so a proxy cannot see when a gRPC call reaches it (same code path)."""
    good = server.http_url
    hung = [HangingProxy(good), HangingProxy(good)]
    client = triton_repo.ReplicaClient([hung[0].url, hung[1].url, good], "m", protocol="http",
                                       timeout=60)
    result: dict[str, object] = {}
    call = threading.Thread(target=lambda: result.update(client.statistics()), daemon=True)
    try:
        call.start()
        deadline = time.monotonic() + 20  # a third of the timeout: sequential asking cannot pass
        while not all(p._held for p in hung) and time.monotonic() < deadline:
            time.sleep(0.05)
        held = [len(p._held) for p in hung]
    finally:
        for p in hung:
            p.close()  # the held connections close: the calls on them fail at once
    call.join(30)
    assert not call.is_alive(), "statistics() still waiting after its hung replicas closed"
    assert all(held), f"connections held by the hung replicas while statistics() ran: {held}"
    assert result[hung[0].url] is None and result[hung[1].url] is None
    stats = result[good]
    assert isinstance(stats, dict) and any(m.get("name") == "m" for m in stats["model_stats"]), stats
    client.close()
