"""Reliability: hostile requests, kills and load against a real local tritonserver.

Short form (CI, about a minute): ``pytest tests/test_reliability.py``.
Long form (16 clients for 3 minutes, 100 writer kills, ...)::

    PIXELDCN_RELIABILITY=long PIXELDCN_RELIABILITY_REPORT=reliability.json \\
        pytest tests/test_reliability.py -s

Every test prints the figures it measured (``-s`` shows them) and, with
``PIXELDCN_RELIABILITY_REPORT``, adds them to that JSON file (the table in docs/reliability.md).
Tests assert behaviour (errors, recovery, what is served), never speed; the deadlines below only
stop a test that would otherwise wait forever.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import pixeldcn_core as pc
import triton_repo
from triton_repo import _supervisor

pytestmark = pytest.mark.server

LONG = os.environ.get("PIXELDCN_RELIABILITY") == "long"
REPORT = os.environ.get("PIXELDCN_RELIABILITY_REPORT")
ROOT = pathlib.Path(__file__).resolve().parents[1]
ATOL = 1e-5  # served vs in-process onnxruntime, float32
RECOVERY_DEADLINE = 60.0  # seconds a test waits for recovery before it fails
SMALL_LIMIT = 64 << 10  # max_request_bytes of the model "small"
MAX_SHM = 48 << 20  # the server restarts a stub whose shared memory grew past this
FIGURES: dict[str, dict] = {}


def report(name: str, **figures: object) -> None:
    FIGURES[name] = figures
    print(f"\n[reliability] {name}: {json.dumps(figures)}")
    if REPORT:
        path = pathlib.Path(REPORT)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data[name] = {"long": LONG, **figures}
        path.write_text(json.dumps(data, indent=2) + "\n")


def layer_model(seed: int) -> onnx.ModelProto:
    """PixelDCL x [batch, 3, H, W] -> y [batch, 2, 2H, 2W], seeded weights."""
    return pc.build_layer_model("pixel_dcl", pc.LayerSpec("pixel_dcl", 3, 2).random_weights(seed=seed))


def inputs(seed: int, batch: int = 1, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[int, pathlib.Path]:
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for seed in range(3):
        paths[seed] = folder / f"seed{seed}.onnx"
        onnx.save(layer_model(seed), paths[seed])
    return paths


def reference(path: pathlib.Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, exports: dict[int, pathlib.Path]) -> pathlib.Path:
    repo = tmp_path_factory.mktemp("reliability") / "repo"
    options = triton_repo.ServingOptions(max_batch_size=8)
    for name in ("up", "roll", "mid"):
        triton_repo.write_repository(repo, name, exports[0], options=options)
    small = triton_repo.ServingOptions(max_batch_size=8, max_request_bytes=SMALL_LIMIT)
    triton_repo.write_repository(repo, "small", exports[0], options=small)
    return repo


@pytest.fixture(scope="module")
def server(repo: pathlib.Path):
    config = triton_repo.ServerConfig(max_shm_bytes=MAX_SHM, health_port=0)
    with triton_repo.LocalTritonServer(repo, config) as server:
        yield server


def http_post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 60):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_binary_infer(server, model: str, shape: list[int], data: bytes, dtype: str = "FP32"):
    """One request with a binary body (Triton's binary tensor extension)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape,
                    "datatype": dtype,
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    ).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return http_post(f"http://{server.http_url}/v2/models/{model}/infer", header + data, headers)


