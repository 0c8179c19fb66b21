"""DeepLab-ResNet in the benchmarks: its bench-network entry and its MAC breakdown.

Timing DeepLab-ResNet-101 takes minutes per variant, so the tests check the plan and the MAC
count, not a run (the run's command and results are in benchmarks/README.md).
"""

from __future__ import annotations

import pytest
import torch

import pixeldcn_core as pc
from benchmarks import deeplab, network
from exporters.pytorch import DeepLabResNet
from pixeldcn_core.cli import main

TINY = {"base_width": 8, "blocks": (1, 1, 1, 1), "aspp_channels": 16, "decoder_channels": (16, 8)}


def test_deeplab_is_a_bench_network_entry_timed_only_when_named():
    entry = network.NETWORKS["deeplab"]
    assert entry.full["size"] == 512 and entry.quick["size"] == 256
    assert entry.full["depth"] == entry.quick["depth"] == 101
    assert entry.size_multiple(entry.full) == 8
    assert not entry.by_default and network.NETWORKS["unet"].by_default
    model = entry.build("pixel_dcl", 3, {**entry.quick, "base_width": 2})
    assert isinstance(model, DeepLabResNet) and not model.training
    assert [b.up[0].kind for b in model.decoder] == ["pixel_dcl"] * 3


def test_a_size_that_is_not_a_multiple_of_8_is_a_usage_error(tmp_path, capsys):
    rc = main(["bench", "network", "--networks", "deeplab", "--size", "300", "--out",
               str(tmp_path)])
    assert rc == 2
    assert "--size must be a multiple of 8 for this DeepLab-ResNet-101" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["dcl", "pixel_dcl", "ipixel_dcl"])
def test_mac_breakdown_counts_every_conv_once_and_the_layers_useful_macs(kind):
    torch.manual_seed(0)
    model = DeepLabResNet(3, 5, up=kind, **TINY).eval()
    h = w = 32
    macs = deeplab.mac_breakdown(model, (1, 3, h, w))
    # the three up-sampling layers: C -> C at 1/8, 1/4, 1/2 of the input
    expected_up = sum(pc.LayerSpec(kind, c, c, b.up[0].kernel_size).macs_per_input_pixel()
                      * (h // s) * (w // s)
                      for c, s, b in zip((16, 16, 8), (8, 4, 2), model.decoder, strict=True))
    assert macs["decoder_up"] == expected_up
    # decoder convs: 3x3, 16 -> 16 at 1/4, 16 -> 8 at 1/2, 8 -> 5 at full size
    assert macs["decoder_conv"] == 9 * (16 * 16 * 8 * 8 + 16 * 8 * 16 * 16 + 8 * 5 * 32 * 32)
    # the stem conv alone: 7x7, 3 -> 8, output 16 x 16
    assert macs["backbone"] > 7 * 7 * 3 * 8 * 16 * 16
    assert macs["total"] == sum(v for k, v in macs.items() if k != "total")


def test_decoder_input_shape_is_the_aspp_output():
    model = DeepLabResNet(3, 5, **TINY).eval()
    shape = deeplab.decoder_input_shape(model, 2, 64)
    with torch.no_grad():
        assert tuple(model.aspp(model.backbone(torch.zeros(2, 3, 64, 64))).shape) == shape
