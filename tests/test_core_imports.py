"""pixeldcn_core is framework-agnostic: it imports with torch and tritonclient blocked."""

from __future__ import annotations

import subprocess
import sys

import pixeldcn_core

BLOCKER = r"""
import importlib.abc, sys
BLOCKED = ("torch", "tritonclient", "onnxruntime", "exporters", "triton_repo", "benchmarks")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
import numpy as np
import pixeldcn_core as pc
from pixeldcn_core import reference
spec = pc.LayerSpec("pixel_dcl", 2, 2)
w = spec.random_weights(0)
m = pc.build_layer_model("pixel_dcl", w)
y = reference.pixel_dcl(np.ones((1, 2, 3, 3)), **w)
assert y.shape == (1, 2, 6, 6)
loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("ok")
"""


def test_core_imports_and_builds_with_torch_tritonclient_and_onnxruntime_blocked():
    out = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_public_names_and_all_agree():
    public = {n for n in dir(pixeldcn_core) if not n.startswith("_")}
    # submodules that are public modules, not API names
    modules = {"reference", "cli", "cli_layer", "images", "kinds"}
    exported = set(pixeldcn_core.__all__)
    assert exported - {"__version__"} <= public
    extra = public - exported - modules
    assert not extra, f"public names missing from __all__: {sorted(extra)}"
