"""Shipped trained models: each reloads by name and reproduces its card's held-out PSNR (0.05 dB)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")

from benchmarks._images import eval_images
from benchmarks._training import TASKS, evaluate
from exporters.pytorch import load_pretrained, pretrained_card, pretrained_names
from exporters.pytorch._pretrained import PRETRAINED_DIR
from pixeldcn_core import SpecError

NAMES = pretrained_names()
EXPECTED = {"sr-x2-pixel_dcl", "sr-x2-dcl", "sr-x4-pixel_dcl", "sr-x4-dcl"}


def test_the_x2_and_x4_pixel_dcl_and_dcl_models_are_shipped_small():
    assert set(NAMES) >= EXPECTED
    for name in NAMES:
        assert (PRETRAINED_DIR / f"{name}.safetensors").stat().st_size < 400_000
        assert (PRETRAINED_DIR / f"{name}.md").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_model_reproduces_its_cards_held_out_psnr_within_0_05_db(name):
    card = pretrained_card(name)
    model = load_pretrained(name)
    assert model.up_kind == card["config"]["up"] and not model.training
    side = int(card["data"]["evaluation"].split("x")[0])
    task = f"sr{card['config']['scale']}"
    assert task in TASKS
    # the card's own held-out photographs (a model trained before the benchmark's set changed
    # is checked on the pictures its card names)
    got = evaluate(model, task, eval_images(side, tuple(card["data"]["held_out"])))["mean"]
    assert got["psnr"] == pytest.approx(card["held_out"]["psnr"], abs=0.05)
    assert got["ssim"] == pytest.approx(card["held_out"]["ssim"], abs=1e-3)
    assert got["psnr"] > card["bicubic"]["psnr"]  # trained SR beats the interpolation floor
    digest = hashlib.sha256((PRETRAINED_DIR / f"{name}.safetensors").read_bytes()).hexdigest()
    assert digest == card["sha256"]


def test_an_unknown_name_raises_spec_error_listing_the_shipped_ones():
    with pytest.raises(SpecError, match="unknown pretrained model 'sr-x3'; expected one of sr-"):
        load_pretrained("sr-x3")
    with pytest.raises(SpecError, match=r"unknown pretrained model '\.\./sr-x2-dcl'"):
        pretrained_card("../sr-x2-dcl")


@pytest.mark.slow
def test_pixeldcn_export_arch_sr_pretrained_writes_a_verified_model(tmp_path):
    out = tmp_path / "sr.onnx"
    proc = subprocess.run([sys.executable, "-m", "pixeldcn_core.cli", "export", "--arch", "sr",
                           "--pretrained", "sr-x2-pixel_dcl", "--out", str(out),
                           "--input-shape", "1,1,32,32"],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pretrained sr-x2-pixel_dcl" in proc.stdout and out.stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "pixeldcn_core.cli", "export", "--arch", "sr",
                          "--pretrained", "sr-x9", "--out", str(out)],
                         capture_output=True, text=True, timeout=200)
    assert bad.returncode == 2 and "unknown pretrained model 'sr-x9'" in bad.stderr
    assert "Traceback" not in bad.stderr
