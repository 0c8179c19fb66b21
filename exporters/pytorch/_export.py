"""ONNX export of any model holding pixeldcn up-sampling layers.

How a layer becomes ONNX is defined in one place, the core's :func:`pixeldcn_core.emit_layer`.
Export therefore goes in two steps:

1. In a deep copy of the model, every up-sampling layer is swapped for a stub calling the custom
   op ``pixeldcn::<kind>(x, weights, bias, layer_id)`` (a real op: it computes the layer). The
   dynamo exporter translates it, through ``custom_translation_table``, into one placeholder node
   ``pixeldcn.export::UpsampleLayer(x, layer_id=i)``; the rest of the network goes through the
   exporter as usual (its optimizer already folds Conv + BatchNormalization pairs).
2. Graph passes (:mod:`._onnx_passes`) replace each placeholder by the nodes ``emit_layer`` writes
   with that layer's weights (an eval BatchNorm right after it is folded into them), fold or
   lower any BatchNormalization left, drop the private domain and unused initializers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx
import onnxscript
import torch
from torch import nn

import pixeldcn_core
from pixeldcn_core import __version__, get_kind, resolve_target
from pixeldcn_core.io import save_model_atomic

from ._base import UpsampleLayer
from ._errors import ExportError, ExportOptionsError
from ._io import apply_io, verify_io
from ._onnx_passes import (
    PLACEHOLDER_DOMAIN,
    PLACEHOLDER_OP,
    LayerEntry,
    finalize,
    fold_batchnorm,
    splice_layers,
    to_float16,
)
from ._options import ExportOptions, moved_keywords_error
from ._registry import FUNCTIONS
from ._targets import adapt_to_target
from ._verify import verify as run_verify

__all__ = ["export_onnx", "prepare_for_export"]

#: Serialised protobufs cannot exceed 2 GiB; bigger models would need external data.
_MAX_BYTES = 2**31 - 2**20
METADATA_INPUT_SHAPES = "pixeldcn.input_shapes"
METADATA_LAYERS = "pixeldcn.layers"
METADATA_TARGET = "pixeldcn.target"


# -- the placeholder op, in torch and in ONNX -----------------------------------------------------
def _register_placeholder_schema() -> None:
    if onnx.defs.has(PLACEHOLDER_OP, PLACEHOLDER_DOMAIN):
        return
    schema = onnx.defs.OpSchema(
        PLACEHOLDER_OP,
        PLACEHOLDER_DOMAIN,
        1,
        doc="Export-time placeholder of a pixeldcn up-sampling layer; replaced before saving.",
        inputs=[onnx.defs.OpSchema.FormalParameter("x", "T")],
        outputs=[onnx.defs.OpSchema.FormalParameter("y", "T")],
        type_constraints=[
            ("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"], "")
        ],
        attributes=[
            onnx.defs.OpSchema.Attribute("layer_id", onnx.defs.OpSchema.AttrType.INT, "layer id")
        ],
    )
    onnx.defs.register_schema(schema)


_register_placeholder_schema()
_PLACEHOLDER = onnxscript.values.Opset(PLACEHOLDER_DOMAIN, 1)


def _translate(x: Any, weights: Any, bias: Any = None, layer_id: int = 0) -> Any:
    return getattr(_PLACEHOLDER, PLACEHOLDER_OP)(x, layer_id=layer_id)


def _define_op(kind: str) -> Any:
    fn = FUNCTIONS[kind]
    channels = get_kind(kind).channels

    def impl(x: torch.Tensor, weights: list[torch.Tensor], bias: torch.Tensor | None,
             layer_id: int) -> torch.Tensor:
        return fn(x, *weights, bias).clone()

    def fake(x: torch.Tensor, weights: list[torch.Tensor], bias: torch.Tensor | None,
             layer_id: int) -> torch.Tensor:
        n, _, h, w = x.shape
        scale = get_kind(kind).scale
        if weights:
            c = channels(tuple(int(d) for d in weights[0].shape))[1]
        elif bias is not None:  # a kind without weights: the bias, or its channel rule
            c = int(bias.shape[0])
        else:
            c = get_kind(kind).out_channels_for(int(x.shape[1]))
        return x.new_empty((n, c, scale * h, scale * w))

    op = torch.library.custom_op(
        f"pixeldcn::{kind}",
        impl,
        mutates_args=(),
        schema="(Tensor x, Tensor[] weights, Tensor? bias, int layer_id) -> Tensor",
    )
    op.register_fake(fake)
    return op


#: kind -> the custom op ``pixeldcn::<kind>`` used during export, defined on first use (so a
#: kind registered after import is exported like the built-in ones).
OPS: dict[str, Any] = {}


def _op(kind: str) -> Any:
    if kind not in OPS:
        OPS[kind] = _define_op(kind)
    return OPS[kind]


def _translations(kinds: set[str]) -> dict[Any, Any]:
    return {getattr(torch.ops.pixeldcn, kind).default: _translate for kind in sorted(kinds)}


class _ExportStub(nn.Module):
    """Stands in for one up-sampling layer during export: calls ``pixeldcn::<kind>``."""

    def __init__(self, layer: UpsampleLayer, layer_id: int) -> None:
        super().__init__()
        self.layer = layer
        self.layer_id = layer_id
        _op(layer.kind)  # defined now, not while torch.export traces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = list(self.layer._onnx_tensors().values())
        return _op(self.layer.kind)(x, weights, self.layer.bias, self.layer_id)


def prepare_for_export(model: nn.Module) -> tuple[nn.Module, dict[int, LayerEntry]]:
    """A float32 eval-mode CPU deep copy of ``model`` with every up-sampling layer swapped for an
    export stub, and layer id -> (path, kind, weights in the core layout, in_channels)."""
    m = copy.deepcopy(model).float().cpu().eval()
    layers: dict[int, LayerEntry] = {}
    if isinstance(m, UpsampleLayer):
        layers[0] = ("layer", m.kind, m.onnx_weights(), m.in_channels)
        return _ExportStub(m, 0), layers
    swaps: dict[int, _ExportStub] = {}
    for path, parent in list(m.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, UpsampleLayer):
                if id(child) not in swaps:
                    lid = len(layers)
                    full = f"{path}.{name}" if path else name
                    layers[lid] = (full, child.kind, child.onnx_weights(), child.in_channels)
                    swaps[id(child)] = _ExportStub(child, lid)
                setattr(parent, name, swaps[id(child)])
    return m, layers


# -- shapes ------------------------------------------------------------------------------------------
def _normalise_shapes(input_shape: Any) -> list[tuple[int, ...]]:
    """One shape ``(1, 3, 256, 256)`` or a sequence of shapes (one per model input)."""
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, (list, tuple)) or not input_shape:
        raise ExportOptionsError(f"input_shape must be a tuple of ints, got {input_shape!r}")
    shapes = [input_shape] if all(isinstance(d, int) for d in input_shape) else list(input_shape)
    out = []
    for shape in shapes:
        if (
            not isinstance(shape, (list, tuple, torch.Size))
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
        ):
            raise ExportOptionsError(
                f"input_shape must be a tuple of positive ints (or one per input), got {input_shape!r}"
            )
        out.append(tuple(int(d) for d in shape))
    return out


def _dynamic_dims(shape: tuple[int, ...]) -> dict[int, Any]:
    """Batch, height and width (dims 0, 2, 3 of a 4-D input; dim 0 otherwise) are dynamic where
    the model allows it (``Dim.AUTO``: a model that fixes its size, like the VAE encoder at
    64 x 64, keeps that dim static)."""
    dims = (0, 2, 3) if len(shape) == 4 else (0,)
    return {d: torch.export.Dim.AUTO for d in dims}


def _example(shape: tuple[int, ...], dynamic: bool, seed: int) -> torch.Tensor:
    # Tracing with a dynamic dim of size 1 would specialise it: trace batch 2 at least.
    if dynamic and shape[0] == 1:
        shape = (2, *shape[1:])
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints, warnings and logs (errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                               "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# -- export ------------------------------------------------------------------------------------------
def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_shape: Sequence[int] | Sequence[Sequence[int]] = (1, 3, 256, 256),
    *,
    options: ExportOptions | None = None,
    verbose: bool = False,
    **moved: object,
) -> Path:
    """Export ``model`` to ONNX with every up-sampling layer in the core's efficient form.

    The model is deep-copied, cast to float32 on CPU and put in eval mode; it is not modified.
    The written model holds standard operators only (opset ``options.opset``, IR version the
    oldest that carries it), no BatchNormalization (folded into the Conv or layer before it, or
    lowered to Mul + Add), no ConvTranspose except in DCL layers, and its weights inline.

    >>> export_onnx(model, "unet.onnx", (1, 3, 256, 256),
    ...             options=ExportOptions(target="any", verify=False))  # doctest: +SKIP

    Args:
        model: any ``nn.Module`` (its up-sampling layers are :mod:`exporters.pytorch` modules).
        path: where to write the ``.onnx`` file (atomically: temp file + rename).
        input_shape: the example input's shape, or one shape per forward argument; dynamic
            export traces with batch >= 2 and verifies at this shape.
        options: how to write it (dynamic dims, opset, float16, target, interleave, names,
            verification, in-graph I/O): an :class:`ExportOptions`, documented there; default
            ``ExportOptions()``.
        verbose: print what each step did.

    Returns:
        The path of the written model.

    Raises:
        ExportOptionsError: the export was asked wrongly (a bad input shape, names that do not
            fit the model's inputs or outputs, I/O options the model cannot take; an export
            option passed as a keyword, the call before ``ExportOptions``: the message shows the
            new one). A ``ValueError``: ``pixeldcn export`` exits 2.
        ExportError: the export itself failed (``torch.export`` or ``torch.onnx.export`` could
            not convert the model, or it exceeds 2 GiB). ``pixeldcn export`` exits 1.
        VerificationError: onnxruntime disagrees with PyTorch beyond tolerance.
    """
    options = _checked_options(options, moved)
    tgt, opset, interleave = resolve_target(options.target, options.opset, options.interleave)
    shapes = _normalise_shapes(input_shape)
    path = Path(path)
    stub_model, layers = prepare_for_export(model)
    proto = _trace(model, stub_model, shapes, options, opset, {e[1] for e in layers.values()})
    proto, notes = splice_layers(proto, layers, opset=opset, interleave=interleave, target=tgt.name)
    proto, bn_notes = fold_batchnorm(proto)
    doc = f"exported by pixeldcn {__version__} (exporters.pytorch) from {type(model).__name__}"
    proto = finalize(proto, opset=opset, doc=doc)
    notes += adapt_to_target(proto, tgt)
    if options.fp16:
        proto = to_float16(proto)
    _set_metadata(proto, {
        METADATA_INPUT_SHAPES: json.dumps([list(s) for s in shapes]),
        METADATA_LAYERS: json.dumps([{"path": e[0], "kind": e[1]} for e in layers.values()]),
        METADATA_TARGET: tgt.name,
    })
    if proto.ByteSize() > _MAX_BYTES:
        raise ExportError(
            f"the model is {proto.ByteSize() / 2**30:.2f} GiB; ONNX protobufs are limited to 2 GiB "
            "(external data is not supported by this exporter)"
        )
    onnx.checker.check_model(proto, full_check=True)
    save_model_atomic(proto, path)
    if verbose:
        for line in [*notes, *bn_notes]:
            print(f"  {line}")
    if options.verify:
        run_verify(model, path, atol=options.atol, rtol=options.rtol, quiet=not verbose)
    if options.processes_io:
        _add_io(proto, path, shapes[0], options, verbose)
    return path


def _checked_options(options: ExportOptions | None, moved: dict[str, object]) -> ExportOptions:
    """``options``, or the default; a keyword of the old signature or a wrong type is refused."""
    if moved:
        raise moved_keywords_error(
            "export_onnx", moved, "export_onnx(model, path, input_shape",
            "options=ExportOptions(...) and verbose=")
    if options is None:
        return ExportOptions()
    if not isinstance(options, ExportOptions):
        raise ExportOptionsError(
            f"options is a {type(options).__name__}; expected exporters.pytorch.ExportOptions(...)"
        )
    return options


def _trace(model: nn.Module, stub_model: nn.Module, shapes: list[tuple[int, ...]],
           options: ExportOptions, opset: int, kinds: set[str]) -> onnx.ModelProto:
    """The model as ONNX from ``torch.export`` + ``torch.onnx.export``, layers as placeholders."""
    examples = tuple(_example(s, options.dynamic, seed=i) for i, s in enumerate(shapes))
    in_names = list(options.input_names) if options.input_names else (
        ["x"] if len(shapes) == 1 else [f"x{i}" for i in range(len(shapes))]
    )
    if len(in_names) != len(shapes):
        raise ExportOptionsError(
            f"input_names has {len(in_names)} names, while there are {len(shapes)} inputs"
        )
    dyn = tuple(_dynamic_dims(s) for s in shapes) if options.dynamic else None
    with _quiet():
        # torch.export first, with ordinary guards: a model that pins a size (the VAE encoder's
        # 64 x 64) keeps that dim static, instead of the ONNX exporter's deferred runtime asserts.
        try:
            exported = torch.export.export(stub_model, examples, dynamic_shapes=dyn)
        except pixeldcn_core.PixelDCNError:
            raise
        except Exception as err:
            raise ExportError(
                f"torch.export failed on inputs of shape {shapes}: {_summary(err)}"
            ) from err
        n_out = len(exported.graph_signature.user_outputs)
        out_names = list(options.output_names) if options.output_names else (
            ["y"] if n_out == 1 else list(getattr(model, "onnx_output_names", None)
                                          or [f"y{i}" for i in range(n_out)])
        )
        if len(out_names) != n_out:
            raise ExportOptionsError(
                f"output_names has {len(out_names)} names, while the model returns {n_out}"
            )
        program = _torch_onnx_export(exported, in_names, out_names, opset, kinds)
    return program.model_proto


def _add_io(proto: onnx.ModelProto, path: Path, shape: tuple[int, ...], options: ExportOptions,
            verbose: bool) -> None:
    """Rewrite ``path`` with in-graph I/O processing (:mod:`._io`), verified against ``proto``."""
    processed = apply_io(proto, options.io_layout, options.output, mean=options.mean,
                         std=options.std)
    save_model_atomic(processed, path)
    if options.verify:
        summary = verify_io(proto, processed, shape)
        if verbose:
            print(f"  in-graph I/O: {summary}")


def _torch_onnx_export(exported: Any, in_names: list[str], out_names: list[str], opset: int,
                       kinds: set[str]) -> Any:
    """``torch.onnx.export`` of the exported program, the layers left as placeholders."""
    try:
        program = torch.onnx.export(
            exported,
            (),
            dynamo=True,
            input_names=in_names,
            output_names=out_names,
            opset_version=opset,
            custom_translation_table=_translations(kinds),
            optimize=True,
            verbose=False,
            external_data=False,
        )
    except Exception as err:
        raise ExportError(f"torch.onnx.export failed: {_summary(err)}") from err
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ExportError("torch.onnx.export returned no program")
    return program


def _summary(err: BaseException) -> str:
    """The useful part of an exporter error: its exception summary when it has one."""
    text = str(err)
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1].split("(Refer to the full stack", 1)[0]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and ln.strip() != "⬆️"]
    return " | ".join(lines[-6:]) if lines else type(err).__name__


def _set_metadata(model: onnx.ModelProto, entries: dict[str, str]) -> None:
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
