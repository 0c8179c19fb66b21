"""Shared by the reliability suite (``tests/test_reliability_*.py``): its constants, the figures
report, the model and repository every file serves, and the raw HTTP/gRPC requests and server
probes the tests use.

Short form (CI, about a minute): ``pytest tests/test_reliability_*.py``.
Long form (16 clients for 3 minutes, 100 writer kills, ...)::

    PIXELDCN_RELIABILITY=long PIXELDCN_RELIABILITY_REPORT=reliability.json \\
        pytest tests/test_reliability_*.py -s

Every test prints the figures it measured (``-s`` shows them) and, with
``PIXELDCN_RELIABILITY_REPORT``, adds them to that JSON file (the table in docs/reliability.md).
Tests assert behaviour (errors, recovery, what is served), never speed; the deadlines below only
stop a test that would otherwise wait forever.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import urllib.error
import urllib.request

import numpy as np
import onnx
import onnxruntime as ort

import pixeldcn_core as pc
import triton_repo
from triton_repo import _supervisor

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


def make_exports(folder: pathlib.Path) -> dict[int, pathlib.Path]:
    """Three seeded PixelDCL exports in ``folder``: seed -> path (the ``exports`` fixture)."""
    paths = {}
    for seed in range(3):
        paths[seed] = folder / f"seed{seed}.onnx"
        onnx.save(layer_model(seed), paths[seed])
    return paths


def make_repo(repo: pathlib.Path, exports: dict[int, pathlib.Path]) -> pathlib.Path:
    """The served repository (the ``repo`` fixture): "up", "roll", "mid" and "small" (a request
    limit of SMALL_LIMIT bytes), all version 1 of seed 0."""
    options = triton_repo.ServingOptions(max_batch_size=8)
    for name in ("up", "roll", "mid"):
        triton_repo.write_repository(repo, name, exports[0], options=options)
    small = triton_repo.ServingOptions(max_batch_size=8, max_request_bytes=SMALL_LIMIT)
    triton_repo.write_repository(repo, "small", exports[0], options=small)
    return repo


#: How the ``server`` fixture of each file runs (stubs restarted past MAX_SHM, a health endpoint).
SERVER_CONFIG = triton_repo.ServerConfig(max_shm_bytes=MAX_SHM, health_port=0)


def reference(path: pathlib.Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


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
