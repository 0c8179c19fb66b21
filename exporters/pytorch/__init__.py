"""PyTorch modules of every pixeldcn up-sampling layer, networks built with them, and ONNX export.

Train with :class:`PixelDCL2d` & co. (or swap them into an existing network with
:func:`convert_deconvs`), then :func:`export_onnx` writes a standard-op ONNX model in which every
up-sampling layer is the core's efficient form, and :func:`verify` checks it against PyTorch.
"""

from __future__ import annotations

try:
    import onnxscript as _onnxscript  # noqa: F401
    import safetensors as _safetensors  # noqa: F401
    import torch as _torch  # noqa: F401
except ImportError as _err:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"exporters.pytorch needs torch, onnxscript and safetensors ({_err}); "
        "install them with: pip install 'pixeldcn[torch]'"
    ) from _err

from . import kinds  # noqa: F401  (registers every built-in kind's module, one file each)
from ._architectures import (
    ARCHITECTURES,
    Architecture,
    architecture,
    build_network,
    register_architecture,
)
from ._base import UpsampleLayer
from ._convert import ConversionReport, convert_deconvs
from ._deeplab import ASPP, BackboneReport, DeepLabResNet, ResNetBackbone, load_backbone
from ._errors import (
    CheckpointError,
    ExportError,
    ExportOptionsError,
    ExportOptionsKeywordError,
    VerificationError,
)
from ._export import export_onnx
from ._int8 import Int8Report, calibration_inputs, compare_int8, quantize_int8
from ._options import ExportOptions
from ._pretrained import load_pretrained, pretrained_card, pretrained_names
from ._registry import (
    FUNCTIONS,
    MODULES,
    make_layer,
    make_up_layers,
    module_for,
    register_module,
    unregister_module,
)
from ._sr import SRNet
from ._unet import UNet
from ._vae import VAE, VAEDecoder, VAEEncoder
from ._verify import TOLERANCES, OutputCheck, VerificationReport, verify
from ._weights import load_weights, read_checkpoint, save_weights
from .kinds.bilinear import Bilinear2d, bilinear2d
from .kinds.bilinear_additive import BilinearAdditive2d, bilinear_additive2d
from .kinds.bilinear_conv import BilinearConv2d, bilinear_conv2d
from .kinds.carafe import CARAFE2d, carafe2d
from .kinds.dcl import DCL2d, dcl2d
from .kinds.dysample import DySample2d, dysample2d
from .kinds.ipixel_cl import IPixelCL2d, ipixel_cl2d
from .kinds.ipixel_dcl import IPixelDCL2d, ipixel_dcl2d
from .kinds.pixel_dcl import PixelDCL2d, pixel_dcl2d
from .kinds.resize_conv import ResizeConv2d, resize_conv2d
from .kinds.subpixel_conv import SubPixelConv2d, icnr_, subpixel_conv2d

__all__ = [
    # layers (module + function pairs)
    "Bilinear2d",
    "BilinearAdditive2d",
    "BilinearConv2d",
    "CARAFE2d",
    "DCL2d",
    "DySample2d",
    "IPixelCL2d",
    "IPixelDCL2d",
    "PixelDCL2d",
    "ResizeConv2d",
    "SubPixelConv2d",
    "UpsampleLayer",
    "bilinear2d",
    "bilinear_additive2d",
    "bilinear_conv2d",
    "carafe2d",
    "dcl2d",
    "dysample2d",
    "icnr_",
    "ipixel_cl2d",
    "ipixel_dcl2d",
    "pixel_dcl2d",
    "resize_conv2d",
    "subpixel_conv2d",
    # registry
    "FUNCTIONS",
    "MODULES",
    "make_layer",
    "make_up_layers",
    "module_for",
    "register_module",
    "unregister_module",
    # networks
    "ARCHITECTURES",
    "Architecture",
    "architecture",
    "build_network",
    "register_architecture",
    "SRNet",
    "ASPP",
    "DeepLabResNet",
    "ResNetBackbone",
    "UNet",
    "VAE",
    "VAEDecoder",
    "VAEEncoder",
    # plug-and-play
    "ConversionReport",
    "convert_deconvs",
    # export and verification
    "Int8Report",
    "calibration_inputs",
    "compare_int8",
    "quantize_int8",
    "TOLERANCES",
    "OutputCheck",
    "VerificationReport",
    "ExportOptions",
    "export_onnx",
    "verify",
    # weights
    "load_pretrained",
    "pretrained_card",
    "pretrained_names",
    "BackboneReport",
    "load_backbone",
    "load_weights",
    "read_checkpoint",
    "save_weights",
    # errors
    "CheckpointError",
    "ExportError",
    "ExportOptionsError",
    "ExportOptionsKeywordError",
    "VerificationError",
]
