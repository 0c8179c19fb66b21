"""The lean served path through the real local Triton: uint8 images in, a uint8 mask out,
and system shared memory (Client(shared_memory="system")), over HTTP and gRPC, several threads.

Parity: the served mask equals in-process onnxruntime on the same model file exactly (same
graph, same runtime: integer output); served float logits within 1e-5 (float32, batching may
change the summation order). Shared-memory regions are checked in /dev/shm (names, mode 0600)
and in the server's shared-memory status after close, after a killed client and across a
server restart.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import pixeldcn_core as pc
import triton_repo

pytestmark = [pytest.mark.server, pytest.mark.slow]

PROTOCOLS = ["grpc", "http"]
SHM = pathlib.Path("/dev/shm")
ROOT = pathlib.Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def lean_model() -> onnx.ModelProto:
    """uint8 NHWC [N, H, W, 3] -> PixelDCL to 21 classes -> ArgMax mask uint8 [N, 2H, 2W]."""
    float_model = pc.build_layer_model("pixel_dcl", pc.LayerSpec("pixel_dcl", 3, 21).random_weights(0))
    return pc.add_postprocessing(pc.add_preprocessing(float_model, mean=MEAN, std=STD), "mask")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, pathlib.Path]:
    folder = tmp_path_factory.mktemp("lean_models")
    paths = {"lean": folder / "lean.onnx", "plain": folder / "plain.onnx"}
    onnx.save(lean_model(), paths["lean"])
    onnx.save(pc.build_layer_model("pixel_dcl", pc.LayerSpec("pixel_dcl", 3, 2).random_weights(1)),
              paths["plain"])
    return paths


@pytest.fixture(scope="module")
def repo(tmp_path_factory, models) -> pathlib.Path:
    repo = tmp_path_factory.mktemp("lean_repo")
    opts = triton_repo.ServingOptions(max_batch_size=8)
    for name, path in models.items():
        triton_repo.write_repository(repo, name, path, options=opts)
    return repo


@pytest.fixture(scope="module")
def server(repo):
    config = triton_repo.ServerConfig(poll_secs=1, ready_timeout=120)
    with triton_repo.LocalTritonServer(repo, config) as server:
        yield server


def client(server, model: str, protocol: str, shm: bool) -> triton_repo.Client:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    return triton_repo.Client(url, model, protocol=protocol,
                              shared_memory="system" if shm else None,
                              headers=server.admin_headers(protocol))


def in_process(path: pathlib.Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def our_regions() -> set[str]:
    return {p.name for p in SHM.glob(f"pixeldcn-client-{os.getpid()}-*")}


def registered(server, protocol: str = "http") -> set[str]:
    import tritonclient.http as http

    c = http.InferenceServerClient(server.http_url)
    try:
        status = c.get_system_shared_memory_status(headers=server.admin_headers("http"))
    finally:
        c.close()
    return {r["name"] for r in status}


def images(seed: int, n: int, h: int = 8, w: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_config_declares_uint8_input_nhwc_and_uint8_mask_output(repo):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    for config in ("config.pbtxt", "configs/local.pbtxt"):
        cfg = text_format.Parse((repo / "lean" / config).read_text(), mc.ModelConfig())
        (inp,), (out,) = cfg.input, cfg.output
        assert (mc.DataType.Name(inp.data_type), list(inp.dims)) == ("TYPE_UINT8", [-1, -1, 3])
        assert (mc.DataType.Name(out.data_type), list(out.dims)) == ("TYPE_UINT8", [-1, -1])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("shm", [False, True], ids=["by-value", "shared-memory"])
def test_uint8_in_mask_out_served_equals_in_process_from_several_threads(
        server, models, protocol, shm):
    """mask_served == mask_in_process exactly, batches 1..3 (the regions grow), 4 threads."""
    c = client(server, "lean", protocol, shm)
    info = c.info()
    assert info.datatype == "UINT8" and info.shape[-1] == 3

    def work(worker: int) -> int:
        done = 0
        for i, n in enumerate((1, 1, 3, 2, 3)):
            x = images(100 * worker + i, n)
            y = c.infer(x)
            assert y.dtype == np.uint8 and y.shape == (n, 16, 12)
            np.testing.assert_array_equal(y, in_process(models["lean"], x))
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(work, range(4))) == 20
    if shm:
        names = our_regions()
        assert names and names <= registered(server)
        for name in names:
            mode = stat.S_IMODE((SHM / name).stat().st_mode)
            assert mode == 0o600, oct(mode)
    c.close()
    assert not our_regions()
    assert not {n for n in registered(server) if f"-{os.getpid()}-" in n}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_float_logits_through_shared_memory_equal_by_value(server, models, protocol):
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 7)).astype(np.float32)
    with client(server, "plain", protocol, True) as c:
        a, b = c.infer(x), c.infer(x)  # first by value (learns the shape), then both ways shm
        c2 = c.infer(x[0])  # one sample, no batch dim
    np.testing.assert_allclose(a, in_process(models["plain"], x), atol=1e-5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c2, a[0], atol=1e-5)
    assert not our_regions()


def test_bad_shared_memory_option_is_refused():
    with pytest.raises(triton_repo.ConfigError, match=r"shared_memory='posix'; expected None or one of"):
        triton_repo.Client("127.0.0.1:1", "m", shared_memory="posix")
    with pytest.raises(triton_repo.ConfigError, match=r"shared_memory='cuda' needs a GPU"):
        triton_repo.Client("127.0.0.1:1", "m", shared_memory="cuda")


CRASHER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import triton_repo
    url, protocol, key = sys.argv[1], sys.argv[2], sys.argv[3]
    prefix = "triton-grpc-protocol-" if protocol == "grpc" else ""
    c = triton_repo.Client(url, "lean", protocol=protocol, shared_memory="system",
                           headers={prefix + "pixeldcn-admin-key": key})
    x = np.zeros((1, 8, 6, 3), np.uint8)
    c.infer(x); c.infer(x)
    print(json.dumps(c._shm.names()), flush=True)
    time.sleep(600)
""")


