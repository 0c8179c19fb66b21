"""Trained weights in and out, safely: safetensors, or torch files read with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pixeldcn_core
from pixeldcn_core.io import write_bytes_atomic

from ._errors import CheckpointError

__all__ = ["load_weights", "read_checkpoint", "save_weights"]

_SAFETENSORS = (".safetensors",)
_TORCH = (".pt", ".pth", ".bin", ".ckpt", ".tar")
#: Nested keys under which training scripts commonly keep the state dict.
_NESTED = ("state_dict", "model_state_dict", "model")
#: Buffers a checkpoint may omit: they do not change the model's outputs.
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)


def _refusal_reason(err: Exception) -> str:
    """What torch's weights-only unpickler refused (the global it met), without torch's advice
    to turn the weights-only mode off (which would run the code the file holds)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        low = line.lower()
        if "global" in low and "weights_only" not in low and "re-running" not in low:
            return line
    return f"{type(err).__name__}: the pickle holds objects other than tensors and plain containers"


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` dict from ``.safetensors`` or a torch file.

    Torch files are read with ``torch.load(path, weights_only=True)`` passed explicitly, which no
    environment variable can turn off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` only changes the
    default): a pickle that would run code is refused, never executed.

    Raises:
        CheckpointError: missing file, unknown extension, unsafe or unreadable content, or
            content that is not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in _SAFETENSORS:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path.name}: not a readable safetensors file: {err}") from err
    elif suffix in _TORCH:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            first = _refusal_reason(err)
            raise CheckpointError(
                f"{path.name}: refused: the file holds more than tensors and plain containers "
                f"(weights_only=True): {first}"
            ) from None
        except Exception as err:  # junk bytes: RuntimeError, EOFError, KeyError, BadZipFile...
            detail = " ".join(str(err).split())[:200] or type(err).__name__
            raise CheckpointError(f"{path.name}: not a readable torch checkpoint: {detail}") from None
    else:
        raise CheckpointError(
            f"checkpoint extension {suffix or '(none)'!r} is not supported; expected one of "
            f"{', '.join(_SAFETENSORS + _TORCH)}"
        )
    if isinstance(data, Mapping):
        for key in _NESTED:
            inner = data.get(key)
            if isinstance(inner, Mapping) and inner and all(
                isinstance(v, torch.Tensor) for v in inner.values()
            ):
                data = inner
                break
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path.name}: expected a dict of tensors, got {type(data).__name__}")
    not_tensors = sorted(str(k) for k, v in data.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"{path.name}: entries that are not tensors: {not_tensors[:20]}")
    return {str(k): v for k, v in data.items()}


def tensor_mismatches(
    data: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str]]:
    """For the keys in both, sorted: ``(mis-shaped or mis-typed, non-finite)``; a mismatch reads
    ``"key: got (3, 4), expected (4, 4)"`` or ``"key: got dtype torch.int64, expected torch.float32"``."""
    misshaped = []
    nonfinite = []
    for k in sorted(set(expected) & set(data)):
        got, want = data[k], expected[k]
        if tuple(got.shape) != tuple(want.shape):
            misshaped.append(f"{k}: got {tuple(got.shape)}, expected {tuple(want.shape)}")
        elif want.is_floating_point() != got.is_floating_point():
            misshaped.append(f"{k}: got dtype {got.dtype}, expected {want.dtype}")
        elif got.is_floating_point() and not bool(torch.isfinite(got).all()):
            nonfinite.append(k)
    return misshaped, nonfinite


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a checkpoint into ``model``, all or nothing.

    Every key is checked before anything is written: missing, unexpected and mis-shaped entries
    (and NaN / Inf in float tensors) are reported together in one :class:`CheckpointError`, and
    the model is left untouched. A ``module.`` prefix (DataParallel) is stripped; BatchNorm's
    ``num_batches_tracked`` may be absent.

    Returns:
        ``model``, for chaining.

    Raises:
        CheckpointError: (a :class:`pixeldcn_core.WeightError`) unsafe file or mismatching keys.
    """
    data = read_checkpoint(path)
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    expected = model.state_dict()
    missing = sorted(
        k for k in expected if k not in data and not k.endswith(_OPTIONAL_SUFFIXES)
    )
    unexpected = sorted(k for k in data if k not in expected)
    misshaped, nonfinite = tensor_mismatches(data, expected)
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if misshaped:
        problems.append("mis-shaped " + "; ".join(misshaped))
    if nonfinite:
        problems.append(f"NaN/Inf in {nonfinite}")
    if problems:
        raise CheckpointError(
            f"{Path(path).name} does not fit {type(model).__name__} (nothing was loaded): "
            + " | ".join(problems)
        )
    full = {k: data.get(k, expected[k]) for k in expected}
    model.load_state_dict(full, strict=True)
    return model


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model.state_dict()`` as ``.safetensors``, atomically (temp file + rename).

    Tensors are copied to contiguous CPU tensors first, so shared or strided parameters save.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"save_weights writes .safetensors, got {path.name!r}")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"format": "pt", "producer": f"pixeldcn {pixeldcn_core.__version__}"})
    return write_bytes_atomic(path, blob)
