"""PyTorch modules of the built-in layer kinds, one module each.

Each module holds a kind's functional form and its :class:`~exporters.pytorch.UpsampleLayer`
subclass, registered with the :func:`~exporters.pytorch.register_module` decorator. Importing this
package imports every module in it (sorted by name, ``_``-prefixed helpers skipped), so a new
kind's module is a new file here.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
