"""Shared by the tests against a real tritonserver (``tests/test_triton_server*.py``): the exported
models and their in-process onnxruntime reference, the repository those files serve, seeded
inputs, and a bounded wait.

Parity tolerance: served outputs equal in-process onnxruntime within ATOL = 1e-5 (float32, same
graph, same runtime; only the batching of requests may change the summation order).
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import triton_repo

from .scale_helpers import layer_model

ATOL = 1e-5  # served vs in-process onnxruntime, float32
SERVING = triton_repo.ServingOptions(max_batch_size=8)


class Exported:
    """An exported model file and its in-process onnxruntime session (the reference)."""

    def __init__(self, folder: pathlib.Path, name: str, seed: int):
        self.path = folder / f"{name}.onnx"
        onnx.save(layer_model(seed), self.path)
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["y"], {"x": x})[0]


def make_exports(folder: pathlib.Path) -> dict[str, Exported]:
    """Four seeded exports in ``folder`` (the ``exports`` fixture): ``"seed0"`` ... ``"seed3"``."""
    return {f"seed{seed}": Exported(folder, f"seed{seed}", seed) for seed in range(4)}


def fragile_model() -> onnx.ModelProto:
    """y = Reshape(x, [0, 3, 2, -1]): fails at run time when H * W is odd."""
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([0, 3, 2, -1], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "fragile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 2, "half"])],
        [shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def make_repo(tmp_path_factory: pytest.TempPathFactory, exports: dict[str, Exported]) -> pathlib.Path:
    """The served repository (the ``repo`` fixture): "up", "load", "swap", "steady" (seed 0) and
    "fragile" (:func:`fragile_model`)."""
    repo = tmp_path_factory.mktemp("model_repository")
    for name in ("up", "load", "swap", "steady"):
        triton_repo.write_repository(repo, name, exports["seed0"].path, options=SERVING)
    fragile = tmp_path_factory.mktemp("fragile") / "fragile.onnx"
    onnx.save(fragile_model(), fragile)
    triton_repo.write_repository(repo, "fragile", fragile, options=SERVING)
    return repo


def inputs(seed: int, batch: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, channels, height, width)).astype(np.float32)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
