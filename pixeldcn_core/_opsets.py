"""The ONNX opsets the builder writes, and the IR version each needs."""

from __future__ import annotations

import numpy as np

from ._errors import SpecError

__all__ = ["DEFAULT_OPSET", "SUPPORTED_OPSETS", "check_opset", "ir_version_for"]

#: The opset every model is written with unless told otherwise (or its target takes older ones).
DEFAULT_OPSET = 18
#: Opsets the builder can write (the ops used have the same semantics across these).
SUPPORTED_OPSETS = range(17, 22)
# Oldest IR version that carries each opset: older runtimes (Triton's bundled onnxruntime,
# TensorRT) refuse newer IR versions than they know.
_IR_FOR_OPSET = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def ir_version_for(opset: int) -> int:
    return _IR_FOR_OPSET[opset]


def check_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise SpecError(f"opset must be an int, got {opset!r}")
    if int(opset) not in SUPPORTED_OPSETS:
        raise SpecError(
            f"opset {opset} is not supported; expected {SUPPORTED_OPSETS.start}.."
            f"{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})"
        )
    return int(opset)