def grpc_raw_infer(server, model: str, shape: list[int], data: bytes, dtype: str = "FP32"):
    """One request built from Triton's protobuf, whatever its shape; ``(status name, message)``."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "x", dtype
    tensor.shape.extend(shape)
    request.raw_input_contents.append(data)
    with grpc.insecure_channel(server.grpc_url) as channel:
        try:
            response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()
    return "OK", response.model_name


def valid_request_ok(server, model: str = "up", protocol: str = "grpc", seed: int = 5) -> bool:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with triton_repo.Client(url, model, protocol=protocol, timeout=30) as client:
        try:
            client.infer(inputs(seed))
        except triton_repo.TritonRepoError:
            return False
    return True


def server_rss_mb(server) -> float:
    """Resident memory of tritonserver and its stubs, MiB."""
    total = 0
    pids = [server.pid] + [s.pid for s in _supervisor.list_stubs(server.pid, server.repo_dir) if not s.dead]
    for pid in pids:
        try:
            for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def stub_pids(server, model: str) -> list[int]:
    return [
        s.pid for s in _supervisor.list_stubs(server.pid, server.repo_dir) if s.model == model and not s.dead
    ]


def outcomes(server, model: str) -> tuple[int, int]:
    """(successful, failed) requests of ``model`` in the server's statistics."""
    import tritonclient.http as http

    stats = http.InferenceServerClient(server.http_url).get_inference_statistics(model)["model_stats"]
    success = sum(int(v["inference_stats"]["success"]["count"]) for v in stats)
    return success, sum(int(v["inference_stats"]["fail"]["count"]) for v in stats)


# ------------------------------------------------------------------------- bounded requests

# Shapes whose byte size wraps to 0 in int64: Triton accepts them with an empty body and the
# Python-backend stub dies in its own tensor code before model.py runs (upstream).
OVERFLOWING = {
    "2^62 rows": [1, 3, 2**62, 1],
    "2^61 x 2": [1, 3, 2**61, 2],
    "batch 4 x 2^60": [4, 3, 2**60, 1],
}


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", sorted(OVERFLOWING))
def test_overflowing_shape_then_a_valid_request_succeeds_within_seconds(
    server: triton_repo.LocalTritonServer, protocol: str, case: str
) -> None:
    # y = f(x) for a valid x must work again after the request that kills the stub.
    shape = OVERFLOWING[case]
    send = http_binary_infer if protocol == "http" else grpc_raw_infer
    started = time.monotonic()
    status, message = send(server, "up", shape, b"")
    assert status in (500, "INTERNAL"), (status, message)  # the stub died answering it
    recovered = wait_for(
        lambda: valid_request_ok(server, "up", protocol), RECOVERY_DEADLINE, "a valid request"
    )
    recovery_s = time.monotonic() - started
    assert recovered
    events = [what for _, model, what in server.supervisor.events if model == "up"]
    assert any("died" in what for what in events), events
    assert server.readiness() == (True, "ready")
    report(f"overflow {case} {protocol}", recovery_s=round(recovery_s, 2))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_request_over_max_request_bytes_is_refused_before_the_model_runs(
    server: triton_repo.LocalTritonServer, protocol: str
) -> None:
    # 1x3x128x128 float32 = 196608 bytes > max_request_bytes=65536 of model "small".
    data = bytes(3 * 128 * 128 * 4)
    send = http_binary_infer if protocol == "http" else grpc_raw_infer
    status, message = send(server, "small", [1, 3, 128, 128], data)
    text = message.decode() if isinstance(message, bytes) else message
    assert status in (400, "INVALID_ARGUMENT"), (status, text)
    assert f"request of 196608 bytes (x: 196608 bytes) exceeds max_request_bytes={SMALL_LIMIT}" in text
    # The limit's message comes from model.py's check, which runs before the data is read; a
    # run would have answered 200. (The Python backend counts error responses as successes in
    # the statistics, so they cannot tell.)
    assert valid_request_ok(server, "small", protocol)  # the next valid request, at once


