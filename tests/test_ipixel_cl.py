"""iPixelCL (``ipixel_cl``): what the shared registry-driven matrices do not say about it.

The parity matrices (tests/test_core_parity.py, tests/test_exporters_layers.py, ...) already run
it in every form, kernel, interleave and dtype against ``pixeldcn_core.reference.ipixel_cl``.
Here: that reference against a second, independent transcription of the issue's definition (a
pixel-by-pixel loop, float64, to 1e-12 of the output scale); TF 'SAME' stride-2 padding;
odd sizes refused everywhere; the size-keeping kind refused by every x2 consumer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pixeldcn_core as pc
from exporters.pytorch import (
    VAE,
    DeepLabResNet,
    IPixelCL2d,
    UNet,
    convert_deconvs,
    export_onnx,
    make_layer,
)
from pixeldcn_core import reference as R

from .conftest import run_onnx


def loop_ipixel_cl(x, w1, w2, w3, w4):
    """The issue's definition, one output pixel at a time (no shared helper with the reference)."""
    n, _, h, w = x.shape
    c, _, k, _ = w1.shape
    pad = max(k - 2, 0) // 2  # TF 'SAME', stride 2, even size: begin = floor((k - 2) / 2)

    def at(m, i, j):  # zero outside
        return m[:, :, i, j] if 0 <= i < h and 0 <= j < w else np.zeros(m.shape[:2])

    def shifted(a, b):
        out = np.zeros_like(x)
        for i in range(h):
            for j in range(w):
                out[:, :, i, j] = at(x, i + a, j + b)
        return out

    def conv_s2_placed(z, wt, a, b):  # place(conv_s2(z, wt), a, b)
        out = np.zeros((n, c, h, w))
        for i in range(h // 2):
            for j in range(w // 2):
                acc = np.zeros((n, c))
                for r in range(k):
                    for s in range(k):
                        acc += at(z, 2 * i + r - pad, 2 * j + s - pad) @ wt[:, :, r, s].T
                out[:, :, 2 * i + a, 2 * j + b] = acc
        return out

    d1 = conv_s2_placed(x, w1, 0, 0)
    d2 = conv_s2_placed(np.concatenate([shifted(1, 1), d1], 1), w2, 1, 1)
    s = d1 + d2
    d3 = conv_s2_placed(np.concatenate([shifted(1, 0), s], 1), w3, 1, 0)
    d4 = conv_s2_placed(np.concatenate([shifted(0, 1), s], 1), w4, 0, 1)
    return d1 + d2 + d3 + d4


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_reference_equals_a_pixel_loop_of_the_definition(k):
    w = pc.LayerSpec("ipixel_cl", 2, 3, k).random_weights(seed=k)
    x = np.random.default_rng(k).standard_normal((2, 2, 6, 4))
    y = R.ipixel_cl(x, **w)
    ref = loop_ipixel_cl(x, *(w[f"w{i}"].astype(np.float64) for i in range(1, 5)))
    assert y.shape == (2, 3, 6, 4)
    assert np.abs(y - ref).max() <= 1e-12 * np.abs(ref).max()


def test_same_padding_is_tensorflows_for_stride_2():
    # TF: total = max((ceil(H / 2) - 1) * 2 + k - H, 0), begin = total // 2; for even H: k - 2.
    assert [R.same_padding_s2(k) for k in (1, 2, 3, 4, 5, 6)] == [
        (0, 0), (0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]


def test_spec_says_it_keeps_the_size_and_needs_even_sizes():
    info = pc.get_kind("iPixelCL")
    assert (info.name, info.scale, info.size_multiple) == ("ipixel_cl", 1, 2)
    assert pc.LayerSpec("ipixel_cl", 8, 4).weight_shapes() == {
        "w1": (4, 8, 3, 3), "w2": (4, 12, 3, 3), "w3": (4, 12, 3, 3), "w4": (4, 12, 3, 3)}


def test_odd_sizes_are_refused_by_the_reference_the_module_and_the_onnx_model():
    w = pc.LayerSpec("ipixel_cl", 2, 3).random_weights(seed=0)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 6)).astype(np.float32)
    with pytest.raises(pc.InputShapeError, match=r"ipixel_cl: H and W must be even, got H x W = 5 x 6"):
        R.ipixel_cl(x, **w)
    with pytest.raises(pc.InputShapeError, match=r"H and W must be even, got H x W = 5 x 6"):
        IPixelCL2d.from_onnx_weights(w)(torch.from_numpy(x))
    for form in ("efficient", "faithful"):
        model = pc.build_layer_model("ipixel_cl", w, form=form)
        with pytest.raises(Exception, match=r"Reshape|Concat|dimension"):
            run_onnx(model, {"x": x})  # an error, never a silently smaller output


@pytest.mark.parametrize("build", [
    lambda: UNet(3, 2, base_channels=4, depth=2, up="ipixel_cl"),
    lambda: VAE(16, 4, up="ipixel_cl"),
    lambda: DeepLabResNet(up="ipixel_cl", base_width=2, blocks=(1, 1, 1, 1)),
], ids=["unet", "vae", "deeplab"])
def test_networks_of_x2_blocks_refuse_it(build):
    with pytest.raises(pc.SpecError, match=r"up='ipixel_cl' maps H x W to H x W \(it keeps the "
                       r"size\), while the network's blocks need an x2 up-sampling layer"):
        build()


def test_convert_deconvs_refuses_it_and_leaves_the_model_alone():
    model = nn.Sequential(nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1))
    expected = r"kind .ipixel_cl. has scale 1 \(x1 output\), so it cannot replace an x2"
    with pytest.raises(pc.SpecError, match=expected):
        convert_deconvs(model, "ipixel_cl")
    assert isinstance(model[0], nn.ConvTranspose2d)


def test_inside_a_network_it_exports_and_keeps_the_size(tmp_path):
    # conv -> iPixelCL (+ BatchNorm, folded into it) -> ReLU: export, verify, size kept.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), make_layer("ipixel_cl", 4, 5),
                          nn.BatchNorm2d(5), nn.ReLU()).eval()
    with torch.no_grad():
        model[2].running_var.uniform_(0.5, 2.0)
        model[2].weight.uniform_(0.5, 2.0)
    path = export_onnx(model, tmp_path / "m.onnx", (1, 3, 8, 12))  # verifies at 8 x 12
    import onnx

    proto = onnx.load(str(path))
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 10)).astype(np.float32)
    (y,) = run_onnx(proto, {"x": x})
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert y.shape == (2, 5, 6, 10)
    np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-5)


def test_pixeldcn_layer_refuses_an_odd_size_with_exit_code_2(capsys):
    from pixeldcn_core.cli import main

    assert main(["layer", "--kind", "ipixel_cl", "--size", "7", "8"]) == 2
    assert "--size: got 7 8, while ipixel_cl needs positive multiples of 2" in capsys.readouterr().err
    assert main(["layer", "--kind", "ipixel_cl", "--size", "6", "8", "--form", "faithful"]) == 0
    assert "y (2, 8, 6, 8)" in capsys.readouterr().out
