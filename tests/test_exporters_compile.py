"""The modules survive torch.compile: same outputs and gradients as eager (float32, exact to
1e-6 relative, since the compiled graph runs the same kernels on CPU)."""

from __future__ import annotations

import pytest
import torch

import pixeldcn_core as pc
from exporters.pytorch import UNet, make_layer

from .conftest import fit_channels, fit_hw

# Raised inside torch itself on every compile; nothing to act on here.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")


def _grads(layer):
    return [p.grad.clone() for p in layer.parameters()]


@pytest.mark.parametrize("kind", pc.layer_kinds())
def test_aot_eager_compiled_layer_matches_eager_forward_and_backward_at_two_sizes(kind):
    torch.manual_seed(0)
    cin, c = fit_channels(kind, 4, 3)
    layer = make_layer(kind, cin, c, bias=True)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True, dynamic=True)
    for n, h, w in [(2, 6, 7), (1, 5, 8)]:
        x = torch.randn(n, cin, *fit_hw(kind, h, w))
        layer.zero_grad()
        y = layer(x)
        y.square().sum().backward()
        want = _grads(layer)
        layer.zero_grad()
        yc = compiled(x)
        yc.square().sum().backward()
        torch.testing.assert_close(yc, y, rtol=1e-6, atol=1e-6)
        for g, w in zip(_grads(layer), want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_eager_backend_compiles_a_whole_unet_without_graph_breaks():
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=3, up="pixel_dcl").eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_inductor_compiled_pixel_dcl_matches_eager():
    # ~16 s on 2 CPU cores with a cold inductor cache (C++ code generation), ~2 s warm.
    torch.manual_seed(0)
    layer = make_layer("pixel_dcl", 4, 3, bias=True)
    x = torch.randn(2, 4, 6, 7)
    compiled = torch.compile(layer, backend="inductor", fullgraph=True, dynamic=False)
    y = compiled(x)
    y.sum().backward()
    torch.testing.assert_close(y, layer(x), rtol=1e-5, atol=1e-5)
    assert layer.conv3.weight.grad is not None
