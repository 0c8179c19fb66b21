"""Triton Python-backend runner for a pixeldcn ONNX model (the local flavour).

This file is copied verbatim as ``<name>/<version>/model.py`` by ``triton_repo.write_repository``.
It runs inside Triton's Python-backend stub, whose interpreter is the ``python3`` first on the
server's PATH, so it imports only numpy, onnxruntime and Triton's ``triton_python_backend_utils``.

``initialize`` opens the version's ``model.onnx`` in one ONNX Runtime CPU session and checks that
it has the tensors the config names. ``execute`` receives the requests Triton's dynamic batcher
grouped, checks each request's declared shapes, dtypes and byte size against the config and its
``max_request_bytes`` parameter *before* touching the data (a refused request is answered with
INVALID_ARG naming the limit, and its tensors are dropped at once), concatenates the accepted ones
along dim 0 into one session run (requests whose per-sample shapes differ run in separate groups),
splits the outputs back per request, and answers a bad request with an error response instead of
failing the whole batch.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside the stub (tests, linters): only the pure helpers work
    pb_utils = None

MODEL_FILENAME = "model.onnx"
#: Config parameter holding the largest request (sum of its input bytes) the runner accepts.
MAX_REQUEST_BYTES_KEY = "max_request_bytes"


def check_declared(
    name: str,
    shape: list[int] | tuple[int, ...],
    itemsize: int,
    dims: list[int],
    max_batch_size: int,
) -> int:
    """Check one input's declared shape against the config; return its size in bytes.

    Python integers: a shape whose byte size overflows int64 is measured exactly, not wrapped.

    Args:
        name: the input's name, for the message.
        shape: the shape the request declares, batch dim included when the model batches.
        itemsize: bytes per element of the config's data type.
        dims: the config's dims (``-1`` = any), without the batch dim when ``max_batch_size > 0``.
        max_batch_size: the config's ``max_batch_size``.

    Raises:
        ValueError: naming the input, the shape and what the config allows.
    """
    shape = [int(d) for d in shape]
    expected = ([-1] if max_batch_size > 0 else []) + [int(d) for d in dims]
    if len(shape) != len(expected):
        raise ValueError(
            f"input {name!r} has shape {shape} (rank {len(shape)}); expected rank {len(expected)} "
            f"(dims {expected}, -1 = any)"
        )
    for axis, (got, want) in enumerate(zip(shape, expected, strict=True)):
        if got < 1 or (want != -1 and got != want):
            raise ValueError(
                f"input {name!r} has shape {shape}: dim {axis} is {got}; expected "
                + (f"{want}" if want != -1 else "at least 1")
                + f" (dims {expected}, -1 = any)"
            )
    if max_batch_size > 0 and shape[0] > max_batch_size:
        raise ValueError(
            f"input {name!r} has batch {shape[0]}; expected at most max_batch_size={max_batch_size}"
        )
    count = 1
    for d in shape:
        count *= d
    return count * itemsize


def check_request_bytes(sizes: dict[str, int], limit: int | None) -> None:
    """Refuse a request whose inputs hold more than ``limit`` bytes in total."""
    total = sum(sizes.values())
    if limit is not None and total > limit:
        shapes = ", ".join(f"{n}: {b} bytes" for n, b in sizes.items())
        raise ValueError(
            f"request of {total} bytes ({shapes}) exceeds max_request_bytes={limit}; send smaller "
            "images or batches (the limit is ServingOptions.max_request_bytes)"
        )


def group_by_sample_shape(arrays: list[dict[str, np.ndarray]]) -> list[list[int]]:
    """Indices of requests that can share one run: same dtype and per-sample shape per input.

    Args:
        arrays: one ``{input name: array [N_i, ...]}`` per request.

    Returns:
        Groups of request indices, in order of first appearance.
    """
    groups: dict[tuple, list[int]] = {}
    for index, inputs in enumerate(arrays):
        key = tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items()))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def run_batched(
    session_run, arrays: list[dict[str, np.ndarray]], output_names: list[str]
) -> list[dict[str, np.ndarray]]:
    """Concatenate same-shaped requests along dim 0, run once, and split the outputs back.

    Args:
        session_run: ``(output_names, {name: array}) -> [array]``, e.g. ``InferenceSession.run``.
        arrays: one ``{input name: array [N_i, ...]}`` per request, all with the same per-sample
            shapes and dtypes.
        output_names: outputs to compute.

    Returns:
        One ``{output name: array [N_i, ...]}`` per request.
    """
    if len(arrays) == 1:  # nothing to concatenate or split
        return [dict(zip(output_names, session_run(output_names, arrays[0]), strict=True))]
    sizes = [next(iter(inputs.values())).shape[0] for inputs in arrays]
    feed = {
        name: np.concatenate([inputs[name] for inputs in arrays], axis=0)  # (sum N_i, ...)
        for name in arrays[0]
    }
    outputs = session_run(output_names, feed)
    for name, out in zip(output_names, outputs, strict=True):
        if out.ndim == 0 or out.shape[0] != sum(sizes):
            raise RuntimeError(
                f"output {name!r} has shape {list(out.shape)} for {sum(sizes)} input samples; "
                "the model does not keep dim 0 as the batch dim"
            )
    bounds = np.cumsum(sizes)[:-1]
    split = [np.split(out, bounds, axis=0) for out in outputs]  # [output][request]
    return [{name: split[k][i] for k, name in enumerate(output_names)} for i in range(len(arrays))]


def _thread_count(config: dict) -> int:
    value = config.get("parameters", {}).get("intra_op_thread_count", {}).get("string_value")
    if value:
        return max(1, int(value))
    instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // instances)


def _declared_dtype(tensor) -> np.dtype | None:
    """The numpy dtype a request tensor declares, without reading its data (None if unknown)."""
    if pb_utils is None or not hasattr(tensor, "triton_dtype"):
        return None
    try:
        return np.dtype(pb_utils.triton_to_numpy_type(tensor.triton_dtype()))
    except Exception:
        return None


class TritonPythonModel:
    """One model instance: one ONNX Runtime session."""

    def initialize(self, args: dict) -> None:
        self.config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], MODEL_FILENAME)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _thread_count(self.config)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Do not burn idle cores between requests; the server shares the machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.max_batch_size = int(self.config.get("max_batch_size", 0))
        self.input_names = [t["name"] for t in self.config["input"]]
        self.output_names = [t["name"] for t in self.config["output"]]
        self.input_dtypes = {
            t["name"]: np.dtype(pb_utils.triton_string_to_numpy(t["data_type"])) for t in self.config["input"]
        }
        self.input_dims = {t["name"]: [int(d) for d in t["dims"]] for t in self.config["input"]}
        limit = self.config.get("parameters", {}).get(MAX_REQUEST_BYTES_KEY, {}).get("string_value")
        self.max_request_bytes = int(limit) if limit else None
        model_inputs = sorted(i.name for i in self.session.get_inputs())
        model_outputs = {o.name for o in self.session.get_outputs()}
        if model_inputs != sorted(self.input_names) or not set(self.output_names) <= model_outputs:
            raise pb_utils.TritonModelException(
                f"{path}: model inputs {model_inputs} and outputs {sorted(model_outputs)} do not "
                f"match the config's inputs {sorted(self.input_names)} and outputs "
                f"{sorted(self.output_names)}"
            )

    def _error(self, message: str):
        code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
        error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def _read(self, request) -> dict[str, np.ndarray]:
        """The request's inputs as arrays; raises ValueError with a message for the client.

        Shapes, dtypes and the byte size are checked on what the request declares before any
        input is turned into an array.
        """
        tensors = {}
        sizes = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} is missing; expected inputs {self.input_names}")
            dtype = self.input_dtypes[name]
            declared = _declared_dtype(tensor)
            if declared is not None and declared != dtype:
                raise ValueError(f"input {name!r} has dtype {declared}; expected {dtype}")
            sizes[name] = check_declared(
                name, tensor.shape(), dtype.itemsize, self.input_dims[name], self.max_batch_size
            )
            tensors[name] = tensor
        check_request_bytes(sizes, self.max_request_bytes)
        arrays = {}
        for name, tensor in tensors.items():
            array = tensor.as_numpy()
            if array.dtype != self.input_dtypes[name]:
                raise ValueError(
                    f"input {name!r} has dtype {array.dtype}; expected {self.input_dtypes[name]}"
                )
            arrays[name] = array
        if self.max_batch_size > 0 and len({a.shape[0] for a in arrays.values()}) > 1:
            shapes = {n: list(a.shape) for n, a in arrays.items()}
            raise ValueError(f"inputs have different batch sizes: {shapes}")
        return arrays

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        valid: list[int] = []
        arrays: list[dict[str, np.ndarray]] = []
        for index, request in enumerate(requests):
            try:
                arrays.append(self._read(request))
                valid.append(index)
            except ValueError as exc:
                responses[index] = self._error(str(exc))
        if self.max_batch_size > 0:
            groups = group_by_sample_shape(arrays)
        else:
            groups = [[i] for i in range(len(arrays))]
        for group in groups:
            try:
                results = run_batched(self.session.run, [arrays[i] for i in group], self.output_names)
            except Exception as exc:  # an ONNX Runtime failure answers these requests only
                for i in group:
                    responses[valid[i]] = self._error(f"onnxruntime failed: {exc}")
                continue
            for i, result in zip(group, results, strict=True):
                responses[valid[i]] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(name, np.ascontiguousarray(result[name]))
                        for name in self.output_names
                    ]
                )
        return responses

    def finalize(self) -> None:
        self.session = None
