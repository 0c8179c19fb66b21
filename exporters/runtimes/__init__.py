"""Run exported models on several ONNX consumers and compare them: ``pixeldcn check``.

Consumers (:data:`RUNTIMES`): onnxruntime, onnx's ReferenceEvaluator, OpenVINO, tract and
onnx2torch, each imported only when asked for (``pip install 'pixeldcn[runtimes]'`` installs the
optional ones). Every consumer gets the same seeded inputs; each output is compared with a
baseline (onnxruntime, or the core's numpy reference for single layers) under
``|y - baseline| <= atol x scale + rtol x |baseline|`` with per-precision defaults
(:data:`TOLERANCES`), and the smallest tolerance that would pass is reported.
"""

from __future__ import annotations

from ._check import (
    SCHEMA,
    CheckError,
    CheckInputError,
    CheckReport,
    RuntimeResult,
    check_layer,
    check_model,
    layer_reference,
    seeded_inputs,
)
from ._consumers import (
    OPENVINO_CONFIG,
    RUNTIMES,
    Runtime,
    install_torchvision_stand_in,
    onnx2torch_limitations,
    reference_limitations,
    runtime_unavailable,
    tract_fact,
)
from ._tolerance import TOLERANCES, Comparison, Tolerance, compare, precision_of

__all__ = [
    # the check
    "SCHEMA",
    "CheckReport",
    "RuntimeResult",
    "check_layer",
    "check_model",
    "layer_reference",
    "seeded_inputs",
    # consumers
    "OPENVINO_CONFIG",
    "RUNTIMES",
    "Runtime",
    "install_torchvision_stand_in",
    "onnx2torch_limitations",
    "reference_limitations",
    "runtime_unavailable",
    "tract_fact",
    # tolerances
    "TOLERANCES",
    "Comparison",
    "Tolerance",
    "compare",
    "precision_of",
    # errors
    "CheckError",
    "CheckInputError",
]
