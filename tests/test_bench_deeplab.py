"""DeepLab-ResNet in the benchmarks: its bench-network entry, `bench decoder` and the MAC breakdown.

Timing DeepLab-ResNet-101 takes minutes per variant, so the tests check the plan, the MAC count
and a run of `bench decoder` on a tiny ResNet-50 (the real run's command and results are in
benchmarks/README.md).
"""

from __future__ import annotations

import pytest
import torch

import pixeldcn_core as pc
from benchmarks import decoder, load_result, network, write_report
from benchmarks._timing import RoundPolicy
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
    macs = decoder.mac_breakdown(model, (1, 3, h, w))
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
    shape = decoder.decoder_input_shape(model, 2, 64)
    with torch.no_grad():
        assert tuple(model.aspp(model.backbone(torch.zeros(2, 3, 64, 64))).shape) == shape


def test_bench_decoder_refuses_a_size_that_is_not_a_multiple_of_8(tmp_path, capsys):
    rc = main(["bench", "decoder", "--size", "300", "--out", str(tmp_path)])
    assert rc == 2
    assert "--size must be a multiple of 8, got 300" in capsys.readouterr().err


def test_bench_decoder_plans_the_baseline_and_each_kinds_default():
    import argparse

    args = argparse.Namespace(quick=True, depth=50, size=None, kinds="pixel_dcl", whole_from=None,
                              command_line="pixeldcn bench decoder", rounds=None, warmup=None,
                              budget=None, min_rounds=None, threads=1, seed=0)
    s = decoder.BENCHMARK.plan(args)
    assert [name for _, _, name in s.variants] == ["dcl_k6", "pixel_dcl_k3"]
    assert s.dims["size"] == network.NETWORKS["deeplab"].quick["size"] and s.dims["depth"] == 50


@pytest.mark.slow
def test_bench_decoder_runs_through_the_protocol_and_its_report_renders_again(tmp_path):
    # a tiny ResNet (one block per stage, base width 4) at 32 x 32: the whole path,
    # plan -> run -> Result -> report
    s = decoder.DecoderSettings(
        "test", True, {"size": 32, "depth": 50, "base_width": 4, "classes": 3, "blocks": (1, 1, 1, 1)},
        (("dcl", 6, "dcl_k6"), ("pixel_dcl", 3, "pixel_dcl_k3")), RoundPolicy(2, 0, None, 2),
        threads=1)
    result = decoder.BENCHMARK.run(s, progress=False)
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"dcl_k6", "pixel_dcl_k3"} and all(r["paired"] for r in rows.values())
    for r in rows.values():
        assert 0 < r["up_mac_share"] < r["decoder_mac_share"] < 1
        assert r["decoder_time_share"]["median"] > 0 and r["decoder_ms"]["n"] == 2
    paths = write_report(decoder.BENCHMARK, result, tmp_path, plots=False)
    assert [p.name for p in paths] == ["decoder.json", "decoder.md"]
    again = load_result(tmp_path / "decoder.json")
    assert decoder.BENCHMARK.markdown(again) + "\n" == (tmp_path / "decoder.md").read_text()
    assert "| pixel_dcl_k3 |" in (tmp_path / "decoder.md").read_text()
