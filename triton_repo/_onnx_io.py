"""Read what the repository needs from an ONNX model: its tensors and its external data.

The model's signature (names, data types, dims) drives the Triton config, so that the config can
never disagree with the model. External data (``model.onnx.data`` beside the model, as torch's
dynamo exporter writes it) is checked before anything is copied: a location must be a plain
relative path inside the model's folder, the file must exist and hold the bytes the model points to.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import posixpath
from collections.abc import Iterator

import onnx
from onnx import external_data_helper

from ._errors import RepositoryError

__all__ = [
    "MAX_INLINE_BYTES",
    "LoadedModel",
    "ModelSignature",
    "TensorSpec",
    "load_model",
]

#: Protobuf cannot serialise a message of 2 GiB or more; keep a margin for the graph itself.
MAX_INLINE_BYTES = 2**31 - 64 * 2**20

# ONNX TensorProto element type -> Triton data type (without the config's "TYPE_" prefix).
_ONNX_TO_TRITON: dict[int, str] = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT16: "INT16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.UINT16: "UINT16",
    onnx.TensorProto.UINT32: "UINT32",
    onnx.TensorProto.UINT64: "UINT64",
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.STRING: "BYTES",
}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the model declares it.

    Attributes:
        name: tensor name, e.g. ``"x"``.
        dtype: Triton data type without prefix, e.g. ``"FP32"``.
        shape: full ONNX shape, batch dim included; ``-1`` where the dim is dynamic.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    """The graph inputs (initializers excluded) and outputs of a model, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready to be written into a version folder.

    Attributes:
        proto: the model; tensors with external data still point to their files unless inlined.
        signature: its inputs and outputs.
        source: the ``.onnx`` file it was read from.
        data_files: external data files (relative POSIX paths, validated) that must be copied
            beside ``model.onnx``; empty when the model is, or has been made, self-contained.
    """

    proto: onnx.ModelProto
    signature: ModelSignature
    source: pathlib.Path
    data_files: tuple[str, ...]


def _tensor_spec(value: onnx.ValueInfoProto, role: str) -> TensorSpec:
    if not value.type.HasField("tensor_type"):
        raise RepositoryError(
            f"{role} {value.name!r} is not a tensor (got type {value.type.WhichOneof('value')!r}); "
            "Triton serves tensors only"
        )
    tensor_type = value.type.tensor_type
    dtype = _ONNX_TO_TRITON.get(tensor_type.elem_type)
    if dtype is None:
        type_name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise RepositoryError(
            f"{role} {value.name!r} has element type {type_name}, which Triton cannot serve; "
            f"expected one of {sorted(set(_ONNX_TO_TRITON.values()))}"
        )
    if not tensor_type.HasField("shape"):
        raise RepositoryError(f"{role} {value.name!r} has no shape; export the model with a known rank")
    shape = tuple(
        dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else -1
        for dim in tensor_type.shape.dim
    )
    return TensorSpec(name=value.name, dtype=dtype, shape=shape)


def read_signature(model: onnx.ModelProto) -> ModelSignature:
    """The model's graph inputs (initializers excluded) and outputs."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_tensor_spec(v, "input") for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_tensor_spec(v, "output") for v in model.graph.output)
    if not inputs or not outputs:
        raise RepositoryError(
            f"the model has {len(inputs)} input(s) and {len(outputs)} output(s); "
            "expected at least one of each"
        )
    return ModelSignature(inputs=inputs, outputs=outputs)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def check_data_location(location: str, tensor_name: str) -> str:
    """Return ``location`` as a normalised relative POSIX path, or raise.

    A location must stay inside the model's folder: not empty, not absolute, no drive, no ``..``.
    """
    if not location:
        raise RepositoryError(f"tensor {tensor_name!r} has external data with an empty location")
    if "\\" in location or "\x00" in location:
        raise RepositoryError(
            f"tensor {tensor_name!r} has external data location {location!r}; "
            "expected a relative POSIX path without backslashes"
        )
    if posixpath.isabs(location) or (len(location) > 1 and location[1] == ":"):
        raise RepositoryError(
            f"tensor {tensor_name!r} has external data location {location!r}, an absolute path; "
            "expected a path relative to the model's folder"
        )
    parts = [p for p in location.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise RepositoryError(
            f"tensor {tensor_name!r} has external data location {location!r}, which leaves the "
            "model's folder ('..'); expected a path inside it"
        )
    return "/".join(parts)


def _check_external_data(model: onnx.ModelProto, base_dir: pathlib.Path) -> dict[str, int]:
    """Validate every external tensor; return ``{relative location: bytes referenced}``."""
    base_real = base_dir.resolve()
    referenced: dict[str, int] = {}
    for tensor in _all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        try:
            info = external_data_helper.ExternalDataInfo(tensor)
        except ValueError as exc:
            raise RepositoryError(f"tensor {tensor.name!r}: {exc}") from exc
        location = check_data_location(info.location, tensor.name)
        path = base_dir / location
        if not path.resolve().is_relative_to(base_real):
            raise RepositoryError(
                f"tensor {tensor.name!r} has external data location {location!r}, which resolves "
                "outside the model's folder (symbolic link); expected a file inside it"
            )
        if not path.is_file():
            raise RepositoryError(
                f"tensor {tensor.name!r} has its data in {location!r}, which does not exist beside "
                f"{base_dir.name}/; copy the data file with the model"
            )
        size = path.stat().st_size
        offset = info.offset or 0
        length = info.length if info.length is not None else size - offset
        if offset + length > size:
            raise RepositoryError(
                f"tensor {tensor.name!r} reads bytes [{offset}, {offset + length}) of {location!r}, "
                f"which has {size} bytes; the data file is truncated or belongs to another model"
            )
        referenced[location] = referenced.get(location, 0) + length
    return referenced


def load_model(path: str | os.PathLike[str], *, external_data: str = "auto") -> LoadedModel:
    """Read, check and describe the ONNX model at ``path``.

    Args:
        path: the ``.onnx`` file.
        external_data: ``"auto"`` inlines external data when the whole model stays under
            :data:`MAX_INLINE_BYTES` and keeps the data files otherwise; ``"inline"`` always
            inlines (fails over the limit); ``"keep"`` always keeps the data files.

    Raises:
        RepositoryError: the file is missing or not a valid ONNX model, a tensor type cannot be
            served, or external data is missing, truncated or outside the model's folder.
    """
    if external_data not in ("auto", "inline", "keep"):
        raise RepositoryError(f"external_data={external_data!r}; expected one of 'auto', 'inline', 'keep'")
    source = pathlib.Path(path)
    if not source.is_file():
        raise RepositoryError(f"onnx_path {str(source)!r} is not a file")
    try:
        proto = onnx.load(str(source), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning...; keep the cause
        raise RepositoryError(f"onnx_path {source.name!r} is not a valid ONNX model: {exc}") from exc
    referenced = _check_external_data(proto, source.parent)
    total = proto.ByteSize() + sum(referenced.values())
    inline = bool(referenced) and (
        external_data == "inline" or (external_data == "auto" and total < MAX_INLINE_BYTES)
    )
    if inline:
        if total >= MAX_INLINE_BYTES:
            raise RepositoryError(
                f"external_data='inline' but the model needs {total} bytes inline; protobuf "
                f"allows less than {MAX_INLINE_BYTES}; use external_data='keep'"
            )
        external_data_helper.load_external_data_for_model(proto, str(source.parent))
        referenced = {}
    try:
        if referenced:  # the checker reads the data files through the path
            onnx.checker.check_model(str(source))
        else:
            onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise RepositoryError(f"onnx_path {source.name!r} fails the ONNX checker: {exc}") from exc
    return LoadedModel(
        proto=proto,
        signature=read_signature(proto),
        source=source,
        data_files=tuple(sorted(referenced)),
    )
