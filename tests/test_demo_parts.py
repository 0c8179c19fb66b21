"""The demo's parts that need no server: its folders, the repository written once per model, the
labels of random weights and the second picture row, where the checkerboard shows."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")

from benchmarks._demo_serving import write_once
from benchmarks._demo_sr import DECODERS, _sr_panels, decoder_row, sr_picture
from benchmarks.cli_demo import default_out
from pixeldcn_core import SpecError
from triton_repo import ServingOptions


def test_each_task_has_its_own_default_folder():
    # the segmentation demo (124 MB U-Net) never lands in the folder whose repository the
    # README tells users to serve after the SR demo
    assert default_out("sr") != default_out("segment")
    assert not default_out("segment").is_relative_to(default_out("sr"))


def test_the_same_model_is_written_once_and_a_changed_one_gets_a_new_version(tmp_path):
    import pixeldcn_core as pc

    model = tmp_path / "m.onnx"
    spec = pc.LayerSpec("pixel_dcl", 3, 2)
    pc.io.save_model_atomic(pc.build_layer_model("pixel_dcl", spec.random_weights(seed=1)), model)
    opts = ServingOptions(max_batch_size=4)
    first, written = write_once(tmp_path / "repo", "m", model, opts)
    assert written and first.name == "1"
    again, written = write_once(tmp_path / "repo", "m", model, opts)
    assert not written and again == first
    pc.io.save_model_atomic(pc.build_layer_model("pixel_dcl", spec.random_weights(seed=2)), model)
    changed, written = write_once(tmp_path / "repo", "m", model, opts)
    assert written and changed.name == "2"


def test_random_weights_label_every_model_panel_random():
    img = np.zeros((8, 8), np.float32)
    outputs = dict.fromkeys(("bicubic", "dcl", "pixel_dcl", "truth"), img)
    quality = {k: {"psnr": 30.0, "index": 0.01} for k in ("bicubic", "dcl", "pixel_dcl", "truth")}
    x = np.zeros((1, 1, 4, 4), np.float32)
    labels = [t for t, _ in _sr_panels(x, outputs, quality, 2, "sr-x2-dcl", True)]
    assert "(random)" in labels[2] and "(random)" in labels[3]
    trained = [t for t, _ in _sr_panels(x, outputs, quality, 2, "sr-x2-dcl", False)]
    assert not any("random" in t for t in trained)


def test_the_second_row_shows_the_checkerboard_of_the_he_initialised_deconvolution(tmp_path):
    from benchmarks._demo_sr import _photo

    hr, _ = _photo(None, 128)
    rows = decoder_row(hr)
    index = {(d["kind"], d["init"]): d["index"] for d in rows}
    assert len(index) == len(DECODERS)
    # after the same short training, each kind from He init carries the stride-2 grid; from the
    # bilinear init it does not (its index is several times smaller)
    for kind in dict.fromkeys(d[0] for d in DECODERS):
        assert index[(kind, "default")] > 2 * index[(kind, "bilinear")], (kind, index)
    path = sr_picture([[(d["label"], d["image"]) for d in rows]], (0, 0, 32), tmp_path / "p.png")
    assert path.stat().st_size > 1000


def test_a_size_the_sr_demo_cannot_take_is_refused_before_anything_runs(tmp_path):
    from benchmarks._demo_sr import run_sr

    with pytest.raises(SpecError, match="--size must be a multiple of 4 and >= 32, got 30"):
        run_sr(pretrained="sr-x2-pixel_dcl", compare="sr-x2-dcl", size=30, image=None,
               interleave="depth_to_space", requests=1, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()
