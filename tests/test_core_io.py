"""pixeldcn_core.io: atomic writes that follow the umask, names safe as file names, pid checks."""

from __future__ import annotations

import os
import stat

import onnx
import pytest

import pixeldcn_core as pc
from pixeldcn_core import io


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_current_umask_reads_the_process_umask_without_changing_it(umask_027):
    assert io.current_umask() == 0o027
    assert io.current_umask() == 0o027


def test_written_files_follow_the_umask_and_private_ones_stay_0600(tmp_path, umask_027):
    shared = io.write_bytes_atomic(tmp_path / "model.onnx", b"abc")
    private = io.write_bytes_atomic(tmp_path / "key", b"secret", private=True)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640  # 0666 & ~027
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert shared.read_bytes() == b"abc"


def test_an_atomic_write_replaces_the_whole_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "m.onnx"
    io.write_bytes_atomic(path, b"old contents")
    model = pc.build_layer_model("dcl", pc.LayerSpec("dcl", 2, 2).random_weights())
    io.save_model_atomic(model, path)
    assert onnx.load(str(path)) == model
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "m.onnx"
    io.write_bytes_atomic(path, b"old")
    with pytest.raises(TypeError):
        io.write_bytes_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize(
    "name,message",
    [
        ("", "is empty"),
        ("a" * 129, "has 129 characters; expected at most 128"),
        ("a/b", "contains '/'"),
        ("a\x00b", "contains '\\\\x00'"),
        ("new\nline", "contains '\\\\n'"),
        ("..", "starts with '.'"),
        (3, "expected a str"),
    ],
)
def test_check_name_refuses_what_cannot_be_one_file_name(name, message):
    with pytest.raises(pc.SpecError, match=message):
        io.check_name(name, field="model")


def test_check_name_returns_a_good_name():
    assert io.check_name("unet_pixel-dcl.v2") == "unet_pixel-dcl.v2"


def test_pid_alive_tells_this_process_from_a_finished_one():
    assert io.pid_alive(os.getpid())
    assert not io.pid_alive(0) and not io.pid_alive(-1)
    pid = os.fork()
    if pid == 0:  # the child exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    assert not io.pid_alive(pid)
