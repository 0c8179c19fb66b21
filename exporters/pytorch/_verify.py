"""Compare an exported ONNX model with its PyTorch model on the same inputs (Polygraphy-style)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from exporters.runtimes import TOLERANCES as RUNTIME_TOLERANCES
from exporters.runtimes import compare

from ._errors import ExportOptionsError, VerificationError

__all__ = ["TOLERANCES", "OutputCheck", "VerificationReport", "verify"]

#: Default tolerances per model precision (the rule of :mod:`exporters.runtimes`): an element
#: passes when ``|onnx - torch| <= atol * max(scale, scale_floor) + rtol * |torch|`` with
#: ``scale = max |torch|``. ``atol`` is per unit of the output's scale, so a model whose outputs
#: are around 20 (a depth model) verifies without tuning: float32 carries ~7 significant digits of
#: the magnitudes it adds up, also on elements near zero. Measured worst cases: docs/exporters.md.
TOLERANCES: dict[str, dict[str, Any]] = {
    p: {**t.as_dict(), "atol_is_relative": True} for p, t in RUNTIME_TOLERANCES.items()
}

_NP_OF_ONNX = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
}


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    """The comparison of one output. Errors are of onnxruntime against PyTorch."""

    name: str
    torch_shape: tuple[int, ...]
    onnx_shape: tuple[int, ...]
    torch_dtype: str
    onnx_dtype: str
    expected_dtype: str
    max_abs: float
    max_rel: float
    scale: float
    min_atol: float
    atol: float
    rtol: float
    nonfinite_torch: int
    nonfinite_onnx: int
    problems: tuple[str, ...]
    min_rtol: float = float("nan")

    @property
    def passed(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        shape_ok = "ok" if self.torch_shape == self.onnx_shape else f"MISMATCH vs {self.torch_shape}"
        dtype_ok = "ok" if self.onnx_dtype == self.expected_dtype else f"MISMATCH vs {self.expected_dtype}"
        finite = (
            "ok" if not (self.nonfinite_onnx or self.nonfinite_torch)
            else f"onnx {self.nonfinite_onnx}, torch {self.nonfinite_torch} NaN/Inf"
        )
        lines = [
            f"  {self.name}: shape {self.onnx_shape} {shape_ok}; dtype {self.onnx_dtype} {dtype_ok}; "
            f"NaN/Inf {finite}",
            f"    max abs err {self.max_abs:.3e}, max rel err {self.max_rel:.3e}, "
            f"max abs / max|torch| {self.max_abs / (self.scale or 1.0):.3e} (scale {self.scale:.3e})",
            f"    minimum atol to pass at rtol={self.rtol:g}: {self.min_atol:.3e} (or rtol "
            f"{self.min_rtol:.3e} at atol={self.atol:.3e}); "
            f"tolerance atol={self.atol:.3e}, rtol={self.rtol:g} -> "
            f"{'PASS' if self.passed else 'FAIL'}",
        ]
        lines += [f"    problem: {p}" for p in self.problems]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class VerificationReport:
    """Result of :func:`verify`: one :class:`OutputCheck` per output."""

    onnx_path: str
    precision: str
    provider: str
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]
    outputs: tuple[OutputCheck, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def __str__(self) -> str:
        feeds = ", ".join(f"{n} {list(s)} {d}" for n, s, d in self.inputs)
        head = (
            f"verify {Path(self.onnx_path).name} ({self.precision}) with onnxruntime "
            f"{self.provider} against PyTorch; inputs: {feeds}"
        )
        tail = f"result: {'PASS' if self.passed else 'FAIL'}"
        return "\n".join([head, *(str(o) for o in self.outputs), tail])


def _input_specs(model: onnx.ModelProto) -> list[tuple[str, list[int | None], Any]]:
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        specs.append((value.name, dims, _NP_OF_ONNX.get(t.elem_type, np.float32)))
    return specs


def _default_shapes(model: onnx.ModelProto, specs: list[tuple[str, list[int | None], Any]]
                    ) -> list[tuple[int, ...]]:
    meta = {p.key: p.value for p in model.metadata_props}
    if "pixeldcn.input_shapes" in meta:
        shapes = [tuple(s) for s in json.loads(meta["pixeldcn.input_shapes"])]
        if len(shapes) == len(specs):
            return shapes
    return [
        tuple((d if d else (1 if i == 0 else 64)) for i, d in enumerate(dims))
        for _, dims, _ in specs
    ]


def _as_arrays(inputs: Any, names: list[str]) -> list[np.ndarray]:
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ExportOptionsError(f"inputs: missing {missing}; the model's inputs are {names}")
        items = [inputs[n] for n in names]
    elif isinstance(inputs, (torch.Tensor, np.ndarray)):
        items = [inputs]
    elif isinstance(inputs, Sequence):
        items = list(inputs)
    else:
        raise ExportOptionsError(
            f"inputs must be a tensor, a sequence or a dict, got {type(inputs).__name__}"
        )
    if len(items) != len(names):
        raise ExportOptionsError(f"inputs: got {len(items)} tensors, while the model has {len(names)} inputs")
    return [
        i.detach().cpu().float().numpy() if isinstance(i, torch.Tensor) else np.asarray(i, np.float32)
        for i in items
    ]


def _flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _flatten(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _flatten(v)]
    raise ExportOptionsError(f"model output of type {type(out).__name__} is not a tensor or a tuple")


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _as_verify_problem(text: str) -> str:
    """A :func:`exporters.runtimes.compare` problem in this report's words."""
    if text.endswith("NaN/Inf values"):
        return f"{text} in the ONNX output"
    return text.replace("in the baseline", "in the PyTorch output").replace("baseline", "PyTorch")


