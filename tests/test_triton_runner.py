"""The Python-backend runner of the local flavour (``model.py``), without a server: same-shaped
requests batched into one onnxruntime run and split back, grouping by dtype and sample shape.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnxruntime as ort
import pytest

from triton_repo import _backend_model

# ------------------------------------------------------------- the Python-backend runner


def double(output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A stand-in for InferenceSession.run: y = 2 x, recording the batch sizes it ran."""
    double.batches.append(feed["x"].shape[0])
    return [2 * feed["x"]]


double.batches = []  # type: ignore[attr-defined]


def test_runner_concatenates_same_shaped_requests_into_one_run_and_splits_back() -> None:
    rng = np.random.default_rng(0)
    requests = [{"x": rng.standard_normal((n, 3, 4, 4)).astype(np.float32)} for n in (1, 3, 2)]
    double.batches.clear()
    results = _backend_model.run_batched(double, requests, ["y"])
    assert double.batches == [6]  # one run for 1 + 3 + 2 samples
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], 2 * request["x"])


def test_runner_groups_requests_by_dtype_and_sample_shape() -> None:
    f32 = np.float32
    requests = [
        {"x": np.zeros((1, 3, 4, 4), f32)},
        {"x": np.zeros((2, 3, 8, 8), f32)},
        {"x": np.zeros((1, 3, 4, 4), f32)},
        {"x": np.zeros((1, 3, 4, 4), np.float16)},
    ]
    assert _backend_model.group_by_sample_shape(requests) == [[0, 2], [1], [3]]


def test_runner_raise_error_when_the_model_does_not_keep_the_batch_dim() -> None:
    def collapse(output_names, feed):
        return [feed["x"].sum(axis=0, keepdims=True)]

    requests = [{"x": np.ones((1, 3, 2, 2), np.float32)}, {"x": np.ones((2, 3, 2, 2), np.float32)}]
    with pytest.raises(RuntimeError, match=r"output 'y' has shape \[1, 3, 2, 2\] for 3 input samples"):
        _backend_model.run_batched(collapse, requests, ["y"])


def test_runner_batched_onnxruntime_run_equals_one_run_per_request(onnx_path: pathlib.Path) -> None:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    requests = [{"x": rng.standard_normal((n, 3, 5, 7)).astype(np.float32)} for n in (2, 1, 4)]
    results = _backend_model.run_batched(session.run, requests, ["y"])
    for request, result in zip(requests, results, strict=True):
        expected = session.run(["y"], request)[0]
        np.testing.assert_allclose(result["y"], expected, rtol=0, atol=1e-6)  # float32 reassociation
