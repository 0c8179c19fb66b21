"""triton_repo against a real tritonserver (the binary in nvidia-pytriton, CPU, Python backend).

One server for the module, started on a repository written by ``write_repository``; tests add
models and versions to it while it runs (it polls the repository every second). No mocks.
Starting and stopping servers (failures, a killed launcher, ``pixeldcn serve``):
``tests/test_triton_server_lifecycle.py``; shared helpers and the parity tolerance:
``tests/server_helpers.py``.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import shutil
import sys
import threading
import time
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest

import triton_repo

from .server_helpers import ATOL, SERVING, Exported, inputs, make_exports, make_repo, wait_for

pytestmark = pytest.mark.server

PROTOCOLS = ["grpc", "http"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    return make_exports(tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, exports: dict[str, Exported]) -> pathlib.Path:
    return make_repo(tmp_path_factory, exports)


@pytest.fixture(scope="module")
def server(repo: pathlib.Path):
    config = triton_repo.ServerConfig(poll_secs=1, ready_timeout=120)
    with triton_repo.LocalTritonServer(repo, config) as server:
        yield server


def raw_client(server: triton_repo.LocalTritonServer, protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module

        return module, module.InferenceServerClient(server.grpc_url)
    import tritonclient.http as module

    return module, module.InferenceServerClient(server.http_url)


def url(server: triton_repo.LocalTritonServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


# ------------------------------------------------------------------------------ the server


def test_server_binds_loopback_on_free_ports_and_exposes_metrics(
    server: triton_repo.LocalTritonServer,
) -> None:
    assert server.is_alive()
    ports = {server.http_port, server.grpc_port, server.metrics_port}
    assert len(ports) == 3 and all(p > 0 for p in ports)
    assert server.http_url == f"127.0.0.1:{server.http_port}"
    assert server.grpc_url == f"127.0.0.1:{server.grpc_port}"
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert b"nv_inference_request_success" in response.read()
    assert server.log_path is not None and "Started GRPCInferenceService" in server.log_path.read_text()


def test_serving_writes_nothing_into_the_repository(
    server: triton_repo.LocalTritonServer, repo: pathlib.Path
) -> None:
    # A file appearing in a version folder (the stub's __pycache__ for model.py) is a change the
    # polling server answers by reloading the model; serving must leave the repository as written:
    # the writer's own hash-checked bytecode is used, no other is added.
    triton_repo.Client(server.grpc_url, "up").infer(inputs(0, 1, 8, 8))
    time.sleep(2 * server.config.poll_secs)
    caches = sorted(str(p.relative_to(repo)) for p in repo.rglob("__pycache__/*") if "up" in p.parts)
    assert caches == [f"up/1/__pycache__/model.{sys.implementation.cache_tag}.pyc"]
    log = server.log_path.read_text() if server.log_path else ""
    assert log.count("successfully loaded 'up'") == 1, "the model was reloaded after start"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_repository_api_is_unusable_without_the_admin_key(
    server: triton_repo.LocalTritonServer, protocol: str
) -> None:
    module, client = raw_client(server, protocol)
    header = "pixeldcn-admin-key" if protocol == "http" else "triton-grpc-protocol-pixeldcn-admin-key"
    with pytest.raises(module.InferenceServerException, match=f"restricted, expecting header '{header}'"):
        client.unload_model("up")
    with pytest.raises(module.InferenceServerException, match="restricted"):
        client.get_model_repository_index()
    assert list(server.admin_headers(protocol)) == [header]
    index = client.get_model_repository_index(headers=server.admin_headers(protocol))
    names = [m["name"] for m in index] if protocol == "http" else [m.name for m in index.models]
    assert {"up", "load", "swap", "steady"} <= set(names)
    assert triton_repo.Client(url(server, protocol), "up", protocol=protocol).is_ready()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_model_has_the_tensors_of_the_export(
    server: triton_repo.LocalTritonServer, protocol: str
) -> None:
    info = triton_repo.Client(url(server, protocol), "up", protocol=protocol).info()
    assert (info.input_name, info.output_name, info.datatype) == ("x", "y", "FP32")
    assert info.shape == (-1, 3, -1, -1)
    assert info.max_batch_size == 8


# ------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize(("height", "width"), [(16, 16), (24, 40)])
def test_served_output_equals_in_process_onnxruntime(
    server: triton_repo.LocalTritonServer,
    exports: dict[str, Exported],
    protocol: str,
    batch: int,
    height: int,
    width: int,
) -> None:
    # y = PixelDCL(x) served == onnxruntime in process, |diff| <= 1e-5, y [N, 2, 2H, 2W]
    x = inputs(batch * 100 + height, batch, height, width)
    client = triton_repo.Client(url(server, protocol), "up", protocol=protocol, timeout=30)
    y = client.infer(x)
    assert y.shape == (batch, 2, 2 * height, 2 * width) and y.dtype == np.float32
    np.testing.assert_allclose(y, exports["seed0"](x), rtol=0, atol=ATOL)


def test_one_sample_without_batch_dim_returns_one_output_without_batch_dim(
    server: triton_repo.LocalTritonServer, exports: dict[str, Exported]
) -> None:
    x = inputs(7, 1, 8, 12)
    y = triton_repo.Client(server.grpc_url, "up").infer(x[0])
    assert y.shape == (2, 16, 24)
    np.testing.assert_allclose(y, exports["seed0"](x)[0], rtol=0, atol=ATOL)


def test_torch_export_is_served_like_in_process_onnxruntime(
    server: triton_repo.LocalTritonServer, repo: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # export (torch) -> repository -> server -> infer == onnxruntime on the exported file
    export_onnx = getattr(pytest.importorskip("exporters.pytorch"), "export_onnx", None)
    if export_onnx is None:
        pytest.skip("exporters.pytorch.export_onnx is not available yet")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    path = pathlib.Path(export_onnx(module, tmp_path / "sub.onnx", input_shape=(1, 3, 16, 16)))
    options = triton_repo.ServingOptions(max_batch_size=4)
    triton_repo.write_repository(repo, "torch_sub", path, options=options)
    client = triton_repo.Client(server.grpc_url, "torch_sub").wait_ready(timeout=60)
    x = inputs(3, 4, 16, 16)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(client.infer(x), expected, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------- bad requests

F32, F64 = np.float32, np.float64
BAD_REQUESTS = {
    # case: (array, input name, Triton datatype, model, the server's message)
    "wrong dtype": (
        np.zeros((1, 3, 8, 8), F64), "x", "FP64", "up",
        "data-type is 'FP64', but model 'up' expects 'FP32'",
    ),
    "wrong rank": (
        np.zeros((3, 8, 8), F32), "x", "FP32", "up",
        r"unexpected shape for input 'x' for model 'up'. Expected \[-1,3,-1,-1\], got \[3,8,8\]",
    ),
    "wrong channels": (
        np.zeros((1, 4, 8, 8), F32), "x", "FP32", "up",
        r"unexpected shape for input 'x' for model 'up'. Expected \[-1,3,-1,-1\], got \[1,4,8,8\]",
    ),
    "batch over max": (
        np.zeros((9, 3, 4, 4), F32), "x", "FP32", "up",
        "inference request batch-size must be <= 8 for 'up'",
    ),
    "unknown model": (
        np.zeros((1, 3, 8, 8), F32), "x", "FP32", "nope",
        "unknown model: 'nope'|'nope' is not found",
    ),
    "unknown input": (
        np.zeros((1, 3, 8, 8), F32), "z", "FP32", "up",
        "unexpected inference input 'z' for model 'up'",
    ),
    "empty batch": (
        np.zeros((0, 3, 8, 8), F32), "x", "FP32", "up",
        "input byte size mismatch for input 'x' for model 'up'|empty batch",
    ),
    "empty image": (  # passes Triton's checks; the runner (model.py) answers with an error
        np.zeros((1, 3, 0, 8), F32), "x", "FP32", "up",
        r"input 'x' has shape \[1, 3, 0, 8\]: dim 2 is 0; expected at least 1",
    ),
    "runtime failure": (  # onnxruntime fails inside the runner: an error response, no crash
        np.zeros((1, 3, 3, 3), F32), "x", "FP32", "fragile",
        "onnxruntime failed: .*Reshape",
    ),
}  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_the_servers_error_and_the_next_request_succeeds(
    server: triton_repo.LocalTritonServer, exports: dict[str, Exported], protocol: str, case: str
) -> None:
    array, name, datatype, model, message = BAD_REQUESTS[case]
    module, client = raw_client(server, protocol)
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    with pytest.raises(module.InferenceServerException, match=message) as info:
        client.infer(model, [tensor])
    assert info.value.status() in ("400", "404", "StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND")
    # The server is unharmed: the next good request succeeds.
    x = inputs(11, 2, 8, 8)
    y = triton_repo.Client(url(server, protocol), "up", protocol=protocol).infer(x)
    np.testing.assert_allclose(y, exports["seed0"](x), rtol=0, atol=ATOL)


CLIENT_REFUSES = {
    "wrong dtype": (np.zeros((1, 3, 8, 8), F64), r"x\.dtype=float64; expected float32"),
    "wrong rank": (np.zeros((8, 8), F32), r"x has rank 2 \(shape \[8, 8\]\); expected 4"),
    "wrong channels": (
        np.zeros((1, 4, 8, 8), F32), r"x has channels=4 \(shape \[1, 4, 8, 8\]\); expected 3"
    ),
    "batch over max": (
        np.zeros((9, 3, 4, 4), F32), "x has batch 9; expected at most max_batch_size=8"
    ),
    "empty batch": (np.zeros((0, 3, 8, 8), F32), r"x has shape \[0, 3, 8, 8\], an empty batch"),
    "empty image": (np.zeros((1, 3, 0, 8), F32), r"x has shape \[1, 3, 0, 8\], an empty batch or image"),
    "not an array": ([[1.0]], "x is a list; expected a numpy array"),
}  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(CLIENT_REFUSES))
def test_client_refuses_bad_input_before_sending(
    server: triton_repo.LocalTritonServer, protocol: str, case: str
) -> None:
    array, message = CLIENT_REFUSES[case]
    client = triton_repo.Client(url(server, protocol), "up", protocol=protocol)
    with pytest.raises(triton_repo.InferenceInputError, match=message):
        client.infer(array)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_keeps_the_servers_message_for_an_unknown_model(
    server: triton_repo.LocalTritonServer, protocol: str
) -> None:
    client = triton_repo.Client(url(server, protocol), "nope", protocol=protocol)
    with pytest.raises(triton_repo.ModelNotFoundError, match="nope") as info:
        client.infer(np.zeros((1, 3, 4, 4), np.float32))
    assert isinstance(info.value, triton_repo.ServerError)
    assert "nope" in info.value.server_message and info.value.status
    assert not client.is_ready()
    with pytest.raises(triton_repo.ServerTimeoutError, match="model 'nope' was not ready"):
        client.wait_ready(timeout=0.5)


# ------------------------------------------------------------------------------------ load


@pytest.mark.parametrize(("protocol", "threads", "requests"), [("grpc", 16, 50), ("http", 8, 25)])
def test_concurrent_clients_all_get_correct_answers_and_server_statistics_agree(
    server: triton_repo.LocalTritonServer,
    exports: dict[str, Exported],
    protocol: str,
    threads: int,
    requests: int,
) -> None:
    xs = [inputs(seed, 1 + seed % 3, 16, 16) for seed in range(8)]
    expected = [exports["seed0"](x) for x in xs]
    client = triton_repo.Client(url(server, protocol), "load", protocol=protocol, timeout=60)

    def stats() -> tuple[int, int]:
        models = client.statistics()["model_stats"]
        success = sum(int(m["inference_stats"]["success"].get("count", 0)) for m in models)
        fail = sum(int(m["inference_stats"]["fail"].get("count", 0)) for m in models)
        return success, fail

    before = stats()

    def worker(worker_id: int) -> int:
        for i in range(requests):
            k = (worker_id + i) % len(xs)
            np.testing.assert_allclose(client.infer(xs[k]), expected[k], rtol=0, atol=ATOL)
        return requests

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        done = sum(f.result(timeout=150) for f in [pool.submit(worker, w) for w in range(threads)])
    elapsed = time.monotonic() - start
    assert done == threads * requests
    assert elapsed < 150, f"{done} requests took {elapsed:.1f}s"
    success, fail = stats()
    assert (success - before[0], fail - before[1]) == (threads * requests, 0)


# ----------------------------------------------------------------------- update while serving


def test_new_version_written_while_serving_replaces_the_old_one_without_a_failure(
    server: triton_repo.LocalTritonServer, repo: pathlib.Path, exports: dict[str, Exported]
) -> None:
    # Version 1 = seed0 weights, version 2 = seed1 weights: outputs tell them apart.
    x = inputs(5, 2, 12, 12)
    old, new = exports["seed0"](x), exports["seed1"](x)
    assert np.abs(old - new).max() > 100 * ATOL
    client = triton_repo.Client(server.grpc_url, "swap", timeout=30)
    stop = threading.Event()
    seen: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def worker(worker_id: int) -> None:
        answers = seen.setdefault(worker_id, [])
        try:
            while not stop.is_set():
                y = client.infer(x)
                if np.allclose(y, old, rtol=0, atol=ATOL):
                    answers.append("old")
                elif np.allclose(y, new, rtol=0, atol=ATOL):
                    answers.append("new")
                else:
                    answers.append("neither")
        except BaseException as exc:  # any failure fails the test
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in workers:
        t.start()
    try:
        wait_for(lambda: all(len(seen.get(w, [])) >= 5 for w in range(4)), 30, "first answers")
        version = triton_repo.write_repository(repo, "swap", exports["seed1"].path, options=SERVING)
        assert version.name == "2"
        wait_for(lambda: all("new" in seen[w][-3:] for w in range(4)) or errors, 60, "the new version")
    finally:
        stop.set()
        for t in workers:
            t.join(timeout=60)
    assert errors == []
    for answers in seen.values():
        assert "neither" not in answers
        first_new = answers.index("new")
        assert set(answers[:first_new]) == {"old"} and set(answers[first_new:]) == {"new"}, answers


def stage_broken_version(model_dir: pathlib.Path, version: int) -> None:
    """A version whose model.onnx is not ONNX, written atomically like the writer does."""
    staged = model_dir / ".staging-broken"
    staged.mkdir()
    (staged / "model.onnx").write_bytes(b"not an onnx model")
    shutil.copy(model_dir / "1" / "model.py", staged / "model.py")
    os.rename(staged, model_dir / str(version))


def test_broken_new_version_fails_to_load_and_the_old_one_keeps_serving(
    server: triton_repo.LocalTritonServer, repo: pathlib.Path, exports: dict[str, Exported]
) -> None:
    import tritonclient.http as http

    admin = http.InferenceServerClient(server.http_url)

    def state(version: str) -> dict:
        index = admin.get_model_repository_index(headers=server.admin_headers("http"))
        return next((m for m in index if m["name"] == "steady" and m.get("version") == version), {})

    client = triton_repo.Client(server.http_url, "steady", protocol="http")
    x = inputs(9, 3, 10, 14)
    stage_broken_version(repo / "steady", 2)
    wait_for(lambda: state("2").get("state") == "UNAVAILABLE", 60, "version 2 to fail")
    assert "INVALID_PROTOBUF" in state("2").get("reason", "") or state("2").get("reason")
    for _ in range(5):  # version 1 still answers
        np.testing.assert_allclose(client.infer(x), exports["seed0"](x), rtol=0, atol=ATOL)
    assert state("1").get("state") == "READY"
    # A good version 3 replaces both.
    triton_repo.write_repository(repo, "steady", exports["seed2"].path, options=SERVING)
    wait_for(lambda: state("3").get("state") == "READY", 60, "version 3")
    np.testing.assert_allclose(client.infer(x), exports["seed2"](x), rtol=0, atol=ATOL)


# ------------------------------------------------------------------------------------- CLI


def test_cli_infer_reads_a_png_and_writes_npy_and_png(
    server: triton_repo.LocalTritonServer, exports: dict[str, Exported], tmp_path: pathlib.Path
) -> None:
    from PIL import Image

    from triton_repo import cli_infer

    pixels = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    base = [
        "--url",
        server.http_url,
        "--model",
        "up",
        "--protocol",
        "http",
        "--input",
        str(tmp_path / "in.png"),
    ]
    assert cli_infer.main([*base, "--output", str(tmp_path / "out.npy")]) == 0
    x = (pixels.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]  # (1, 3, 10, 12)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), exports["seed0"](x), rtol=0, atol=ATOL)
    assert cli_infer.main([*base, "--output", str(tmp_path / "out.png")]) == 0
    assert Image.open(tmp_path / "out.png").size == (24, 20)
