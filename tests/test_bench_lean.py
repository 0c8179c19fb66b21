"""pixeldcn bench lean: the free up-sampling floor and the served I/O options (quick runs).

Timings are reported, never asserted; the tests check the plan, the rows, the floor's own
ratios (exactly 1: a paired ratio of a series with itself), MAC ordering and nothing lost.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.lean import FLOOR, free_upsampling
from exporters.pytorch import UNet, UpsampleLayer
from pixeldcn_core.cli import main


def test_free_upsampling_keeps_every_shape_and_removes_every_layer():
    """y_free.shape == y.shape for a U-Net whose up-sampling layers became slice + nearest."""
    torch.manual_seed(0)
    net = UNet(3, 5, base_channels=4, depth=3, up="pixel_dcl").eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        y = net(x)
        free = free_upsampling(net)
        assert not any(isinstance(m, UpsampleLayer) for m in free.modules())
        assert free(x).shape == y.shape


def test_bad_size_is_a_usage_error(tmp_path, capsys):
    rc = main(["bench", "lean", "--quick", "--sizes", "30", "--out", str(tmp_path)])
    assert rc == 2
    assert "--sizes/--serve-size: got 30, expected a multiple of 4" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_floor_run_writes_rows_relative_to_the_floor(tmp_path):
    rc = main(["bench", "lean", "--quick", "--no-serve", "--out", str(tmp_path), "--no-progress",
               "--no-plots"])
    assert rc == 0
    data = json.loads((tmp_path / "lean.json").read_text())
    rows = {r["variant"]: r for r in data["floor"]}
    assert set(rows) == {FLOOR, "dcl_k6", "pixel_dcl", "ipixel_dcl"}
    assert rows[FLOOR]["time_over_floor"]["median"] == 1.0
    assert rows[FLOOR]["macs_over_floor"] == 1.0
    assert all(rows[k]["macs_over_floor"] > 1.0 for k in ("dcl_k6", "pixel_dcl", "ipixel_dcl"))
    assert "free up-sampling floor" in (tmp_path / "lean.md").read_text()


@pytest.mark.slow
@pytest.mark.server
def test_quick_served_options_answer_like_in_process_and_lose_nothing(tmp_path):
    rc = main(["bench", "lean", "--quick", "--no-floor", "--no-int8", "--rounds", "2",
               "--protocols", "grpc", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "lean.json").read_text())
    served = data["served"]
    assert len(served) == 6  # the six fp32 options, gRPC (both protocols: test_lean_serving)
    assert data["lost_total"] == 0 and all(r["lost"] == 0 for r in served)
    by = {(r["option"], r["protocol"]): r for r in served}
    mask = by[("uint8 in / mask out", "grpc")]
    assert mask["request_bytes"] * 4 == by[("fp32 in / logits out", "grpc")]["request_bytes"]
    assert mask["response_bytes"] * 4 * 21 == by[("fp32 in / logits out", "grpc")]["response_bytes"]
