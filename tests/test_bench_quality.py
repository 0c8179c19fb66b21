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

from benchmarks._images import HELD_OUT, PHOTOS, TRAIN, decode_crop, photo_file
from benchmarks._training import TASKS, all_variants
from benchmarks.quality import BUDGETS
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
    for task, t in TASKS.items():
        rows = [r for r in data["rows"] if r["task"] == task]
        if t.long:  # each kind once, at its default kernel and init, trained longer
            assert sorted(r["kind"] for r in rows) == sorted(kinds)
            assert all(r["init"] == get_kind(r["kind"]).inits[0] for r in rows)
            assert {r["steps"] for r in rows} == {BUDGETS["quick"]["long_steps"]}
            continue
        assert {r["key"] for r in rows} == expected
        assert {r["steps"] for r in rows} == {BUDGETS["quick"]["steps"]}
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
    for task in TASKS:  # plain interpolation rows in every table, the autoencoder's too
        floors = {f["method"]: f for f in data["floors"] if f["task"] == task}
        assert set(floors) == {"bicubic", "bilinear"}
        for f in floors.values():
            assert finite(f["psnr"]) and finite(f["ssim"]) and finite(f["index"])
        assert floors["bicubic"]["psnr"] > floors["bilinear"]["psnr"]  # on photographs
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
    assert "## Which up-sampler should I use?" in md and "Spearman rho" in md
    for task in TASKS:  # every table holds the interpolation rows
        table = md.split(f"## {task}: ")[1].split("\n## ")[0]
        assert "*bicubic (floor)*" in table and "*bilinear (floor)*" in table
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
        (["--tasks", "sr3"], "--tasks: got sr3, expected some of sr2, sr4, ae4, ae4_long"),
        (["--medium"], "--quick and --medium: expected one budget at most"),
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


def test_no_photograph_of_the_benchmark_is_a_jpeg():
    # JPEG's 8x8 block grid has energy at multiples of 1/8 cycle/px, the x2 and x4 aliasing
    # frequencies the index measures: training and evaluation use lossless PNG files only
    for name in PHOTOS:
        path = photo_file(name)
        assert path.suffix == ".png" and path.is_file(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert set(HELD_OUT) | set(TRAIN) == set(PHOTOS) and not set(HELD_OUT) & set(TRAIN)


def test_the_long_task_trains_each_kind_once_at_its_default():
    from benchmarks.quality import QualitySettings

    s = QualitySettings(tasks=tuple(TASKS), variants=all_variants(), seeds=(0,), steps=10,
                        long_steps=40)
    long = [t for t, task in TASKS.items() if task.long]
    assert long and all(TASKS[t].scale == 4 and TASKS[t].kind == "ae" for t in long)
    for t in long:
        assert s.steps_of(t) == 40 and s.steps_of("ae4") == 10
        picked = s.variants_of(t)
        assert [v.kind for v in picked] == list(dict.fromkeys(v.kind for v in all_variants()))
        for v in picked:
            assert (v.kernel_size, v.init) == (get_kind(v.kind).default_kernel,
                                               get_kind(v.kind).inits[0])
    for budget in BUDGETS.values():  # the long row trains at least 4x the budget's steps
        assert budget["long_steps"] >= 4 * budget["steps"]
