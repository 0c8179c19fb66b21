"""Checkpoints in and out, safely: nothing is unpickled beyond tensors, and a checkpoint that
does not fit is reported in full while the model stays untouched."""

from __future__ import annotations

import pickle

import pytest
import torch

import pixeldcn_core as pc
from exporters.pytorch import CheckpointError, UNet, load_weights, save_weights


class WritesAFile:
    """A pickle payload: unpickling it runs ``exec``, which writes ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _small() -> UNet:
    torch.manual_seed(0)
    return UNet(3, 2, base_channels=4, depth=2, up="pixel_dcl")


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, snap) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def test_safetensors_round_trip_restores_outputs(tmp_path):
    a, b = _small().eval(), UNet(3, 2, base_channels=4, depth=2, up="pixel_dcl").eval()
    path = save_weights(a, tmp_path / "w.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    load_weights(b, path)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_torch_file_nested_under_state_dict_with_module_prefix_loads(tmp_path):
    a, b = _small(), UNet(3, 2, base_channels=4, depth=2)
    torch.save({"state_dict": {f"module.{k}": v for k, v in a.state_dict().items()}, "epoch": 3},
               tmp_path / "ckpt.pt")
    load_weights(b, tmp_path / "ckpt.pt")
    assert _unchanged(b, a.state_dict())


@pytest.mark.parametrize("env", [None, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"])
def test_a_pickle_that_would_write_a_file_is_refused_and_the_file_never_appears(tmp_path, monkeypatch, env):
    if env:
        monkeypatch.setenv(env, "1")  # only changes torch.load's default, never an explicit True
    marker = tmp_path / "pwned.txt"
    torch.save({"conv.weight": torch.zeros(1), "evil": WritesAFile(str(marker))}, tmp_path / "evil.pt")
    model = _small()
    snap = _snapshot(model)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused: the file holds more than tensors"):
        load_weights(model, tmp_path / "evil.pt")
    assert not marker.exists()
    assert _unchanged(model, snap)
    # The payload is live: an unsafe load would have run it.
    live = tmp_path / "live.txt"
    pickle.loads(pickle.dumps(WritesAFile(str(live))))
    assert live.read_text() == "pwned"


def test_missing_unexpected_and_misshaped_keys_are_listed_in_one_error_and_nothing_loads(tmp_path):
    model = _small()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state["down.0.conv1.0.weight"]
    state["extra.weight"] = torch.zeros(2)
    state["up.0.up.0.conv3.weight"] = torch.zeros(4, 4, 5, 5)
    state["bottom.0.1.weight"] = torch.full_like(state["bottom.0.1.weight"], 7.0)  # valid change
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "bad.safetensors"))
    snap = _snapshot(model)
    with pytest.raises(pc.WeightError) as err:
        load_weights(model, tmp_path / "bad.safetensors")
    msg = str(err.value)
    assert "nothing was loaded" in msg
    assert "missing keys ['down.0.conv1.0.weight']" in msg
    assert "unexpected keys ['extra.weight']" in msg
    assert "up.0.up.0.conv3.weight: got (4, 4, 5, 5), expected (4, 4, 3, 3)" in msg
    assert _unchanged(model, snap)  # the valid bottom.0.1.weight was not written either


def test_non_finite_weights_are_refused(tmp_path):
    model = _small()
    state = dict(model.state_dict())
    state["up.0.up.0.conv1.weight"] = torch.full_like(state["up.0.up.0.conv1.weight"], float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"NaN/Inf in \['up.0.up.0.conv1.weight'\]"):
        load_weights(model, tmp_path / "nan.pt")


def test_num_batches_tracked_may_be_absent(tmp_path):
    """A checkpoint without the BatchNorm counters loads every other tensor (counters kept)."""
    trained = _small()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # distinct from a fresh model's values
    state = {k: v for k, v in trained.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(state) < len(trained.state_dict())  # the counters really are absent
    torch.save(state, tmp_path / "w.pt")
    model = _small()
    counters = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    load_weights(model, tmp_path / "w.pt")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert all(torch.equal(loaded[k], v) for k, v in counters.items())


def test_unknown_extension_missing_file_and_garbage_are_checkpoint_errors(tmp_path):
    model = _small()
    expected = r"extension '\.npz' is not supported; expected one of \.safetensors, \.pt"
    with pytest.raises(CheckpointError, match=expected):
        (tmp_path / "w.npz").write_bytes(b"")
        load_weights(model, tmp_path / "w.npz")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(model, tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_weights(model, tmp_path / "junk.safetensors")


def test_a_checkpoint_of_non_tensors_is_refused(tmp_path):
    torch.save({"lr": 0.1}, tmp_path / "opt.pt")
    with pytest.raises(CheckpointError, match=r"entries that are not tensors: \['lr'\]"):
        load_weights(_small(), tmp_path / "opt.pt")


def test_save_weights_wants_a_safetensors_name(tmp_path):
    with pytest.raises(CheckpointError, match=r"save_weights writes \.safetensors, got 'w\.pt'"):
        save_weights(_small(), tmp_path / "w.pt")
