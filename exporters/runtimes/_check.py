"""Run one ONNX model on several consumers with the same seeded inputs and compare each with a
baseline (onnxruntime, or the core's numpy reference for a single layer)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pixeldcn_core import PixelDCNError, build_layer_model, consumer_name
from pixeldcn_core import reference as core_reference

from ._consumers import (
    RUNTIMES,
    install_torchvision_stand_in,
    onnx2torch_limitations,
    reference_limitations,
    runtime_unavailable,
    save_temp,
    temp_folder,
)
from ._tolerance import TOLERANCES, Comparison, Tolerance, compare, precision_of

#: The runtime every other one is compared with when no baseline is given.
BASELINE_RUNTIME = "onnxruntime"

__all__ = [
    "SCHEMA",
    "CheckError",
    "CheckInputError",
    "CheckReport",
    "RuntimeResult",
    "check_layer",
    "check_model",
    "layer_reference",
    "seeded_inputs",
]

#: Version of the JSON report.
SCHEMA = "pixeldcn.check/1"
METADATA_INPUT_SHAPES = "pixeldcn.input_shapes"  # written by exporters.pytorch.export_onnx



class CheckError(PixelDCNError):
    """The check could not be done (the baseline failed to run, ...)."""


class CheckInputError(CheckError, ValueError):
    """Bad input to the check: a missing or invalid model file, an unknown runtime, a bad shape."""


Baseline = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class RuntimeResult:
    """What one consumer did.

    ``status``: "pass", "fail" (ran, disagrees), "error" (did not load or run), "skipped" (not
    installed here; ``message`` says what to install) or "baseline" (the reference of the others).
    """

    runtime: str
    status: str
    outputs: tuple[Comparison, ...] = ()
    load_s: float | None = None
    run_ms: float | None = None
    message: str = ""
    hint: str = ""

    def worst(self, field: str) -> float:
        values = [getattr(o, field) for o in self.outputs]
        finite = [v for v in values if not math.isnan(v)]
        return max(finite) if finite else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "status": self.status,
            "max_abs": _num(self.worst("max_abs")),
            "max_rel": _num(self.worst("max_rel")),
            "min_atol": _num(self.worst("min_atol")),
            "min_rtol": _num(self.worst("min_rtol")),
            "load_s": self.load_s,
            "run_ms": self.run_ms,
            "hint": self.hint,
            "message": self.message,
            "outputs": [o.as_dict() for o in self.outputs],
        }


def _num(v: float) -> float | str | None:
    if math.isnan(v):
        return None
    return v if math.isfinite(v) else str(v)


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """The result of :func:`check_model`: one :class:`RuntimeResult` per requested runtime."""

    model: str
    baseline: str
    precision: str
    tolerance: Tolerance
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]
    seed: int
    results: tuple[RuntimeResult, ...]
    strict: bool = False

    @property
    def passed(self) -> bool:
        """Every requested runtime agrees (skipped ones count as failures when ``strict``)."""
        bad = {"fail", "error"} | ({"skipped"} if self.strict else set())
        return not any(r.status in bad for r in self.results)

    @property
    def failed(self) -> list[str]:
        bad = {"fail", "error"} | ({"skipped"} if self.strict else set())
        return [r.runtime for r in self.results if r.status in bad]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "baseline": self.baseline,
            "precision": self.precision,
            "tolerance": self.tolerance.as_dict(),
            "seed": self.seed,
            "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs],
            "passed": self.passed,
            "results": [r.as_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def table(self) -> str:
        head = ("runtime", "status", "max abs", "max rel", "min atol", "min rtol", "load s", "run ms",
                "hint / note")
        rows = [head]
        for r in self.results:
            note = r.message if r.message else r.hint
            rows.append((
                r.runtime, r.status.upper() if r.status in ("fail", "error") else r.status,
                _fmt(r.worst("max_abs")), _fmt(r.worst("max_rel")), _fmt(r.worst("min_atol")),
                _fmt(r.worst("min_rtol")),
                "-" if r.load_s is None else f"{r.load_s:.2f}",
                "-" if r.run_ms is None else f"{r.run_ms:.1f}",
                note,
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
        lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
                 .rstrip() for row in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        feeds = ", ".join(f"{n} {list(s)} {d}" for n, s, d in self.inputs)
        t = self.tolerance
        head = [
            f"check {self.model} ({self.precision}); baseline: {self.baseline}; inputs: {feeds} "
            f"(seed {self.seed})",
            f"tolerance: |y - baseline| <= {t.atol:g} x max(max|baseline|, {t.scale_floor:g}) "
            f"+ {t.rtol:g} x |baseline|",
        ]
        verdict = "PASS" if self.passed else f"FAIL ({', '.join(self.failed)})"
        return "\n".join([*head, self.table(), f"result: {verdict}"])


def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2e}"


# -- inputs -------------------------------------------------------------------------------------------
def input_specs(model: onnx.ModelProto) -> list[tuple[str, list[int | None], Any]]:
    """(name, dims with None where symbolic, numpy dtype) of every graph input."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        except Exception:
            raise CheckInputError(
                f"input {value.name!r} has ONNX element type {t.elem_type}, which the check "
                "cannot generate; pass inputs= (Python) instead"
            ) from None
        specs.append((value.name, dims, dtype))
    return specs


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Standard normal for floats; 0..255 for uint8 (images); 0..9 for other integers; bools."""
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 10, shape).astype(dtype)
    raise CheckInputError(f"cannot generate inputs of dtype {dtype}; pass inputs= (Python) instead")


def seeded_inputs(
    model: onnx.ModelProto,
    input_shapes: Sequence[Sequence[int]] | None = None,
    *,
    seed: int = 0,
    default_dim: int = 16,
) -> dict[str, np.ndarray]:
    """Seeded inputs, the same for every consumer: standard normal for float inputs, 0..255 for
    uint8 (image) inputs, 0..9 for other integers.

    Shapes: ``input_shapes`` (one per input), else the exporter's metadata
    ``pixeldcn.input_shapes``, else the model's dims with symbolic ones set to 1 (dim 0) or
    ``default_dim``.
    """
    specs = input_specs(model)
    meta = {p.key: p.value for p in model.metadata_props}
    if input_shapes is not None:
        shapes = [tuple(int(d) for d in s) for s in input_shapes]
        if len(shapes) != len(specs):
            raise CheckInputError(
                f"--input-shape: got {len(shapes)} shapes, while the model has {len(specs)} inputs "
                f"({', '.join(n for n, _, _ in specs)})"
            )
    elif METADATA_INPUT_SHAPES in meta:
        shapes = [tuple(s) for s in json.loads(meta[METADATA_INPUT_SHAPES])]
    else:
        shapes = [tuple(d if d else (1 if i == 0 else default_dim) for i, d in enumerate(dims))
                  for _, dims, _ in specs]
    feeds = {}
    rng = np.random.default_rng(seed)
    for (name, dims, dt), shape in zip(specs, shapes, strict=False):
        if len(shape) != len(dims) or any(d and d != s for d, s in zip(dims, shape, strict=True)):
            raise CheckInputError(
                f"input {name!r}: shape {list(shape)} does not fit the model's "
                f"{['?' if d is None else d for d in dims]}"
            )
        feeds[name] = _random(rng, tuple(shape), dt)
    return feeds


# -- the check ----------------------------------------------------------------------------------------
def _parse_runtimes(runtimes: str | Sequence[str]) -> list[str]:
    given = [r.strip() for r in runtimes.split(",")] if isinstance(runtimes, str) else list(runtimes)
    given = [n for n in given if n.strip()]
    names = [consumer_name(n) for n in given]  # "ort" -> "onnxruntime"
    if not names or any(n not in RUNTIMES for n in names):
        raise CheckInputError(
            f"--runtimes: got {','.join(given) or 'nothing'}; expected a comma-separated subset of "
            f"{','.join(RUNTIMES)}"
        )
    return list(dict.fromkeys(names))


def _load(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, Path | None, str]:
    if isinstance(model, onnx.ModelProto):
        return model, None, model.graph.name or "model"
    path = Path(model)
    if not path.is_file():
        raise CheckInputError(f"model {str(path)!r}: no such file")
    try:
        proto = onnx.load(str(path))
    except Exception as err:
        raise CheckInputError(f"model {str(path)!r} is not an ONNX model: {err}") from None
    return proto, path, str(path)


def check_model(
    model: str | Path | onnx.ModelProto,
    runtimes: str | Sequence[str] = tuple(RUNTIMES),
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    seed: int = 0,
    baseline: Baseline | None = None,
    baseline_name: str = "",
    atol: float | None = None,
    rtol: float | None = None,
    strict: bool = False,
    torchvision_stand_in: bool = False,
) -> CheckReport:
    """Run ``model`` on each of ``runtimes`` with the same inputs and compare with a baseline.

    Args:
        model: an ``.onnx`` path (external data next to it is found) or a ModelProto.
        runtimes: names from :data:`RUNTIMES` (a list or "onnxruntime,openvino,..."; "ort" is
            accepted for onnxruntime).
        inputs: feeds by input name; ``None``: :func:`seeded_inputs` from ``seed``.
        input_shapes: shapes of the seeded inputs (one per input).
        seed: seed of the inputs.
        baseline: ``feeds -> outputs`` computing the truth (e.g. :func:`layer_reference`);
            ``None``: onnxruntime on the same model.
        baseline_name: what ``baseline`` is, for the report.
        atol, rtol: replace the per-precision defaults (:data:`TOLERANCES`); ``atol`` in output
            units.
        strict: a runtime that is not installed fails the check instead of being skipped.
        torchvision_stand_in: let onnx2torch import beside a torchvision that cannot load (see
            :func:`install_torchvision_stand_in`).

    Returns:
        A :class:`CheckReport`; ``report.passed`` is False when any requested runtime disagrees
        or fails to run.

    Raises:
        CheckInputError: missing / invalid model, unknown runtime, bad input shape.
        CheckError: the baseline itself fails to run.
    """
    names = _parse_runtimes(runtimes)
    proto, path, label = _load(model)
    feeds = dict(inputs) if inputs is not None else seeded_inputs(proto, input_shapes, seed=seed)
    out_types = [o.type.tensor_type.elem_type for o in proto.graph.output]
    precision = precision_of([*(a.dtype for a in feeds.values()),
                              *(onnx.helper.tensor_dtype_to_np_dtype(t) for t in out_types if t)])
    tolerance = TOLERANCES[precision]
    out_names = [o.name for o in proto.graph.output]
    if torchvision_stand_in and "onnx2torch" in names:
        install_torchvision_stand_in()
    with temp_folder() as tmp:
        if path is None:
            path = save_temp(proto, tmp)
        truth, baseline_name = _truth(baseline, baseline_name, path, proto, feeds, label)
        results = []
        for name in names:
            rt = RUNTIMES[name]
            if baseline is None and name == BASELINE_RUNTIME:
                results.append(RuntimeResult(name, "baseline", tuple(
                    compare(t, t, name=o, tolerance=tolerance, atol=atol, rtol=rtol)
                    for o, t in zip(out_names, truth, strict=True)), hint=rt.hint))
                continue
            why = runtime_unavailable(name)
            if why is not None:
                results.append(RuntimeResult(name, "skipped", message=why, hint=rt.hint))
                continue
            results.append(_run_one(rt, path, proto, feeds, truth, out_names, tolerance, atol, rtol))
    return CheckReport(
        model=label, baseline=baseline_name, precision=precision, tolerance=tolerance,
        inputs=tuple((n, tuple(a.shape), str(a.dtype)) for n, a in feeds.items()), seed=seed,
        results=tuple(results), strict=strict,
    )


def _truth(baseline: Baseline | None, baseline_name: str, path: Path, proto: onnx.ModelProto,
           feeds: dict[str, np.ndarray], label: str) -> tuple[list[np.ndarray], str]:
    """The baseline's outputs on ``feeds``, and its name for the report."""
    if baseline is not None:
        return [np.asarray(t) for t in baseline(feeds)], baseline_name or "given baseline"
    try:
        truth = RUNTIMES[BASELINE_RUNTIME].load(path, proto, feeds)(feeds)
    except Exception as err:
        raise CheckError(f"the baseline onnxruntime cannot run {label}: {_line(err)}") from err
    return truth, baseline_name or "onnxruntime (CPU)"