def test_killed_client_regions_are_unlinked_and_the_next_client_unregisters_them(server, tmp_path):
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    key = server.admin_headers("http")["pixeldcn-admin-key"]
    proc = subprocess.Popen([sys.executable, str(script), server.grpc_url, "grpc", key],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        names = json.loads(proc.stdout.readline())
        assert len(names) == 2 and all((SHM / n).exists() for n in names)
        assert set(names) <= registered(server)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 20
    while any((SHM / n).exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any((SHM / n).exists() for n in names), "the resource tracker left regions behind"
    with client(server, "lean", "http", True) as c:  # sweeps registrations of dead clients
        c.infer(images(0, 1))
        assert not set(names) & registered(server)
    assert not our_regions()


def _crash_group(server, script: pathlib.Path, attempts: int = 5) -> list[str]:
    """Run a shared-memory client in its own process group (its resource tracker with it), kill
    the whole group with SIGKILL; returns the names of its regions, still in /dev/shm.

    Tried up to ``attempts`` times: any client or server started meanwhile in another process
    (a parallel test worker shares /dev/shm) reaps the dead group's regions, which is the
    behaviour under test, but leaves nothing for this test's own client or server to reap."""
    key = server.admin_headers("http")["pixeldcn-admin-key"]
    for _ in range(attempts):
        proc = subprocess.Popen([sys.executable, str(script), server.grpc_url, "grpc", key],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
        try:
            names = json.loads(proc.stdout.readline())
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        time.sleep(1.0)  # what a tracker would have unlinked is gone by now; nothing is left to do it
        if names and all((SHM / n).exists() for n in names):
            return names
    raise AssertionError(f"expected the regions to be left behind; {attempts} crashes, none left them")


def test_regions_of_a_killed_process_group_are_reaped_by_the_next_client_and_server(repo, server, tmp_path):
    """kill -9 of a client's process group (resource tracker included) leaves its regions; the
    next shared-memory client removes them, and so does the next server start."""
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    names = _crash_group(server, script)
    with client(server, "lean", "http", True) as c:  # a new shared-memory client
        assert not any((SHM / n).exists() for n in names)
        c.infer(images(0, 1))  # and the server's registrations of them are dropped
        assert not set(names) & registered(server)
    names = _crash_group(server, script)
    with triton_repo.LocalTritonServer(repo, triton_repo.ServerConfig(poll_secs=1, ready_timeout=120)):
        assert not any((SHM / n).exists() for n in names)
    assert not our_regions()


def test_regions_are_released_on_error_and_re_registered_after_a_server_restart(repo, tmp_path):
    config = triton_repo.ServerConfig(poll_secs=1, ready_timeout=120)
    with triton_repo.LocalTritonServer(repo, config) as first:
        ports = {"http_port": first.http_port, "grpc_port": first.grpc_port}
        c = triton_repo.Client(first.grpc_url, "lean", protocol="grpc", shared_memory="system",
                               headers=first.admin_headers("grpc"), timeout=10)
        x = images(1, 2)
        expected = c.infer(x)
        c.infer(x)
        assert len(our_regions()) == 2
    with pytest.raises(triton_repo.TritonRepoError):
        c.infer(x)  # the server is gone: the request fails and its regions are released
    assert not our_regions()
    with triton_repo.LocalTritonServer(
        repo, triton_repo.ServerConfig(poll_secs=1, ready_timeout=120, **ports)
    ) as second:
        c.headers = second.admin_headers("grpc")
        c.wait_ready(60)
        np.testing.assert_array_equal(c.infer(x), expected)
        np.testing.assert_array_equal(c.infer(x), expected)  # through both regions again
        assert len(our_regions()) == 2 and our_regions() <= registered(second)
        c.close()
        assert not our_regions() and not registered(second)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_float_images_sent_to_a_uint8_model_are_refused_before_sending(server, protocol):
    with client(server, "lean", protocol, True) as c:
        with pytest.raises(triton_repo.InferenceInputError,
                           match=r"x.dtype=float32; expected uint8 .*astype\(np.uint8\)"):
            c.infer(np.zeros((1, 8, 6, 3), np.float32))
        with pytest.raises(triton_repo.InferenceInputError, match=r"x has dim 3=4 .* expected 3"):
            c.infer(np.zeros((1, 8, 6, 4), np.uint8))  # NHWC with 4 channels
        assert c.infer(images(9, 1)).shape == (1, 16, 12)  # the client still works
    assert not our_regions()


def test_config_declares_int32_for_a_mask_of_more_than_256_classes(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    weights = pc.LayerSpec("subpixel_conv", 3, 300).random_weights(0)
    model = pc.add_postprocessing(pc.build_layer_model("subpixel_conv", weights), "mask")
    onnx.save(model, tmp_path / "m.onnx")
    triton_repo.write_repository(tmp_path / "repo", "big", tmp_path / "m.onnx",
                                 options=triton_repo.ServingOptions(max_batch_size=2))
    cfg = text_format.Parse((tmp_path / "repo" / "big" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert (mc.DataType.Name(cfg.output[0].data_type), list(cfg.output[0].dims)) == ("TYPE_INT32", [-1, -1])
