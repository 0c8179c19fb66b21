"""Shared test helpers: tolerances per dtype, seeded inputs, onnxruntime runs, a small ONNX export."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

# Parity tolerances, relative to the output's scale (max |y_ref|), per model dtype.
# Measured worst cases (closing note of the core issue): float32 ~5e-7, float16 ~6e-4.
REL_TOL = {"float32": 1e-5, "float16": 5e-3}


def fit_hw(kind: str, h: int, w: int) -> tuple[int, int]:
    """H, W rounded up to the kind's ``size_multiple`` (iPixelCL needs even sizes; others: as is)."""
    import pixeldcn_core as pc

    m = pc.get_kind(kind).size_multiple
    return -(-h // m) * m, -(-w // m) * m


def fit_channels(kind: str, cin: int, c: int) -> tuple[int, int]:
    """(Cin, C) made to fit the kind's channel rule (``KindInfo.in_per_out``): Cin rounded up to a
    multiple of it and C derived (bilinear keeps the channels, bilinear-additive divides by 4);
    kinds whose C is free keep both."""
    import pixeldcn_core as pc

    r = pc.get_kind(kind).in_per_out
    if r is None:
        return cin, c
    cin = -(-cin // r) * r
    return cin, cin // r


def fit_kernels(kind: str, wanted) -> list[int]:
    """The kernel sizes of ``wanted`` the kind accepts, or its default when none is (a kind with
    no kernel to choose accepts only 1)."""
    import pixeldcn_core as pc

    info = pc.get_kind(kind)
    top = info.max_kernel if info.max_kernel is not None else max(wanted)
    ks = [k for k in wanted
          if info.min_kernel <= k <= top and (not info.odd_kernel or k % 2)]
    return ks or [info.default_kernel]


def run_onnx(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_close_to_reference(y: np.ndarray, ref: np.ndarray, dtype: str) -> None:
    """|y - ref| <= REL_TOL[dtype] * max|ref| everywhere, with a message giving the numbers."""
    assert y.shape == ref.shape, f"shape {y.shape} != reference {ref.shape}"
    scale = float(np.abs(ref).max()) or 1.0
    err = float(np.abs(y.astype(np.float64) - ref).max())
    assert np.all(np.isfinite(y)), "output holds NaN/Inf"
    assert err <= REL_TOL[dtype] * scale, (
        f"max |y - ref| = {err:.3e} > {REL_TOL[dtype]:g} * {scale:.3e} ({dtype})"
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def onnx_path(tmp_path: pathlib.Path) -> pathlib.Path:
    """A seeded PixelDCL export (``repository_helpers.layer_model()``) at ``export/model.onnx``."""
    import onnx

    from .repository_helpers import layer_model

    path = tmp_path / "export" / "model.onnx"
    path.parent.mkdir()
    onnx.save(layer_model(), path)
    return path
