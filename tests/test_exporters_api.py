"""The public surface of exporters.pytorch, and its import without torch."""

from __future__ import annotations

import subprocess
import sys

import exporters.pytorch as ep
import pixeldcn_core as pc

BLOCK_TORCH = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
try:
    import exporters.pytorch
except ImportError as err:
    print(err)
else:
    print("imported")
"""


def test_public_names_and_all_agree():
    public = {n for n in dir(ep) if not n.startswith("_")}
    modules = {"cli", "kinds"}  # submodules that are public modules, not API names
    assert set(ep.__all__) <= public
    extra = public - set(ep.__all__) - modules - {"annotations"}
    assert not extra, f"public names missing from __all__: {sorted(extra)}"


def test_the_issue_names_are_exported():
    wanted = {"PixelDCL2d", "IPixelDCL2d", "DCL2d", "ResizeConv2d", "SubPixelConv2d", "UNet", "VAE",
              "convert_deconvs", "export_onnx", "verify", "load_weights", "save_weights", "MODULES",
              "VerificationError", "CheckpointError", "ExportError"}
    assert wanted <= set(ep.__all__)
    assert set(ep.MODULES) == set(pc.layer_kinds())


def test_every_registered_kind_exports_its_module_and_function():
    for kind, cls in ep.MODULES.items():
        fn = ep.FUNCTIONS[kind]
        assert getattr(ep, cls.__name__, None) is cls and cls.__name__ in ep.__all__, kind
        assert getattr(ep, fn.__name__, None) is fn and fn.__name__ in ep.__all__, kind


def test_errors_derive_from_the_core_root():
    assert issubclass(ep.VerificationError, pc.PixelDCNError)
    assert issubclass(ep.CheckpointError, pc.WeightError)
    assert issubclass(ep.ExportError, pc.PixelDCNError)


def test_import_without_torch_says_how_to_install_it():
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'pixeldcn[torch]'" in out.stdout


def test_core_still_imports_without_torch_after_the_exporter_exists():
    code = BLOCK_TORCH.replace("import exporters.pytorch", "import pixeldcn_core")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "imported", out.stderr