def _line(err: BaseException) -> str:
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    return f"{type(err).__name__}: {first[:300]}"


def _run_one(rt: Any, path: Path, proto: onnx.ModelProto, feeds: dict[str, np.ndarray],
             truth: list[np.ndarray], out_names: list[str], tolerance: Tolerance,
             atol: float | None, rtol: float | None) -> RuntimeResult:
    t0 = time.perf_counter()
    try:
        run = rt.load(path, proto, feeds)
    except Exception as err:
        why = ""
        if rt.name == "onnx2torch" and (limits := onnx2torch_limitations(proto)):
            why = f" [the graph holds {'; '.join(limits)}: export with --target onnx2torch or any]"
        return RuntimeResult(rt.name, "error", message=f"load: {_line(err)}{why}", hint=rt.hint)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        outs = run(feeds)
    except Exception as err:
        why = ""
        if rt.name == "reference" and (limits := reference_limitations(proto)):
            why = f" [the graph holds {'; '.join(limits)}]"
        return RuntimeResult(rt.name, "error", load_s=load_s, message=f"run: {_line(err)}{why}",
                             hint=rt.hint)
    run_ms = (time.perf_counter() - t1) * 1e3
    if len(outs) != len(truth):
        return RuntimeResult(rt.name, "fail", load_s=load_s, run_ms=run_ms, hint=rt.hint,
                             message=f"{len(outs)} outputs, the baseline has {len(truth)}")
    comps = tuple(compare(o, t, name=n, tolerance=tolerance, atol=atol, rtol=rtol)
                  for n, o, t in zip(out_names, outs, truth, strict=True))
    status = "pass" if all(c.passed for c in comps) else "fail"
    message = "; ".join(p for c in comps for p in c.problems)
    return RuntimeResult(rt.name, status, comps, load_s, run_ms, message, rt.hint)


