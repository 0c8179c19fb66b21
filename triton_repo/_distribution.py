"""Where the nvidia-pytriton wheel keeps ``tritonserver``, and whether this interpreter can run it.

:func:`find_tritonserver` locates the binary, its bundled libraries and the Python-backend stubs
without importing pytriton; :func:`check_backend_python` fails early when the stub could not run
the local flavour's ``model.py`` with this interpreter (numpy 2, no onnxruntime).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

from ._errors import TRITON_EXTRA_HINT, ServerStartError, TritonNotInstalledError

__all__ = ["TritonDistribution", "check_backend_python", "find_tritonserver"]


class TritonDistribution:
    """Where the wheel keeps the server binary, its libraries and the Python-backend stubs."""

    def __init__(self, root: pathlib.Path, libs: pathlib.Path):
        self.root = root
        self.libs = libs
        self.binary = root / "bin" / "tritonserver"
        self.backends = root / "backends"
        self.caches = root / "caches"

    def stub(self, version: str | None = None) -> pathlib.Path:
        """The Python-backend stub built for Python ``version`` (default: this interpreter)."""
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_tritonserver() -> TritonDistribution:
    """Locate the ``tritonserver`` of the installed nvidia-pytriton wheel, without importing it.

    Raises:
        TritonNotInstalledError: nvidia-pytriton is missing, or lacks the binary or the stub for
            this Python.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalledError(
            "serving locally needs the tritonserver binary shipped in nvidia-pytriton, which is "
            f"not installed; install it with: {TRITON_EXTRA_HINT}"
        )
    package = pathlib.Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    libs = package.parent / "nvidia_pytriton.libs"
    if not libs.is_dir():  # editable install of pytriton
        libs = root / "external_libs"
    dist = TritonDistribution(root, libs)
    if not dist.binary.is_file():
        raise TritonNotInstalledError(
            f"nvidia-pytriton is installed but has no tritonserver binary under {root}; "
            f"reinstall it with: {TRITON_EXTRA_HINT}"
        )
    if not dist.stub().is_file():
        raise TritonNotInstalledError(
            f"nvidia-pytriton has no Python-backend stub for Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; use a Python it supports "
            f"({', '.join(sorted(p.name for p in (root / 'python_backend_stubs').iterdir()))})"
        )
    return dist


def check_backend_python() -> None:
    """Fail early when this interpreter cannot run the local flavour's ``model.py``.

    The Python-backend stub imports numpy and onnxruntime from this interpreter's environment;
    the stub of Triton 2.51 answers valid requests with HTTP 500 under numpy 2.
    """
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise ServerStartError(
            f"the Python-backend stub of the bundled tritonserver needs numpy < 2, found "
            f"{numpy.__version__} in {sys.prefix}; install it with: pip install 'numpy<2'"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        raise ServerStartError(
            f"the local flavour runs model.onnx with onnxruntime, which is not installed in "
            f"{sys.prefix}; install it with: pip install 'pixeldcn[cpu]'"
        )