def verify(
    model: nn.Module,
    onnx_path: str | os.PathLike[str],
    inputs: Any = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    quiet: bool = False,
) -> VerificationReport:
    """Run ``model`` (eval mode, no grad) and the ONNX file in onnxruntime on the same inputs.

    For each output: max abs and rel error, the minimum atol that would pass at ``rtol``, NaN /
    Inf counts, shape and dtype checks. A float16 model is compared with the (float32) PyTorch
    model fed the same float16-rounded inputs: the error is the deployment error.

    Args:
        model: the PyTorch model (left in its train / eval mode).
        onnx_path: the exported model.
        inputs: a tensor / array, a sequence of them (one per input) or a dict by input name;
            ``None``: seeded standard-normal inputs of the export's example shapes.
        atol, rtol: pass when ``|onnx - torch| <= atol + rtol * |torch|`` everywhere (``atol``
            in output units); ``None`` takes :data:`TOLERANCES` of the model's precision
            (float32: atol 1e-5 x max(max|torch|, 1), rtol 1e-3; float16: atol 1e-2 x max|torch|,
            rtol 1e-2).
        seed: seed of the generated inputs.
        providers: onnxruntime execution providers.
        quiet: do not print the report.

    Returns:
        A :class:`VerificationReport`.

    Raises:
        VerificationError: some output fails (``err.report`` holds the report).
    """
    import onnxruntime as ort

    path = Path(onnx_path)
    proto = onnx.load(str(path), load_external_data=False)
    specs = _input_specs(proto)
    names = [n for n, _, _ in specs]
    if inputs is None:
        rng = np.random.default_rng(seed)
        arrays = [rng.standard_normal(s).astype(np.float32) for s in _default_shapes(proto, specs)]
    else:
        arrays = _as_arrays(inputs, names)
    feeds = {n: a.astype(dt) for (n, _, dt), a in zip(specs, arrays, strict=True)}
    precision = "float16" if any(dt == np.float16 for _, _, dt in specs) else "float32"

    sess = ort.InferenceSession(str(path), providers=list(providers))
    onnx_outs = sess.run(None, feeds)
    out_names = [o.name for o in sess.get_outputs()]

    torch_outs = _run_torch(model, feeds.values())
    if len(torch_outs) != len(onnx_outs):
        raise VerificationError(
            f"PyTorch returns {len(torch_outs)} outputs, the ONNX model {len(onnx_outs)}"
        )
    checks = [_check_output(name, t, o, precision, atol, rtol)
              for name, t, o in zip(out_names, torch_outs, onnx_outs, strict=True)]
    report = VerificationReport(
        onnx_path=str(path),
        precision=precision,
        provider=sess.get_providers()[0],
        inputs=tuple((n, tuple(a.shape), str(a.dtype)) for n, a in feeds.items()),
        outputs=tuple(checks),
    )
    if not quiet:
        print(report)
    if not report.passed:
        failed = [o for o in checks if not o.passed]
        raise VerificationError(
            f"{path.name}: {len(failed)} of {len(checks)} outputs fail verification: "
            + "; ".join(f"{o.name}: {', '.join(o.problems)}" for o in failed),
            report,
        )
    return report


def _run_torch(model: nn.Module, arrays: Any) -> list[torch.Tensor]:
    """``model``'s outputs on ``arrays`` in eval mode, full float32 (no TF32), mode restored."""
    device, dtype = _model_device_dtype(model)
    was_training = model.training
    # The reference runs in full float32 on GPU too: TF32 convs / matmuls would add ~1e-3 errors.
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    model.eval()
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with torch.no_grad():
            args = [torch.from_numpy(np.asarray(a, np.float32)).to(device, dtype) for a in arrays]
            return _flatten(model(*args))
    finally:
        model.train(was_training)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def _check_output(name: str, t: torch.Tensor, o: Any, precision: str, atol: float | None,
                  rtol: float | None) -> OutputCheck:
    """One output of onnxruntime (``o``) against PyTorch's (``t``)."""
    ref = t.detach().float().cpu().numpy().astype(np.float64)
    got = np.asarray(o)
    expected_dtype = "float16" if precision == "float16" else str(t.dtype).replace("torch.", "")
    c = compare(got, ref, name=name, precision=precision, atol=atol, rtol=rtol)
    problems = [_as_verify_problem(p.removeprefix(f"{name}: ")) for p in c.problems]
    if str(got.dtype) != expected_dtype:
        problems.append(f"dtype {got.dtype} != expected {expected_dtype}")
    return OutputCheck(
        name=name, torch_shape=tuple(ref.shape), onnx_shape=tuple(got.shape),
        torch_dtype=str(t.dtype).replace("torch.", ""), onnx_dtype=str(got.dtype),
        expected_dtype=expected_dtype, max_abs=c.max_abs, max_rel=c.max_rel, scale=c.scale,
        min_atol=c.min_atol, atol=c.atol, rtol=c.rtol, nonfinite_torch=c.nonfinite_ref,
        nonfinite_onnx=c.nonfinite, problems=tuple(problems), min_rtol=c.min_rtol,
    )
