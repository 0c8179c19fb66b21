"""``pixeldcn demo`` end to end, small: the trained SR model (default) and the U-Net (segment),
export, repository, real local Triton, gRPC, PNG.

SR: the served output equals the model run in process (float32, 1e-4), and the trained PixelDCL
model beats bicubic on the held-out photograph. Segment parity: the served prediction (its class
histogram, saved in demo.json) equals the argmax of the
same ONNX model run in process by onnxruntime on the same photograph (float32, same graph, so the
argmax agrees exactly).
"""

from __future__ import annotations

import json
import re
import socket

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from benchmarks._demo_segment import load_image, to_input
from benchmarks._demo_sr import DECODERS
from pixeldcn_core.cli import main

pytestmark = [pytest.mark.server, pytest.mark.slow]

SIZE, CLASSES = 32, 5


def test_sr_demo_serves_the_trained_pixel_dcl_model_and_pictures_it_beside_bicubic_and_dcl(
        tmp_path, capsys) -> None:
    out = tmp_path / "sr"
    rc = main(["demo", "--size", "96", "--requests", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    for step in range(1, 7):
        assert f"[{step}/6]" in printed
    summary = json.loads((out / "demo.json").read_text())
    assert summary["task"] == "sr" and summary["pretrained"] == "sr-x2-pixel_dcl"
    assert not summary["random_weights"] and "trained weights" in summary["weights"]
    assert "astronaut" in summary["image"] and "held out" in summary["image"]
    q = summary["quality"]
    for key in ("bicubic", "dcl", "pixel_dcl"):
        assert np.isfinite(q[key]["psnr"]) and 0 <= q[key]["index"] < 0.05, (key, q[key])
    assert q["pixel_dcl"]["psnr"] > q["bicubic"]["psnr"]
    assert summary["served_vs_inprocess_max_abs"] < 1e-4
    assert [row["concurrency"] for row in summary["served"]] == [1, 2]
    png = Image.open(out / "prediction.png")
    side = summary["crop"]["side"] * summary["crop"]["zoom"]
    # two rows of labelled panels, 6-pixel gaps: the SR row (5 panels) and the decoder row
    assert png.size == (5 * side + 4 * 6, 2 * (side + 28) + 6)
    assert "| PixelDCL (sr-x2-pixel_dcl, trained, served) |" in printed
    assert [d["label"] for d in summary["decoders"]] == [d[2] for d in DECODERS]
    assert "| DCL, He init | 40 |" in printed


def test_sr_demo_refuses_an_unknown_model_and_a_bad_size(tmp_path, capsys) -> None:
    assert main(["demo", "--pretrained", "sr-x3", "--out", str(tmp_path)]) == 2
    assert "unknown pretrained model 'sr-x3'" in capsys.readouterr().err
    assert main(["demo", "--size", "30", "--out", str(tmp_path)]) == 2
    assert "--size must be a multiple of 4 and >= 32, got 30" in capsys.readouterr().err


def test_segment_demo_needs_weights_or_an_explicit_random_weights(tmp_path, capsys) -> None:
    assert main(["demo", "--task", "segment", "--out", str(tmp_path)]) == 2
    assert "no trained U-Net is shipped" in capsys.readouterr().err


def test_demo_runs_end_to_end_and_serves_what_onnxruntime_computes(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    rc = main(["demo", "--task", "segment", "--random-weights", "--size", str(SIZE),
               "--base-channels", "4", "--num-classes", str(CLASSES),
               "--requests", "2", "--interleave", "concat", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    for step in range(1, 7):
        assert f"[{step}/6]" in printed
    assert "| Triton gRPC | 1 |" in printed and "| onnxruntime in process | 1 |" in printed

    # its own files: nothing of the SR demo's (demo.json, prediction.png) is written or replaced
    assert not (out / "demo.json").exists() and not (out / "prediction.png").exists()
    summary = json.loads((out / "segment.json").read_text())
    assert summary["up"] == "pixel_dcl" and summary["interleave"] == "concat"
    assert [row["concurrency"] for row in summary["served"]] == [1, 2]
    assert all(row["n"] == 2 and row["p50"] > 0 for row in summary["served"])
    # The files it names exist: the model, once, in the repository's first version; the picture.
    onnx_path = out / "model_repository" / "unet_pixel_dcl" / "1" / "model.onnx"
    assert summary["onnx"] == str(onnx_path) and onnx_path.is_file()
    assert [p.relative_to(out) for p in out.rglob("*.onnx")] == [onnx_path.relative_to(out)]
    png = Image.open(out / "segment.png")
    assert png.size == (3 * SIZE + 2 * 8, SIZE)  # input | mask | overlay, 8-pixel gaps

    # What the server predicted is what the model computes in process.
    rgb, _ = load_image(None, SIZE)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"x": to_input(rgb)})
    values, counts = np.unique(logits.argmax(axis=1)[0], return_counts=True)
    expected = {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
    assert summary["class_pixels"] == expected
    assert sum(expected.values()) == SIZE * SIZE

    # The server is down: its gRPC port no longer answers.
    port = int(re.search(r"gRPC 127\.0\.0\.1:(\d+)", printed).group(1))
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect(("127.0.0.1", port))


def test_demo_refuses_a_size_the_unet_cannot_take(tmp_path, capsys) -> None:
    rc = main(["demo", "--task", "segment", "--random-weights", "--size", "40", "--out",
               str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2  # a usage error
    assert "--size must be a multiple of 16" in err and "got 40" in err


def test_random_weights_are_labelled_random_and_a_second_run_adds_no_version(tmp_path,
                                                                             capsys) -> None:
    out = tmp_path / "sr"
    argv = ["demo", "--random-weights", "--size", "64", "--requests", "1", "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "load the trained" not in first and "seeded random weights" in first
    assert "| DCL (sr-x2-dcl, random) |" in first and "trained" not in first.split("| output")[1]
    summary = json.loads((out / "demo.json").read_text())
    assert summary["random_weights"] and summary["new_version"] and summary["version"] == "1"
    assert main(argv) == 0  # the same model again: the repository keeps its one version
    assert "(the same model: no new version)" in capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    assert not summary["new_version"] and summary["version"] == "1"
    assert sorted(p.name for p in (out / "model_repository" / summary["model"]).iterdir()
                  if p.name.isdigit()) == ["1"]
