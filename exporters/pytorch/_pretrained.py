"""Trained super-resolution models shipped with the package, loaded by name.

Each model is ``pretrained/<name>.safetensors`` (float32 weights of an :class:`SRNet`) beside a
model card ``pretrained/<name>.json`` (the network config, data, recipe, the command that made
it, and its held-out PSNR/SSIM/checkerboard index) and ``<name>.md`` (the same, for people).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pixeldcn_core import SpecError

from ._errors import CheckpointError
from ._sr import SRNet
from ._weights import load_weights

__all__ = ["PRETRAINED_DIR", "load_pretrained", "pretrained_card", "pretrained_names"]

#: Where the shipped weights and cards live (package data).
PRETRAINED_DIR = Path(__file__).with_name("pretrained")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def pretrained_names() -> tuple[str, ...]:
    """Names of the shipped models, e.g. ``"sr-x2-pixel_dcl"``."""
    return tuple(sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors")
                        if p.with_suffix(".json").is_file()))


def _check_name(name: Any) -> str:
    names = pretrained_names()
    if not isinstance(name, str) or not _NAME.match(name) or name not in names:
        raise SpecError(f"unknown pretrained model {name!r}; expected one of "
                        f"{', '.join(names) or '(none shipped)'}")
    return name


def pretrained_card(name: str) -> dict[str, Any]:
    """The model card of ``name`` (JSON): config, data, recipe, command, held-out metrics.

    Raises:
        SpecError: ``name`` is not a shipped model (the valid names are listed).
    """
    path = PRETRAINED_DIR / f"{_check_name(name)}.json"
    card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return card


def load_pretrained(name: str) -> SRNet:
    """The shipped model ``name`` with its trained weights, in eval mode.

    Raises:
        SpecError: ``name`` is not a shipped model.
        CheckpointError: the weights file does not match its card's SHA-256 or the network.
    """
    card = pretrained_card(name)
    path = PRETRAINED_DIR / f"{name}.safetensors"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if card.get("sha256") and digest != card["sha256"]:
        raise CheckpointError(f"{path.name}: SHA-256 {digest[:12]}... does not match its card's "
                              f"{card['sha256'][:12]}...")
    model = SRNet(**card["config"])
    load_weights(model, path)
    return model.eval()
