"""``pixeldcn bench layers --quick``: the report's structure and arithmetic, never its speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import BenchmarkUsageError, layers
from benchmarks._graphs import PIXEL_DCL_VARIANTS, pixel_dcl_variant_model, plain_conv_channels
from benchmarks._ort import parse_providers
from benchmarks._report import Target
from benchmarks._stats import paired_ratio, summarize
from benchmarks._timing import RoundPolicy, run_interleaved
from pixeldcn_core import KINDS, LayerSpec, PixelDCNError, reference
from pixeldcn_core.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench-layers")
    rc = main(["bench", "layers", "--quick", "--variants", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out, json.loads((out / "layers.json").read_text())


def _variant(cfg: dict, name: str) -> dict:
    return next(v for v in cfg["variants"] if v["name"] == name)


# -- the report ----------------------------------------------------------------------------------


def test_quick_run_writes_json_markdown_and_png_plots(quick_run):
    out, _ = quick_run
    assert (out / "layers.md").read_text().startswith("# Up-sampling layers")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["layers_gflops_cpu.png", "layers_ratio_cpu.png"]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_json_records_machine_and_settings(quick_run):
    _, res = quick_run
    m = res["machine"]
    for key in ("timestamp", "cpu_model", "physical_cores", "os", "python", "packages"):
        assert m[key], key
    for pkg in ("numpy", "onnxruntime"):
        assert pkg in m["packages"]
    s = res["settings"]
    assert s["quick"] is True
    assert s["command"].startswith("pixeldcn bench layers") and "--quick" in s["command"]
    assert s["policy"]["rounds"] == layers.QUICK_POLICY.rounds
    assert s["providers"][0] == "cpu"


def test_every_registered_kind_and_form_is_timed_in_every_config(quick_run):
    _, res = quick_run
    expected = {v.name for v in layers.layer_variants()}
    assert {"dcl_k3", "dcl_k4", "dcl_k6", "pixel_dcl_k3", "pixel_dcl_k3_faithful",
            "ipixel_dcl_k3", "ipixel_dcl_k3_faithful"} <= expected
    for kind, info in KINDS.items():
        assert {v.form for v in layers.layer_variants() if v.kind == kind} == set(info.forms)
    # the efficient form of every kind the registry says interleaves, also with "concat"
    concat = {v.name for v in layers.layer_variants() if v.interleave == "concat"}
    assert concat == {f"{k}_k{i.default_kernel}_concat" for k, i in KINDS.items() if i.interleaves}
    assert {"pixel_dcl_k3_concat", "ipixel_dcl_k3_concat", "resize_conv_k3_concat"} <= concat
    assert len(res["configs"]) == len(layers.configs(quick=True))
    for cfg in res["configs"]:
        got = {v["name"] for v in cfg["variants"] if v["role"] == "layer"}
        assert got == expected, cfg["label"]


def test_baseline_ratio_is_exactly_one_and_ratios_come_from_the_same_rounds(quick_run):
    _, res = quick_run
    for cfg in res["configs"]:
        base = _variant(cfg, "dcl_k6")["ratio_to_dcl_k6"]
        assert base == {"median": 1.0, "p25": 1.0, "p75": 1.0, "n": cfg["rounds_run"]}
        for v in cfg["variants"]:
            # one timing per round for everything, ratios over the same rounds
            assert v["times_ms"]["n"] == cfg["rounds_run"] == v["ratio_to_dcl_k6"]["n"]
            t = v["times_ms"]
            assert 0 < t["min"] <= t["median"] <= t["p90"] <= t["p99"] <= t["max"]
            assert v["ratio_to_dcl_k6"]["p25"] <= v["ratio_to_dcl_k6"]["median"] \
                <= v["ratio_to_dcl_k6"]["p75"]


def test_useful_flops_follow_the_registry_and_the_plain_conv_matches_them(quick_run):
    _, res = quick_run
    for cfg in res["configs"]:
        pixels = cfg["batch"] * cfg["size"] ** 2
        convs = {v["name"]: v for v in cfg["variants"] if v["role"] == "plain_conv"}
        for v in (v for v in cfg["variants"] if v["role"] == "layer"):
            # cfg's channels, or Cin = r x C for a kind whose C follows Cin (every output alike)
            r = KINDS[v["kind"]].in_per_out
            cin = cfg["in_channels"] if r is None else r * cfg["out_channels"]
            assert (v["in_channels"], v["out_channels"]) == (cin, cfg["out_channels"])
            spec = LayerSpec(v["kind"], cin, cfg["out_channels"], v["k"])
            assert v["useful_flops"] == 2 * spec.macs_per_input_pixel() * pixels
            assert v["gflops_per_s"] == pytest.approx(
                v["useful_flops"] / 1e9 / (v["times_ms"]["median"] / 1e3))
            conv = convs[v["plain_conv"]]
            assert conv["out_channels"] == plain_conv_channels(spec)
            # the conv's MACs match the layer's to within half an output channel
            per_channel = 2 * 9 * cin * pixels
            assert abs(conv["useful_flops"] - v["useful_flops"]) <= per_channel / 2 + 1e-9
            assert v["fraction_of_plain_conv"]["n"] == cfg["rounds_run"]


def test_breakdown_and_graph_variants_are_recorded_for_batch_1(quick_run):
    _, res = quick_run
    for cfg in res["configs"]:
        nodes = [v for v in cfg["variants"] if v["role"] == "node"]
        gvs = {v["variant"] for v in cfg["variants"] if v["role"] == "graph_variant"}
        if cfg["role"] == "decoder" and cfg["batch"] == 1:
            assert gvs == set(PIXEL_DCL_VARIANTS) - {"core"}
            assert all(v["ratio_to_core"]["n"] == cfg["rounds_run"]
                       for v in cfg["variants"] if v["role"] == "graph_variant")
            assert {v["of"] for v in nodes} == {"pixel_dcl_k3", "pixel_dcl_k3_concat", "ipixel_dcl_k3"}
            pix = [v for v in nodes if v["of"] == "pixel_dcl_k3"]
            assert [v["op_type"] for v in pix].count("Conv") == 6  # F1, F2, 4 phase convs
            ops = [v["op_type"] for v in nodes if v["of"] == "pixel_dcl_k3_concat"]
            assert ops.count("Conv") == 6 and "DepthToSpace" not in ops and "Reshape" in ops
            assert all("ratio_to_whole" in v for v in nodes)
        else:
            assert not nodes and not gvs


def test_targets_have_a_measured_value_and_a_verdict(quick_run):
    _, res = quick_run
    decoder_b1 = [c for c in res["configs"] if c["role"] == "decoder" and c["batch"] == 1]
    # 3 PixelDCL + 1 iPixelDCL targets, for each interleave of the efficient form
    assert len(res["targets"]) == 2 * 4 * len(decoder_b1)
    assert sum("concat interleave" in t["description"] for t in res["targets"]) == 4 * len(decoder_b1)
    for t in res["targets"]:
        assert t["status"] in ("PASS", "MISS")
        assert isinstance(t["measured"], float)
        if t["unit"] == "x":  # ratio targets say what the useful-FLOP ratio asks for
            assert t["note"].startswith("useful FLOPs ")
        assert Target(**{k: v for k, v in t.items() if k != "status"}).status == t["status"]
    md = (quick_run[0] / "layers.md").read_text()
    assert "## Targets" in md
    assert ("**PASS**" in md) or ("**MISS**" in md)


# -- pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("name", list(PIXEL_DCL_VARIANTS))
def test_pixel_dcl_graph_variant_equals_the_reference(name, k):
    """y = variant(x) == reference.pixel_dcl(x) to 1e-5 of max |y| (float32)."""
    import onnxruntime as ort

    spec = LayerSpec("pixel_dcl", 6, 5, k)
    w = spec.random_weights(3)
    x = np.random.default_rng(4).standard_normal((2, 6, 7, 9)).astype(np.float32)
    model = pixel_dcl_variant_model(name, w)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    ref = reference.pixel_dcl(x, **w)
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_paired_ratio_is_the_median_of_per_round_ratios_not_the_ratio_of_medians():
    # the host halves its speed after round 2: paired ratios stay at 0.5
    a = [1.0, 1.0, 2.0, 2.0, 2.0]
    b = [2.0, 2.0, 4.0, 4.0, 4.0]
    assert paired_ratio(a, b)["median"] == 0.5
    assert paired_ratio(a, a) == {"median": 1.0, "p25": 1.0, "p75": 1.0, "n": 5}
    assert paired_ratio(a, b, scale=2.0)["median"] == 1.0
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_ratio([1.0], [1.0, 2.0])


def test_summarize_reports_milliseconds_percentiles_and_count():
    s = summarize([0.001 * i for i in range(1, 101)])
    assert s["n"] == 100 and s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(100.0)
    assert s["median"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)


def test_run_interleaved_times_every_variant_once_per_round_and_stops_at_the_budget():
    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    times = run_interleaved(fns, RoundPolicy(4, 1), progress=False)
    assert {n: len(t) for n, t in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert len(calls) == 15  # 1 warm-up round + 4 timed
    for r in range(5):  # every round runs each variant once, in some order
        assert sorted(calls[3 * r:3 * r + 3]) == ["a", "b", "c"]
    import time

    slow = {"s": lambda: time.sleep(0.02)}
    t = run_interleaved(slow, RoundPolicy(100, 0, budget_s=0.05, min_rounds=3), progress=False)
    assert 3 <= len(t["s"]) < 10


def test_round_policy_refuses_zero_rounds():
    with pytest.raises(BenchmarkUsageError, match="--rounds must be >= 1, got 0"):
        RoundPolicy(0, 1)


def test_parse_providers_normalises_aliases_and_names_the_valid_ones():
    assert parse_providers("cpu, trt,gpu") == ["cpu", "tensorrt", "cuda"]
    assert parse_providers("auto") == ["cpu", "cuda", "tensorrt"]
    with pytest.raises(PixelDCNError, match=r"unknown provider 'rocm'; expected .*cpu, cuda, tensorrt"):
        parse_providers("cpu,rocm")


def test_requesting_an_unavailable_gpu_provider_fails_with_the_reason(tmp_path, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    rc = main(["bench", "layers", "--quick", "--providers", "cuda", "--out", str(tmp_path)])
    assert rc == 1
    assert "cuda: CUDAExecutionProvider is not in this onnxruntime build" in capsys.readouterr().err


def test_unknown_kind_is_an_error_listing_the_registered_kinds(tmp_path, capsys):
    rc = main(["bench", "layers", "--quick", "--kinds", "pixel,dcl", "--out", str(tmp_path)])
    assert rc == 2
    assert "unknown up-sampling layer kind 'pixel'" in capsys.readouterr().err


BLOCKED_RUN = r"""
import importlib.abc, sys
BLOCKED = ("torch", "tritonclient", "exporters", "triton_repo", "matplotlib")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
from pixeldcn_core.cli import main
rc = main(["bench", "layers", "--quick", "--kinds", "pixel_dcl", "--batches", "1", "--no-vae",
           "--no-plots", "--no-progress", "--out", sys.argv[1]])
loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
assert not loaded, loaded
sys.exit(rc)
"""


def test_bench_layers_runs_with_torch_tritonclient_and_the_other_packages_blocked(tmp_path):
    out = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads((tmp_path / "layers.json").read_text())
    assert {v["name"] for v in res["configs"][0]["variants"] if v["role"] == "layer"} == {
        "dcl_k6", "pixel_dcl_k3", "pixel_dcl_k3_faithful", "pixel_dcl_k3_concat"}


def test_bench_help_lists_the_three_benchmarks(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for name in ("layers", "network", "serve"):
        assert name in text


def test_every_layer_records_graph_macs_and_activation_memory_from_shape_inference(quick_run):
    out, res = quick_run
    for cfg in res["configs"]:
        for v in (v for v in cfg["variants"] if v["role"] == "layer"):
            m = v["memory"]
            side = KINDS[v["kind"]].scale * cfg["size"]
            out_bytes = 4 * cfg["batch"] * cfg["out_channels"] * side**2
            in_bytes = 4 * cfg["batch"] * v["in_channels"] * cfg["size"] ** 2
            assert m["output_bytes"] == out_bytes, v["name"]
            # the input is alive until its last consumer, the output from its producer on
            assert m["peak_live_bytes"] >= max(out_bytes, in_bytes, m["largest_bytes"]), v["name"]
            assert v["graph_gmac"] >= 0  # Conv and ConvTranspose MACs (a Resize has none)
    assert "MACs and activation memory" in (out / "layers.md").read_text()
