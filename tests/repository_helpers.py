"""Shared by the serverless triton_repo tests (``tests/test_triton_*.py`` without a server): a
seeded PixelDCL model, configs generated the way ``write_repository`` does, a closed port.
"""

from __future__ import annotations

import onnx

import pixeldcn_core as pc
from triton_repo import _config
from triton_repo._onnx_io import read_signature


def layer_model(seed: int = 0, cin: int = 3, cout: int = 2) -> onnx.ModelProto:
    """PixelDCL x [batch, cin, H, W] -> y [batch, cout, 2H, 2W], seeded weights."""
    weights = pc.LayerSpec("pixel_dcl", cin, cout).random_weights(seed=seed)
    return pc.build_layer_model("pixel_dcl", weights)


def generate(flavour: str, options: dict, model: onnx.ModelProto | None = None) -> str:
    signature = read_signature(model or layer_model())
    serving = _config.ServingOptions(**options)
    build = _config.production_config if flavour == "production" else _config.local_config
    return _config.config_to_text(build("unet", signature, serving))


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
