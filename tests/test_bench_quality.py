"""`pixeldcn bench quality --quick`: every kind scored, the interpolation floor, the truth's index."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")
pytest.importorskip("matplotlib")

from benchmarks.quality import HELD_OUT, PHOTOS, TASKS, all_variants, decode_crop
from pixeldcn_core import get_kind

PIXELDCN = [sys.executable, "-m", "pixeldcn_core.cli"]


def run_cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIXELDCN, "bench", "quality", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("quality")
    proc = run_cli("--quick", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "quality.json").read_text()), out


def finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)


@pytest.mark.slow
def test_quick_run_scores_every_kind_and_init_on_every_task(quick):
    data, _ = quick
    assert set(data["tasks"]) == set(TASKS)
    expected = {v.key for v in all_variants()}
    kinds = {v.kind for v in all_variants()}
    assert {"dcl", "pixel_dcl", "ipixel_dcl", "resize_conv", "subpixel_conv"} <= kinds
    for task in TASKS:
        rows = [r for r in data["rows"] if r["task"] == task]
        assert {r["key"] for r in rows} == expected
        for r in rows:
            for key in ("psnr", "ssim", "index", "index_init", "error_index"):
                assert finite(r[key]), (task, r["key"], key, r[key])
            assert 0 <= r["index"] <= 1 and 0 < r["ssim"] <= 1 and r["params"] > 0
            assert len(r["curve"]) >= 2 and all(finite(v) for v in r["curve"])
    dcl_kernels = {r["kernel_size"] for r in data["rows"] if r["kind"] == "dcl"}
    assert dcl_kernels == {3, 4, 6}
    inits = {(r["kind"], r["init"]) for r in data["rows"]}
    for kind in kinds:
        assert {i for k, i in inits if k == kind} == set(get_kind(kind).inits)


@pytest.mark.slow
def test_quick_run_holds_the_interpolation_floor_and_the_truths_index(quick):
    data, _ = quick
    for task, (_, _, what) in TASKS.items():
        floors = {f["method"]: f for f in data["floors"] if f["task"] == task}
        if what == "sr":
            assert set(floors) == {"bicubic", "bilinear"}
            for f in floors.values():
                assert finite(f["psnr"]) and finite(f["ssim"]) and finite(f["index"])
            assert floors["bicubic"]["psnr"] > floors["bilinear"]["psnr"]  # on photographs
        else:
            assert not floors
    truth = data["truth_index"]
    assert finite(truth["mean"]) and 0 < truth["mean"] < 0.05
    assert set(truth["per_image"]) == set(HELD_OUT)
    assert set(data["photos"]["held_out"]) == set(HELD_OUT)
    assert not set(data["photos"]["train"]) & set(HELD_OUT)
    assert all(PHOTOS[n] for n in data["photos"]["train"])


@pytest.mark.slow
def test_quick_run_writes_markdown_plots_and_one_latency(quick):
    data, out = quick
    md = (out / "quality.md").read_text()
    assert "bicubic (floor)" in md and "pixel_dcl (bilinear)" in md
    for name in ("quality_loss.png", "quality_index_vs_psnr.png", "quality_overlap.png",
                 *(f"quality_crops_{t}.png" for t in TASKS)):
        assert (out / name).stat().st_size > 1000, name
    latencies = [r["latency_ms"] for r in data["rows"] if r["latency_ms"] is not None]
    assert len(latencies) == 1 and latencies[0] > 0
    crop = data["crop"]
    assert crop["photo"] in HELD_OUT
    assert decode_crop(crop["images"]["sr2"]["truth"]).shape == (crop["side"], crop["side"])


@pytest.mark.parametrize(
    "args,match",
    [
        (["--tasks", "sr3"], "--tasks: got sr3, expected some of sr2, sr4, ae4"),
        (["--kinds", "deconv9"], "unknown up-sampling layer kind 'deconv9'"),
        (["--steps", "0"], "--steps must be a positive int, got 0"),
        (["--patch", "30"], "--patch must be a multiple of 4 >= 16, got 30"),
    ],
)
def test_bad_settings_exit_2_with_one_line(args, match):
    proc = run_cli("--quick", "--no-progress", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert match in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
