"""pixeldcn_core: framework-agnostic specs, numpy reference and ONNX builder of up-sampling layers.

Depends on numpy and onnx only; never on torch or tritonclient.
"""

from . import (
    io,
    kinds,  # noqa: F401  (registers the built-in kinds, one module each)
    reference,
)
from ._builder import DTYPES, GraphBuilder, check_dtype
from ._emit import check_form, emit_layer
from ._errors import InputShapeError, PixelDCNError, SpecError, UnknownKindError, WeightError
from ._fold import batchnorm_affine, fold_affine
from ._io_graph import (
    INPUT_LAYOUTS,
    OUTPUTS,
    add_postprocessing,
    add_preprocessing,
    io_options,
    mask_dtype,
    postprocess,
    preprocess,
)
from ._model import build_layer_model
from ._opsets import DEFAULT_OPSET, SUPPORTED_OPSETS, check_opset, ir_version_for
from ._specs import (
    FORMS,
    KINDS,
    Emitter,
    KindInfo,
    LayerSpec,
    get_kind,
    layer_kinds,
    register_kind,
    registered_kind,
    unregister_kind,
)
from ._targets import (
    CONSUMER_ALIASES,
    CONSUMERS,
    DEFAULT_TARGET,
    INTERLEAVES,
    TARGETS,
    Target,
    check_interleave,
    consumer_name,
    get_target,
    intersection,
    resolve_target,
)
from ._version import __version__
from .kinds.pixel_dcl import pixel_dcl_phase_taps
from .quality import checkerboard_index, checkerboard_map, overlap_map

__all__ = [
    # layer kinds and specs
    "FORMS",
    "KINDS",
    "Emitter",
    "KindInfo",
    "LayerSpec",
    "get_kind",
    "layer_kinds",
    "register_kind",
    "registered_kind",
    "unregister_kind",
    # folding a per-channel affine map (BatchNorm) into a layer
    "batchnorm_affine",
    "fold_affine",
    # in-graph pre- and post-processing (uint8 images in, masks out)
    "INPUT_LAYOUTS",
    "OUTPUTS",
    "add_postprocessing",
    "add_preprocessing",
    "io_options",
    "mask_dtype",
    "postprocess",
    "preprocess",
    # numpy reference
    "reference",
    # shared file and process helpers
    "io",
    # up-sampling quality
    "quality",
    "checkerboard_index",
    "checkerboard_map",
    "overlap_map",
    # ONNX
    "DEFAULT_OPSET",
    "DTYPES",
    "SUPPORTED_OPSETS",
    "GraphBuilder",
    "INTERLEAVES",
    "build_layer_model",
    "check_dtype",
    "check_form",
    "check_interleave",
    "check_opset",
    "emit_layer",
    "ir_version_for",
    "pixel_dcl_phase_taps",
    # export targets (forms each ONNX consumer supports)
    "CONSUMERS",
    "CONSUMER_ALIASES",
    "DEFAULT_TARGET",
    "TARGETS",
    "Target",
    "consumer_name",
    "get_target",
    "intersection",
    "resolve_target",
    # errors
    "InputShapeError",
    "PixelDCNError",
    "SpecError",
    "UnknownKindError",
    "WeightError",
    "__version__",
]
