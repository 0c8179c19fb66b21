"""pixeldcn_core: framework-agnostic specs, numpy reference and ONNX builder of up-sampling layers.

Depends on numpy and onnx only; never on torch or tritonclient.
"""

__version__ = "0.1.0"

from . import io, reference
from ._builder import DEFAULT_OPSET, DTYPES, SUPPORTED_OPSETS, GraphBuilder
from ._emit import INTERLEAVES, emit_layer, pixel_dcl_phase_taps
from ._errors import InputShapeError, PixelDCNError, SpecError, UnknownKindError, WeightError
from ._model import build_layer_model
from ._specs import FORMS, KINDS, KindInfo, LayerSpec, get_kind, layer_kinds
from .quality import checkerboard_index, checkerboard_map, overlap_map

__all__ = [
    # layer kinds and specs
    "FORMS",
    "KINDS",
    "KindInfo",
    "LayerSpec",
    "get_kind",
    "layer_kinds",
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
    "emit_layer",
    "pixel_dcl_phase_taps",
    # errors
    "InputShapeError",
    "PixelDCNError",
    "SpecError",
    "UnknownKindError",
    "WeightError",
    "__version__",
]