def test_client_refuses_a_request_over_the_limit_before_sending(
    server: triton_repo.LocalTritonServer,
) -> None:
    client = triton_repo.Client(server.grpc_url, "small")
    assert client.info().max_request_bytes == SMALL_LIMIT
    before = outcomes(server, "small")
    with pytest.raises(
        triton_repo.InferenceInputError, match=rf"x has 196608 bytes .* max_request_bytes={SMALL_LIMIT}"
    ):
        client.infer(inputs(0, size=128))
    assert outcomes(server, "small") == before  # nothing reached the server


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_memory_returns_to_baseline_after_a_huge_refused_request(
    server: triton_repo.LocalTritonServer, protocol: str
) -> None:
    # 1x3x2048x2048 float32 = 50 MB, over "up"'s 24 MiB limit: refused, the stub that held it
    # in shared memory restarted, the server's malloc gives the buffers back.
    for seed in range(3):
        assert valid_request_ok(server, "up", protocol, seed)
    baseline = server_rss_mb(server)
    send = http_binary_infer if protocol == "http" else grpc_raw_infer
    status, message = send(server, "up", [1, 3, 2048, 2048], bytes(3 * 2048 * 2048 * 4))
    assert status in (400, "INVALID_ARGUMENT"), (status, message)
    peak = server_rss_mb(server)
    wait_for(lambda: valid_request_ok(server, "up", protocol), RECOVERY_DEADLINE, "a valid request")
    tolerance = 32.0  # MiB: allocator noise, a reloaded model's fresh session
    settled = wait_for(
        lambda: (rss := server_rss_mb(server)) <= baseline + tolerance and rss, RECOVERY_DEADLINE,
        f"server RSS back within {tolerance} MiB of its baseline {baseline:.0f} MiB",
        interval=0.5,
    )  # fmt: skip
    report(
        f"huge request RSS {protocol}",
        baseline_mb=round(baseline),
        peak_mb=round(peak),
        after_mb=round(settled),
    )


def test_shared_memory_files_are_private(server: triton_repo.LocalTritonServer) -> None:
    files = wait_for(lambda: list(pathlib.Path("/dev/shm").glob(f"{server._shm_prefix}*")), 10, "shm files")
    wait_for(lambda: all(f.stat().st_mode & 0o777 == 0o600 for f in files if f.exists()), 5, "mode 0600")


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


# -------------------------------------------------------------------- Triton's own front ends


def test_upstream_json_that_does_not_parse_gets_500_and_the_server_lives(server) -> None:
    # Known upstream limit (tritonserver 2.51): a parse error is answered 500, not 400.
    status, body = http_post(f"http://{server.http_url}/v2/models/up/infer", b"{not json", {})
    assert status == 500 and b"parse" in body.lower(), (status, body)
    assert valid_request_ok(server, "up", "http")


def test_upstream_grpc_model_name_is_cut_at_a_nul_byte(server) -> None:
    # Known upstream limit: "up\x00junk" is served as "up"; pixeldcn refuses such names itself.
    status, name = grpc_raw_infer(server, "up\x00junk", [1, 3, 4, 4], bytes(3 * 4 * 4 * 4))
    assert (status, name) == ("OK", "up")
    with pytest.raises(triton_repo.ModelNameError, match=r"contains '\\x00'"):
        triton_repo.Client(server.grpc_url, "up\x00junk")


def test_upstream_unfinished_http_body_holds_the_connection_open(server) -> None:
    # Known upstream limit: no body timeout; the ingress must cut such a connection.
    host, port = server.http_url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v2/models/up/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        sock.settimeout(3.0)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # no answer and no close after 3 s
    assert valid_request_ok(server, "up", "http")


# --------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a\x00b", "a\nb", "a\tb", "a\x7fb", "a\x1bb", "up\r"])
def test_names_with_control_characters_are_refused_everywhere(
    tmp_path: pathlib.Path, exports: dict[int, pathlib.Path], name: str
) -> None:
    with pytest.raises(triton_repo.ModelNameError, match="contains"):
        triton_repo.write_repository(tmp_path, name, exports[0])
    with pytest.raises(triton_repo.ModelNameError, match="contains"):
        triton_repo.Client("127.0.0.1:1", name)
    with pytest.raises(triton_repo.ModelNameError, match="contains"):
        triton_repo.rollback(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_a_refused_checkpoint_never_advises_weights_only_false(tmp_path: pathlib.Path) -> None:
    torch = pytest.importorskip("torch")
    from exporters.pytorch import CheckpointError, load_weights

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as info:
        load_weights(torch.nn.Linear(1, 1), tmp_path / "evil.pt")
    message = str(info.value)
    assert "refused" in message and "posix.system" in message
    assert "weights_only` set to `False" not in message and "weights_only=False" not in message


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
