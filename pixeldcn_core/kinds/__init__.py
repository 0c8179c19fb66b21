"""The built-in layer kinds, one module each.

Each module of this package describes one kind completely: its ONNX emitters, how an affine map
folds into it, and its :class:`~pixeldcn_core.KindInfo`, registered with
:func:`~pixeldcn_core.register_kind` when the module is imported. Its numpy reference lives in
:mod:`pixeldcn_core.reference`, the oracle every form is checked against. Importing this package
imports every module in it (sorted by name, ``_``-prefixed helpers skipped), so a new built-in
kind is a new file here: no list elsewhere names it.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
