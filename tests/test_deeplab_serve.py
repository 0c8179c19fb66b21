"""DeepLab-ResNet end to end: export -> Triton repository -> local tritonserver -> client.

A ResNet-50 DeepLab (all 16 Bottleneck blocks, dilated, ASPP, three PixelDCL decoder blocks) at
reduced width (stem 8 channels instead of 64) so that export and serving take seconds, and a
one-block-per-stage variant with each other x2 up-sampling kind. Served outputs must equal
in-process onnxruntime on the exported file within ATOL (float32, same graph; only request
batching may change the summation order) and PyTorch within export_onnx's float32 tolerances.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnxruntime as ort
import pytest
import torch

import pixeldcn_core as pc
import triton_repo
from exporters.pytorch import DeepLabResNet, export_onnx

pytestmark = [pytest.mark.server, pytest.mark.slow]

ATOL = 1e-5  # served vs in-process onnxruntime, float32
TORCH_ATOL, TORCH_RTOL = 1e-5, 1e-3  # onnxruntime vs PyTorch (export_onnx's float32 defaults)
NARROW = {"base_width": 8, "aspp_channels": 16, "decoder_channels": (16, 8)}


def x2_kinds() -> list[str]:
    return [k for k in pc.layer_kinds() if getattr(pc.get_kind(k), "scale", 2) == 2]


def build(kind: str, seed: int, **kw) -> DeepLabResNet:
    torch.manual_seed(seed)
    return DeepLabResNet(3, 4, up=kind, **{**NARROW, **kw}).eval()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("deeplab")
    repo = folder / "repo"
    models: dict[str, tuple[DeepLabResNet, pathlib.Path]] = {}
    specs = {"deeplab50_pixel_dcl": ("pixel_dcl", {"depth": 50})}
    for kind in x2_kinds():
        if kind != "pixel_dcl":
            specs[f"deeplab_tiny_{kind}"] = (kind, {"blocks": (1, 1, 1, 1)})
    options = triton_repo.ServingOptions(max_batch_size=4)
    for i, (name, (kind, kw)) in enumerate(specs.items()):
        model = build(kind, seed=i, **kw)
        path = export_onnx(model, folder / f"{name}.onnx", (1, 3, 64, 64))
        triton_repo.write_repository(repo, name, path, options=options)
        models[name] = (model, path)
    config = triton_repo.ServerConfig(ready_timeout=180, log_path=folder / "tritonserver.log")
    with triton_repo.LocalTritonServer(repo, config) as server:
        try:
            yield server, models
        finally:
            print(server.log_tail())  # shown by pytest when a test failed


def test_resnet50_deeplab_is_served_like_onnxruntime_and_pytorch(served) -> None:
    server, models = served
    model, path = models["deeplab50_pixel_dcl"]
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    for url, protocol in ((server.grpc_url, "grpc"), (server.http_url, "http")):
        client = triton_repo.Client(url, "deeplab50_pixel_dcl", protocol=protocol)
        client.wait_ready(timeout=120)
        y = client.infer(x)
        assert y.shape == (2, 4, 64, 96)
        np.testing.assert_allclose(y, expected, rtol=0, atol=ATOL)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(expected, ref, rtol=TORCH_RTOL, atol=TORCH_ATOL)


@pytest.mark.parametrize("kind", [k for k in x2_kinds() if k != "pixel_dcl"])
def test_every_other_x2_kind_is_served(served, kind: str) -> None:
    server, models = served
    name = f"deeplab_tiny_{kind}"
    model, path = models[name]
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 40)).astype(np.float32)
    y = triton_repo.Client(server.grpc_url, name).wait_ready(timeout=120).infer(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(y, session.run(None, {"x": x})[0], rtol=0, atol=ATOL)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=TORCH_RTOL, atol=TORCH_ATOL)
