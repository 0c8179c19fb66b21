"""``pixeldcn bench serve``: the measurement logic, and a quick run against the real local Triton."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from benchmarks._load import is_stable, measure_level, stats_delta
from pixeldcn_core.cli import main

# -- pieces, no server ---------------------------------------------------------------------------


def test_is_stable_follows_perf_analyzer_each_of_the_last_three_within_10_percent_of_their_mean():
    assert is_stable([100, 104, 96], [10.0, 10.5, 9.6])
    assert not is_stable([100, 100], [10, 10])  # fewer than three windows
    assert not is_stable([100, 130, 100], [10, 10, 10])  # throughput 130 is 16 % over the mean
    assert not is_stable([100, 100, 100], [10, 10, 13])  # latency too
    assert is_stable([50, 500, 100, 104, 96], [1, 1, 10, 10, 10])  # only the last three count


def _stats(success: int, ns: int, queue_ns: int, executions: int, as_str: bool) -> dict:
    v = str if as_str else int
    return {"model_stats": [{
        "name": "m", "version": "1", "inference_count": v(success * 2),
        "execution_count": v(executions),
        "inference_stats": {
            "success": {"count": v(success), "ns": v(ns)},
            "fail": {"count": v(0), "ns": v(0)},
            "queue": {"count": v(success), "ns": v(queue_ns)},
            "compute_infer": {"count": v(success), "ns": v(ns // 2)},
        },
    }]}


@pytest.mark.parametrize("as_str", [True, False], ids=["grpc-json-strings", "http-ints"])
def test_stats_delta_gives_counts_and_per_request_means_between_two_snapshots(as_str):
    d = stats_delta(_stats(10, 10_000_000, 1_000_000, 10, as_str),
                    _stats(30, 50_000_000, 3_000_000, 20, as_str), "m")
    assert d["success"] == 20 and d["fail"] == 0 and d["inferences"] == 40
    assert d["executions"] == 10 and d["mean_executed_batch"] == 4.0
    assert d["request_ms"] == pytest.approx(2.0)  # 40 ms over 20 requests
    assert d["queue_ms"] == pytest.approx(0.1)
    assert d["compute_infer_ms"] == pytest.approx(1.0)
    assert d["compute_output_ms"] is None  # not reported by this server


def test_stats_delta_flags_a_reset_when_a_counter_went_down():
    d = stats_delta(_stats(30, 50_000_000, 3_000_000, 20, False),
                    _stats(5, 5_000_000, 300_000, 5, False), "m")
    assert d["reset"] is True
    assert not stats_delta(_stats(1, 1, 1, 1, True), _stats(1, 1, 1, 1, True), "m")["reset"]


def test_measure_level_counts_every_request_and_reports_the_last_three_windows():
    def infer() -> None:
        time.sleep(0.002)

    level = measure_level(infer, 2, window_s=0.05, max_windows=6, max_requests=10_000)
    assert level.failed == 0 and level.sent == level.succeeded
    assert 3 <= len(level.window_throughputs) <= 6
    assert level.stop_reason in ("stable", "max_windows")
    assert level.stable == (level.stop_reason == "stable")
    assert 0 < len(level.latencies_s) < level.succeeded  # warm-up and early windows excluded
    assert all(lat >= 0.002 for lat in level.latencies_s)


def test_measure_level_counts_failed_requests_and_keeps_their_messages():
    calls = iter(range(10_000))

    def infer() -> None:
        if next(calls) % 2:
            raise RuntimeError("boom")

    level = measure_level(infer, 1, window_s=0.02, max_windows=3, max_requests=10_000)
    assert level.failed > 0 and level.sent == level.succeeded + level.failed
    assert level.errors[0] == "RuntimeError: boom"


@pytest.mark.parametrize(("argv", "message"), [
    (["--url", "nowhere:1"], "--url needs --model: the name of the model to benchmark"),
    (["--url", "nowhere:1", "--model", "m"], "--url nowhere:1 names one port, while --protocols"),
    (["--url", "nowhere:x", "--model", "m", "--protocols", "grpc"], "--url: expected HOST or"),
    (["--protocols", "grpc,udp"], "--protocols: expected grpc, http or both, got 'grpc,udp'"),
    (["--protocols", ","], "--protocols: expected grpc, http or both, got ''"),
    (["--concurrency", "1,0"], "--concurrency: expected comma-separated positive integers"),
    (["--batches", "two"], "--batches: expected comma-separated positive integers, got 'two'"),
    (["--window", "0"], "--window must be >= 0.001, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["--repo", "no/such/folder"], "--repo no/such/folder is not a folder"),
])
def test_bad_flags_end_in_one_line_and_exit_code_2(argv, message, tmp_path, capsys):
    rc = main(["bench", "serve", "--quick", *argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("pixeldcn bench: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_a_server_that_does_not_answer_is_a_failure_exit_code_1(tmp_path, capsys):
    pytest.importorskip("tritonclient")
    rc = main(["bench", "serve", "--url", "nowhere.invalid:1", "--model", "m", "--protocols",
               "grpc", "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("pixeldcn bench: error: ") and "nowhere.invalid:1" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "serve.json").exists()


# -- a quick run against the real local tritonserver ---------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    pytest.importorskip("tritonclient")
    pytest.importorskip("torch")
    pytest.importorskip("exporters.pytorch")
    from triton_repo import TritonNotInstalledError
    from triton_repo._distribution import find_tritonserver

    try:
        find_tritonserver()
    except TritonNotInstalledError as err:
        pytest.skip(str(err))
    out = tmp_path_factory.mktemp("bench-serve")
    rc = main(["bench", "serve", "--quick", "--no-progress", "--out", str(out)])
    assert rc == 0
    return out, json.loads((out / "serve.json").read_text())


@pytest.mark.server
def test_quick_serve_run_writes_json_markdown_and_plot(quick_run):
    out, res = quick_run
    assert (out / "serve.md").read_text().startswith("# Served by Triton")
    assert (out / "serve_latency_throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert res["settings"]["server"] == "local tritonserver"
    assert res["settings"]["server_version"]


@pytest.mark.server
def test_quick_serve_run_covers_every_protocol_batch_and_concurrency(quick_run):
    _, res = quick_run
    s = res["settings"]
    got = sorted((r["protocol"], r["batch"], r["concurrency"]) for r in res["rows"])
    assert got == sorted((p, b, c) for p in s["protocols"] for b in s["batches"]
                         for c in s["concurrency"])
    for r in res["rows"]:
        lat = r["latency_ms"]
        assert lat["n"] > 0 and lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
        assert r["throughput_per_s"] > 0
        assert isinstance(r["stable"], bool) and 1 <= r["windows"] <= s["max_windows"]
        assert r["stop_reason"] in ("stable", "max_windows", "max_requests")
        assert r["stable"] == (r["stop_reason"] == "stable")
        assert r["server"]["compute_infer_ms"] > 0 and r["server"]["queue_ms"] >= 0


@pytest.mark.server
def test_nothing_is_lost_client_counts_equal_server_success_counts(quick_run):
    _, res = quick_run
    for r in res["rows"]:
        assert r["client"]["failed"] == 0 and r["server"]["fail"] == 0
        assert r["client"]["sent"] == r["client"]["succeeded"] == r["server"]["success"]
        assert r["lost"] == 0
    for p in res["paired_c1"].values():
        assert p["client_requests"] == p["server"]["success"] and p["lost"] == 0
    assert res["lost_total"] == 0 and res["unchecked_levels"] == 0


@pytest.mark.server
def test_serving_overhead_is_a_paired_ratio_against_in_process_onnxruntime(quick_run):
    _, res = quick_run
    assert set(res["paired_c1"]) == {"grpc", "http"}
    for p in res["paired_c1"].values():
        r = p["served_over_in_process"]
        assert r["n"] == res["settings"]["paired_rounds"] and r["median"] > 0
        # overhead = median over rounds of (served - in-process) ms, both timed in the same round;
        # the ratio = median over rounds of served / in-process (1e-9 relative: float rounding)
        served, local = (np.asarray(p["rounds_ms"][k]) for k in ("served", "in_process"))
        assert served.size == local.size == r["n"]
        assert p["overhead_ms"] == pytest.approx(float(np.median(served - local)), rel=1e-9)
        assert r["median"] == pytest.approx(float(np.median(served / local)), rel=1e-9)
        assert p["served_ms"]["median"] == pytest.approx(float(np.median(served)), rel=1e-9)
    (t,) = res["targets"]
    assert t["name"] == "served_grpc_c1_p50_over_in_process"
    assert t["measured"] == res["paired_c1"]["grpc"]["served_over_in_process"]["median"]
    assert t["status"] in ("PASS", "MISS")


# -- several replicas behind one client -----------------------------------------------------------


def test_replica_urls_need_one_protocol_and_host_port_each(tmp_path, capsys):
    rc = main(["bench", "serve", "--url", "127.0.0.1:1,127.0.0.1:2", "--model", "m",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "names replicas of one protocol" in err and "Traceback" not in err
    rc = main(["bench", "serve", "--url", "127.0.0.1:1,nowhere", "--model", "m",
               "--protocols", "grpc", "--out", str(tmp_path)])
    assert rc == 2 and "expected HOST:PORT,HOST:PORT,..., got 'nowhere'" in capsys.readouterr().err


@pytest.mark.server
@pytest.mark.slow
def test_bench_serve_over_two_replicas_reports_aggregate_and_per_replica_figures(tmp_path):
    """Two real servers, one client spreading requests: nothing lost in the summed statistics,
    and each replica's client count equals its own server's success count."""
    pytest.importorskip("tritonclient")
    import numpy as np  # noqa: F401  (the model's inputs)

    import pixeldcn_core as pc
    import triton_repo

    weights = pc.LayerSpec("pixel_dcl", 3, 2).random_weights(seed=5)
    onnx_path = tmp_path / "m.onnx"
    pc.io.save_model_atomic(pc.build_layer_model("pixel_dcl", weights), onnx_path)
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "m", onnx_path,
                                 options=triton_repo.ServingOptions(kind="cpu", max_batch_size=4))
    out = tmp_path / "out"
    with triton_repo.LocalReplicas(repo, 2, triton_repo.ServerConfig(ready_timeout=120)) as replicas:
        rc = main(["bench", "serve", "--quick", "--no-progress", "--no-plots", "--url",
                   ",".join(replicas.grpc_urls), "--model", "m", "--protocols", "grpc",
                   "--size", "16", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "serve.json").read_text())
    assert res["lost_total"] == 0 and res["unchecked_levels"] == 0
    per = res["replicas"]["replicas"]
    assert sorted(per) == sorted(replicas.grpc_urls)
    assert all(v["client_ok"] > 0 and v["client_ok"] == v["server_success"] for v in per.values())
    assert res["replicas"]["counts"]["answered"] == sum(v["client_ok"] for v in per.values())
    assert "## Replicas" in (out / "serve.md").read_text()