# -- single layers against the numpy reference --------------------------------------------------------
def layer_reference(kind: str, weights: Mapping[str, Any]) -> Baseline:
    """The core's numpy reference of one layer as a baseline (input ``x``, float64)."""
    w = {k: np.asarray(v) for k, v in weights.items()}

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        return [core_reference.apply(kind, x, w)]

    return run


def check_layer(
    kind: str,
    weights: Mapping[str, Any],
    runtimes: str | Sequence[str] = tuple(RUNTIMES),
    *,
    input_shape: Sequence[int] = (1, 0, 8, 8),
    seed: int = 0,
    **build: Any,
) -> tuple[onnx.ModelProto, CheckReport]:
    """Build one layer with ``pixeldcn_core.build_layer_model(kind, weights, **build)`` and check
    it on ``runtimes`` against the numpy reference. ``input_shape[1] = 0`` takes the weights'
    in-channels. Keyword arguments not for the builder (``atol``, ``strict``...) go to
    :func:`check_model`."""
    check_keys = {"atol", "rtol", "strict", "torchvision_stand_in"}
    check_kwargs = {k: build.pop(k) for k in list(build) if k in check_keys}
    model = build_layer_model(kind, weights, **build)
    shape = list(input_shape)
    if shape[1] == 0:
        ((_, dims, _),) = input_specs(model)
        shape[1] = int(dims[1] or 1)
    report = check_model(model, runtimes, input_shapes=[shape], seed=seed,
                         baseline=layer_reference(kind, weights),
                         baseline_name=f"numpy reference ({kind})", **check_kwargs)
    return model, report
