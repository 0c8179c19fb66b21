"""Reliability, recovery: stubs killed under load or during a slow load, a truthful health
endpoint, rollbacks that keep a version served throughout, a tritonserver that crashes and is
restarted, and a soak under sustained load (helpers and the short/long forms:
``tests/reliability_helpers.py``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pathlib
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import triton_repo

from .reliability_helpers import (
    ATOL,
    LONG,
    RECOVERY_DEADLINE,
    SERVER_CONFIG,
    http_post,
    inputs,
    make_exports,
    make_repo,
    reference,
    report,
    server_rss_mb,
    stub_pids,
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


@pytest.fixture(scope="module")
def server(repo: pathlib.Path):
    with triton_repo.LocalTritonServer(repo, SERVER_CONFIG) as server:
        yield server


# ------------------------------------------------------------------------------- dead stubs


@pytest.mark.slow
def test_stubs_are_watched_while_a_slow_load_runs(
    server: triton_repo.LocalTritonServer, repo: pathlib.Path, exports: dict[int, pathlib.Path]
) -> None:
    # A model with 4 instances loads its stubs one after the other (seconds). Meanwhile the new
    # stubs' shared memory turns 0600 and a stub of another model killed -9 marks it down.
    shm = pathlib.Path("/dev/shm")
    before = {f.name for f in shm.glob(f"{server._shm_prefix}*")}
    options = triton_repo.ServingOptions(max_batch_size=8, instances=4)
    triton_repo.write_repository(repo, "wide", exports[2], options=options)

    def wide_state() -> str:  # "" while the loading stubs starve the server of CPU
        try:
            index = server._repository_index()
        except (urllib.error.URLError, OSError):
            return ""
        return next((m.get("state", "") for m in index if m["name"] == "wide"), "")

    private_while_loading = down_while_loading = False
    killed = False
    deadline = time.monotonic() + 120
    while wide_state() != "READY" and time.monotonic() < deadline:
        new = [f for f in shm.glob(f"{server._shm_prefix}*") if f.name not in before]
        modes = []
        for f in new:
            with contextlib.suppress(OSError):
                modes.append(f.stat().st_mode & 0o777)
        loading = wide_state() == "LOADING"
        if loading and modes and all(m == 0o600 for m in modes):
            private_while_loading = True
        if loading and new and not killed:
            for pid in stub_pids(server, "up"):
                os.kill(pid, signal.SIGKILL)
            killed = True
        if killed and loading and "['up'] are down" in server.readiness()[1]:
            down_while_loading = True
        time.sleep(0.02)
    assert wide_state() == "READY"
    assert killed and down_while_loading, "a dead stub went unnoticed while another model loaded"
    assert private_while_loading, "shared memory stayed 0644 while a model loaded"
    wait_for(lambda: valid_request_ok(server, "up"), RECOVERY_DEADLINE, "model 'up' to answer again")
    shutil.rmtree(repo / "wide")  # the supervisor unloads it
    wait_for(lambda: wide_state() in ("", "UNAVAILABLE"), 60, "'wide' to be unloaded")


@pytest.mark.slow
def test_stub_killed_under_load_fails_fast_and_recovers(server: triton_repo.LocalTritonServer) -> None:
    clients, stop = 8, threading.Event()
    results: list[tuple[float, float, str]] = []  # (start, seconds, "ok" or error class)
    ready_samples: list[tuple[float, bool]] = []
    messages: list[str] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        client = triton_repo.Client(server.grpc_url, "up", timeout=30)
        x = inputs(w)
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                client.infer(x)
                outcome = "ok"
            except triton_repo.TritonRepoError as exc:
                outcome = type(exc).__name__
                messages.append(str(exc))
            with lock:
                results.append((t0, time.monotonic() - t0, outcome))

    def sampler() -> None:
        while not stop.is_set():
            ready_samples.append((time.monotonic(), server.is_ready()))
            time.sleep(0.02)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(r[2] == "ok" for r in results) >= 20, 60, "load to run")
        victims = stub_pids(server, "up")
        killed_at = time.monotonic()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)

        # recovered: 20 successes in a row started after the kill
        def recovered() -> bool:
            with lock:
                after = sorted(r for r in results if r[0] > killed_at)
            return len(after) >= 20 and all(r[2] == "ok" for r in after[-20:])

        wait_for(recovered, RECOVERY_DEADLINE, "requests to succeed again")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    after = sorted(r for r in results if r[0] > killed_at)
    failures = [r for r in after if r[2] != "ok"]
    last_failure = max((r[0] + r[1] for r in failures), default=killed_at)
    assert {r[2] for r in failures} <= {"ServerError", "ModelNotFoundError"}, failures  # never a timeout
    for message in messages:  # the client names the real cause
        if "is not healthy" in message:
            assert "stub died" in message, message
        if "has no available versions" in message:
            assert "restarting after a crash" in message, message
    not_ready = [t for t, ok in ready_samples if not ok and t >= killed_at]
    assert not_ready, "readiness never turned false while the stub was dead"
    assert server.readiness() == (True, "ready")
    report(
        "stub SIGKILL under load",
        clients=clients,
        requests_after_kill=len(after),
        failed=len(failures),
        recovery_s=round(last_failure - killed_at, 2),
        slowest_failure_s=round(max((r[1] for r in failures), default=0.0), 3),
        not_ready_s=round(max(not_ready) - min(not_ready), 2) if not_ready else 0.0,
    )


def test_health_endpoint_answers_the_truthful_readiness(server: triton_repo.LocalTritonServer) -> None:
    assert server.health_url is not None
    with urllib.request.urlopen(server.health_url + "/readyz", timeout=10) as response:
        assert response.status == 200 and json.loads(response.read()) == {"ready": True, "reason": "ready"}
    with urllib.request.urlopen(server.health_url + "/healthz", timeout=10) as response:
        assert response.status == 200


# --------------------------------------------------------------------------------- rollback


def readiness_sampler(server, model: str, stop: threading.Event, samples: list, answers: list) -> None:
    """Probes: (time, truthful readiness, Triton's model ready, Triton's strict server ready);
    a second thread sends requests: (time, ok)."""
    x = inputs(7)

    def triton_ready(path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def requests() -> None:
        client = triton_repo.Client(server.http_url, model, protocol="http", timeout=30)
        while not stop.is_set():
            try:
                client.infer(x)
                answers.append((time.monotonic(), True))
            except triton_repo.TritonRepoError:
                answers.append((time.monotonic(), False))

    sender = threading.Thread(target=requests)
    sender.start()
    while not stop.is_set():
        t = time.monotonic()
        model_ready = triton_ready(f"/v2/models/{model}/ready")
        samples.append((t, server.is_ready(), model_ready, triton_ready("/v2/health/ready")))
        time.sleep(0.005)
    sender.join()


def longest_false(samples: list, index: int) -> float:
    longest, start = 0.0, None
    for sample in samples:
        if not sample[index]:
            start = sample[0] if start is None else start
            longest = max(longest, sample[0] - start)
        else:
            start = None
    return longest


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["served", "mid-load"])
def test_rollback_keeps_a_version_served_throughout(
    server: triton_repo.LocalTritonServer, repo: pathlib.Path, exports: dict[int, pathlib.Path], moment: str
) -> None:
    model = "roll" if moment == "served" else "mid"
    client = triton_repo.Client(server.http_url, model, protocol="http")
    x = inputs(3)
    stop, samples, answers = threading.Event(), [], []
    sampler = threading.Thread(target=readiness_sampler, args=(server, model, stop, samples, answers))
    sampler.start()
    try:
        new = triton_repo.write_repository(repo, model, exports[1])
        if moment == "served":
            wait_for(
                lambda: np.allclose(client.infer(x), reference(exports[1], x), atol=ATOL), 60, "version 2"
            )
        rolled = triton_repo.rollback(repo, model)  # mid-load: right after the write
        assert (int(new.name), int(rolled.name)) == (2, 3)
        expected = reference(exports[0], x)

        def serves_version_3() -> bool:
            return client.info(refresh=True).versions == ["3"] and np.allclose(
                client.infer(x), expected, atol=ATOL
            )

        wait_for(serves_version_3, 60, "version 3 (= version 1) served")
        time.sleep(1.0)
    finally:
        stop.set()
        sampler.join(timeout=60)
    assert triton_repo.history(repo / model) == [3]
    assert answers and [a for a in answers if not a[1]] == []  # no request failed
    figures = dict(
        requests=len(answers),
        probes=len(samples),
        longest_not_ready_s=round(longest_false(samples, 1), 3),
        longest_model_not_ready_s=round(longest_false(samples, 2), 3),
        longest_triton_strict_not_ready_s=round(longest_false(samples, 3), 3),
    )
    assert figures["longest_not_ready_s"] == 0.0, figures
    assert figures["longest_model_not_ready_s"] == 0.0, figures
    report(f"rollback {moment}", **figures)

# ------------------------------------------------------------------------ a crashing server


@pytest.mark.slow
def test_upstream_big_form_encoded_body_crashes_tritonserver_and_it_is_restarted(
    repo: pathlib.Path,
) -> None:
    # Known upstream limit (tritonserver 2.51): a ~12 MB body sent as
    # application/x-www-form-urlencoded makes the HTTP front end segfault. The supervisor
    # restarts the server on the same ports.
    with triton_repo.LocalTritonServer(repo) as server:
        first_pid, port = server.pid, server.http_port
        tensor = {"name": "x", "shape": [1, 3, 1024, 1024], "datatype": "FP32"}
        tensor["parameters"] = {"binary_data_size": 12 << 20}
        header = json.dumps({"inputs": [tensor]}).encode()
        started = time.monotonic()
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            http_post(
                f"http://{server.http_url}/v2/models/up/infer", header + bytes(12 << 20),
                {"Inference-Header-Content-Length": str(len(header)),
                 "Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
        wait_for(
            lambda: server.pid != first_pid and server.is_ready(), RECOVERY_DEADLINE, "a restarted server"
        )
        assert server.http_port == port and valid_request_ok(server, "up", "http")
        report("server crash (form-encoded body)", restart_s=round(time.monotonic() - started, 2),
               restarts=server.supervisor.restarts)  # fmt: skip


# -------------------------------------------------------------------------------------- soak


@pytest.mark.slow
def test_soak(server: triton_repo.LocalTritonServer) -> None:
    clients, seconds = (16, 180.0) if LONG else (8, 5.0)
    x = inputs(1, size=32)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    rss_samples: list[tuple[float, float]] = []

    def worker(w: int) -> None:
        client = triton_repo.Client(server.grpc_url if w % 2 else server.http_url, "up",
                                    protocol="grpc" if w % 2 else "http", timeout=60)  # fmt: skip
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                client.infer(x)
                latencies[w].append(time.perf_counter() - t0)
            except triton_repo.TritonRepoError as exc:
                errors.append(repr(exc)[:200])

    rss_start = server_rss_mb(server)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(worker, w) for w in range(clients)]
        while time.monotonic() - started < seconds:
            rss_samples.append((time.monotonic() - started, server_rss_mb(server)))
            time.sleep(min(5.0, seconds / 8))
        stop.set()
        for future in futures:
            future.result()
    rss_end = server_rss_mb(server)
    all_ms = np.array([v for lat in latencies for v in lat]) * 1e3
    assert errors == []
    assert len(all_ms) > 0
    half = len(rss_samples) // 2
    report(
        "soak", clients=clients, seconds=seconds, requests=int(all_ms.size), errors=len(errors),
        p50_ms=round(float(np.percentile(all_ms, 50)), 1), p99_ms=round(float(np.percentile(all_ms, 99)), 1),
        rss_start_mb=round(rss_start), rss_mid_mb=round(rss_samples[half][1]) if rss_samples else None,
        rss_end_mb=round(rss_end),
    )  # fmt: skip
