"""The ONNX consumers ``pixeldcn check`` runs, each imported lazily, with the hints each one needs.

Every adapter turns (model file, model proto, feeds) into a function ``feeds -> outputs`` (numpy
arrays in the graph's output order). What each applies on purpose:

- openvino: ``INFERENCE_PRECISION_HINT=f32``. On a CPU with bf16 (AVX-512 BF16 / AMX) OpenVINO
  otherwise runs float32 models in bf16: errors of 4e-3 to 7e-3 against the reference.
- tract: an input fact (shape and type) per input, from the feeds. tract analyses a model with
  symbolic height and width (a dynamic U-Net) only when told the concrete input shape.
- onnx2torch: converts the model into a ``torch.fx.GraphModule`` and runs it in eval mode.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import tempfile
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

__all__ = [
    "OPENVINO_CONFIG",
    "RUNTIMES",
    "Runtime",
    "install_torchvision_stand_in",
    "onnx2torch_limitations",
    "reference_limitations",
    "runtime_unavailable",
    "tract_fact",
]

Feeds = dict[str, np.ndarray]
Runner = Callable[[Feeds], list[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One ONNX consumer.

    Attributes:
        name: the name ``--runtimes`` takes.
        title: what it is, for tables.
        modules: Python modules it needs (imported lazily).
        pip: what to ``pip install`` when they are missing.
        hint: what the adapter sets for it (shown in the table and the README).
        load: ``(path, proto, feeds) -> run(feeds) -> outputs``.
    """

    name: str
    title: str
    modules: tuple[str, ...]
    pip: str
    hint: str
    load: Callable[[Path, onnx.ModelProto, Feeds], Runner]


# -- the adapters -------------------------------------------------------------------------------------
def _load_ort(path: Path, proto: onnx.ModelProto, feeds: Feeds) -> Runner:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda f: list(sess.run(None, f))


def _load_reference(path: Path, proto: onnx.ModelProto, feeds: Feeds) -> Runner:
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(proto)
    return lambda f: [np.asarray(o) for o in ev.run(None, f)]


#: What the OpenVINO adapter passes to ``compile_model``; see the module docstring.
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def _load_openvino(path: Path, proto: onnx.ModelProto, feeds: Feeds) -> Runner:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", OPENVINO_CONFIG)
    outputs = list(compiled.outputs)

    def run(f: Feeds) -> list[np.ndarray]:
        res = compiled(f)
        return [np.asarray(res[o]) for o in outputs]

    return run


_TRACT_TYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.float64): "f64",
                np.dtype(np.int64): "i64", np.dtype(np.int32): "i32", np.dtype(np.uint8): "u8",
                np.dtype(np.int8): "i8", np.dtype(np.bool_): "bool"}


def tract_fact(a: np.ndarray) -> str:
    """tract's input fact of an array: ``"1,3,64,64,f32"``."""
    return ",".join([*(str(d) for d in a.shape), _TRACT_TYPES[np.dtype(a.dtype)]])


def _load_tract(path: Path, proto: onnx.ModelProto, feeds: Feeds) -> Runner:
    import tract

    im = tract.onnx().load(str(path))
    names = [im.input_name(i) for i in range(im.input_count())]
    for i, name in enumerate(names):
        im.set_input_fact(i, tract_fact(feeds[name]))  # the input-fact hint
    runnable = im.into_model().into_runnable()
    return lambda f: [t.to_numpy() for t in runnable.run([f[n] for n in names])]


def _load_onnx2torch(path: Path, proto: onnx.ModelProto, feeds: Feeds) -> Runner:
    import onnx2torch
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its converters' deprecation notes, not ours
        module = onnx2torch.convert(proto).eval()
    names = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]

    def run(f: Feeds) -> list[np.ndarray]:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = module(*[torch.from_numpy(np.ascontiguousarray(f[n])) for n in names])
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.detach().cpu().numpy() for o in outs]

    return run


#: Every consumer ``pixeldcn check`` knows, in the order of its table; keyed by the same names as
#: the core's targets (``pixeldcn_core.CONSUMERS``); ``pixeldcn_core.CONSUMER_ALIASES`` spellings
#: (``ort``) are accepted wherever a runtime is named.
RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("onnxruntime", "onnxruntime (CPU)", ("onnxruntime",), "onnxruntime", "-", _load_ort),
        Runtime("reference", "onnx ReferenceEvaluator", ("onnx.reference",), "onnx", "-",
                _load_reference),
        Runtime("openvino", "OpenVINO (CPU)", ("openvino",), "openvino",
                "INFERENCE_PRECISION_HINT=f32", _load_openvino),
        Runtime("tract", "tract", ("tract",), "tract", "input fact per input (shape, type)",
                _load_tract),
        Runtime("onnx2torch", "onnx2torch -> PyTorch", ("torch", "onnx2torch"), "onnx2torch",
                "-", _load_onnx2torch),
    )
}


