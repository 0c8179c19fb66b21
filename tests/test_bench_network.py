"""``pixeldcn bench network --quick``: every U-Net variant in both runtimes, ratios from one run."""

from __future__ import annotations

import json

import pytest

from benchmarks import network
from pixeldcn_core import get_kind, layer_kinds
from pixeldcn_core.cli import main

pytest.importorskip("torch")
pytest.importorskip("exporters.pytorch")

# Five U-Net exports: about 30 s on 2 cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("bench-network")
    # Export verification is the exporters' own tests' job; here it would only add time.
    rc = main(["bench", "network", "--quick", "--no-verify", "--no-progress", "--out", str(out)])
    assert rc == 0
    return out, json.loads((out / "network.json").read_text())


def test_quick_run_writes_json_markdown_and_plot(quick_run):
    out, res = quick_run
    assert (out / "network.md").read_text().startswith("# Networks with each up-sampling layer")
    assert "largest interm. / peak MiB" in (out / "network.md").read_text()
    assert (out / "network_ratio.png").read_bytes()[:4] == b"\x89PNG"
    assert res["machine"]["packages"]["torch"]
    assert res["settings"]["networks"]["unet"]["input_shape"] == [1, 3, 32, 32]
    assert res["format_version"] == 2


def test_every_kind_is_timed_in_onnxruntime_and_in_torch(quick_run):
    _, res = quick_run
    expected = {v.name for v in network.network_variants(quick=True)}
    kinds = [get_kind(k) for k in layer_kinds() if get_kind(k).scale == 2]  # networks need x2
    plain = {f"{k.name}_k{k.default_kernel}" for k in kinds if k.name != "dcl"} | {"dcl_k6"}
    # the core's other interleave, for every kind whose registry entry says it interleaves
    concat = {f"{k.name}_k{k.default_kernel}_concat" for k in kinds if k.interleaves}
    assert {"pixel_dcl_k3_concat", "ipixel_dcl_k3_concat"} <= concat
    assert plain | concat == expected
    assert {r["network"] for r in res["rows"]} == {"unet"}
    got = {(r["variant"], r["runtime"]) for r in res["rows"]}
    assert got == {(v, rt) for v in plain for rt in ("onnxruntime-cpu", "torch-cpu")} | {
        (v, "onnxruntime-cpu") for v in concat}


def test_ratios_are_paired_within_each_runtime_and_the_baseline_is_exactly_one(quick_run):
    _, res = quick_run
    n = res["rounds_run"]
    assert n == network.QUICK_POLICY.rounds
    for r in res["rows"]:
        assert r["times_ms"]["n"] == n == r["ratio_to_dcl_k6"]["n"]
        if r["variant"] == "dcl_k6":
            assert r["ratio_to_dcl_k6"]["median"] == 1.0
            assert r["mac_ratio_to_dcl_k6"] == 1.0
        assert r["gmacs"] > 0
        # activation memory from shape inference: a U-Net has intermediates bigger than nothing
        assert r["memory"]["peak_live_bytes"] >= r["memory"]["largest_bytes"] > 0
        if r["runtime"] == "torch-cpu":
            assert r["onnxruntime_cpu_over_this"]["n"] == n


def test_paper_ratios_and_targets_are_reported(quick_run):
    _, res = quick_run
    assert res["paper"] == {"unet": {"dcl": 1.0, "pixel_dcl": 1.28, "ipixel_dcl": 1.56}}
    names = {t["name"]: t for t in res["targets"]}
    assert set(names) == {"unet_pixel_dcl_k3_vs_dcl_k6", "unet_ipixel_dcl_k3_vs_dcl_k6",
                          "unet_pixel_dcl_k3_concat_vs_dcl_k6", "unet_ipixel_dcl_k3_concat_vs_dcl_k6"}
    for t in names.values():
        assert t["status"] in ("PASS", "MISS") and t["measured"] > 0
        assert "up-sampling layers" in t["note"]
    assert 0 < res["up_sampling_mac_share"]["unet"] < 1


def test_size_not_divisible_by_the_pooling_is_a_usage_error(tmp_path, capsys):
    rc = main(["bench", "network", "--quick", "--size", "30", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("pixeldcn bench: error: --size must be a multiple of 4 for this U-Net")
    assert "depth 3" in err and err.rstrip().endswith("got 30") and "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--networks", "vgg"], "--networks: unknown network(s) ['vgg']; expected some of unet"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--kinds", "nope"], "unknown up-sampling layer kind 'nope'"),
])
def test_bad_flags_end_in_one_line_and_exit_code_2(argv, message, tmp_path, capsys):
    assert main(["bench", "network", "--quick", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