# -- availability -------------------------------------------------------------------------------------
def _torchvision_problem() -> str | None:
    """None when torchvision imports (or is absent); else why it does not."""
    try:
        importlib.import_module("torchvision")
    except ImportError:
        return None  # onnx2torch's own import reports it
    except Exception as err:  # e.g. RuntimeError: operator torchvision::nms does not exist
        return f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err) else ''}"
    return None


def runtime_unavailable(name: str) -> str | None:
    """None when runtime ``name`` can run here; else one line saying what to install."""
    rt = RUNTIMES[name]
    for module in rt.modules:
        if module == "onnx2torch":
            problem = _torchvision_problem()
            if problem is not None:
                import torch

                return (
                    f"onnx2torch imports torchvision, and the installed torchvision does not import "
                    f"beside torch {torch.__version__} ({problem}): pip install the torchvision "
                    f"built for this torch (same index as torch), or pass --torchvision-stand-in "
                    f"(onnx2torch uses torchvision only for NMS / RoiAlign nodes)"
                )
        try:
            importlib.import_module(module)
        except ImportError as err:
            return f"{module} is not installed ({err}): pip install {rt.pip} (or 'pixeldcn[runtimes]')"
    return None


_STAND_IN_LIB: Any = None


def install_torchvision_stand_in() -> str:
    """Make ``import torchvision`` work where the installed wheel cannot load its kernels.

    The only torchvision wheels some machines reach are CUDA builds whose C++ extension does not
    load beside a CPU torch; their Python package then fails at import with ``operator
    torchvision::nms does not exist``. onnx2torch imports torchvision for its NMS and RoiAlign
    converters only, which pixeldcn models never contain.

    Returns what was done: ``"none"`` (torchvision imports as it is), ``"schemas"`` (the two
    operator schemas torchvision's import registers fake kernels for were declared, without
    kernels, so its pure-Python parts import; its ops raise if called), or ``"empty"`` (an empty
    ``torchvision`` module with an ``ops`` namespace whose functions raise).
    """
    global _STAND_IN_LIB
    if _torchvision_problem() is None:
        return "none"
    import torch

    try:
        if _STAND_IN_LIB is None:
            lib = torch.library.Library("torchvision", "DEF")  # schemas only, no kernels
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _STAND_IN_LIB = lib
        if _torchvision_problem() is None:
            return "schemas"
    except Exception:  # pragma: no cover - depends on the broken wheel at hand
        pass
    for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[key]

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("torchvision stand-in: this torchvision op is not available")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    for fn in ("nms", "batched_nms", "box_convert", "roi_align", "roi_pool"):
        setattr(ops, fn, unavailable)
    tv.ops = ops  # type: ignore[attr-defined]
    tv.__version__ = "0.0+stand-in"  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    return "empty"


def onnx2torch_limitations(model: onnx.ModelProto) -> list[str]:
    """What in ``model`` onnx2torch (1.5) does not convert, read from the graph (not from a run).

    Export with ``target="onnx2torch"`` or ``target="any"`` to avoid all of them.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    reasons = set()
    for n in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "DepthToSpace" and attrs.get("mode", b"DCR") == b"DCR":
            reasons.add("DepthToSpace in DCR mode (onnx2torch converts CRD only)")
        pads = attrs.get("pads")
        if n.op_type == "ConvTranspose" and pads and list(pads[: len(pads) // 2]) != list(
                pads[len(pads) // 2:]):
            reasons.add("ConvTranspose with asymmetric pads (onnx2torch: symmetric only)")
        if n.op_type == "Reshape" and attrs.get("allowzero") == 1:
            reasons.add("Reshape with allowzero=1 (onnx2torch: not implemented)")
        if n.op_type == "GridSample":
            reasons.add("GridSample (onnx2torch has no converter)")
        if n.domain in ("", "ai.onnx") and opset >= 18:
            try:
                since = onnx.defs.get_schema(n.op_type, opset, "").since_version
            except onnx.defs.SchemaError:
                continue
            if since >= 18:
                reasons.add(f"{n.op_type} of opset {since} (onnx2torch converts up to opset 17)")
    return sorted(reasons)


def reference_limitations(model: onnx.ModelProto) -> list[str]:
    """What in ``model`` onnx's ReferenceEvaluator (1.23) does not run, read from the graph.

    Its GridSample knows only the opset-20 mode names (``"linear"``, ``"cubic"``), so a
    GridSample-16 with ``mode="bilinear"`` fails at run time. Build with opset >= 20, or export
    with ``target="any"`` (no GridSample).
    """
    reasons = set()
    for n in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "GridSample" and attrs.get("mode", b"bilinear") in (b"bilinear", b"bicubic"):
            reasons.add(f"GridSample with mode={attrs.get('mode', b'bilinear').decode()!r} (the "
                        "ReferenceEvaluator knows only opset 20's 'linear' / 'cubic': use opset >= 20)")
    return sorted(reasons)


def save_temp(proto: onnx.ModelProto, folder: str | Path) -> Path:
    """Write ``proto`` into ``folder`` as model.onnx (for consumers that read files)."""
    path = Path(folder) / "model.onnx"
    onnx.save(proto, str(path))
    return path


def temp_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="pixeldcn-check-")
