"""The repository writer without a server: the layout of both flavours and numbered versions,
version policies, models with external data, atomic writes (a failure or a kill mid-write leaves
no partial version), rollback and the ``pixeldcn repo`` commands.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import triton_repo
from triton_repo import ServingOptions, _backend_model, _repository

from .repository_helpers import generate, layer_model

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_file(path: pathlib.Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


# ------------------------------------------------------------------------ repository layout


def test_write_repository_writes_both_flavours_and_a_runnable_version(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    version = triton_repo.write_repository(tmp_path / "repo", "unet", onnx_path)
    model_dir = tmp_path / "repo" / "unet"
    assert version == model_dir / "1"
    assert sorted(p.name for p in version.iterdir()) == ["__pycache__", "model.onnx", "model.py"]
    runner = pathlib.Path(_backend_model.__file__).read_bytes()
    assert (version / "model.py").read_bytes() == runner  # copied verbatim
    # Its bytecode is there already, hash-checked (flags 0b11), so the stub writes nothing.
    (pyc,) = (version / "__pycache__").iterdir()
    assert pyc.name == f"model.{sys.implementation.cache_tag}.pyc"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11
    assert (model_dir / "config.pbtxt").read_text() == generate("production", {})
    assert (model_dir / "configs" / "local.pbtxt").read_text() == generate("local", {})
    # No staging leftovers; y = model(x) from the version folder equals the exported model.
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".")] == []
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(run_file(version / "model.onnx", x), run_file(onnx_path, x))


def test_new_export_becomes_the_next_version(tmp_path: pathlib.Path, onnx_path: pathlib.Path) -> None:
    repo = tmp_path / "repo"
    assert triton_repo.write_repository(repo, "unet", onnx_path).name == "1"
    assert triton_repo.write_repository(repo, "unet", onnx_path).name == "2"
    assert triton_repo.write_repository(repo, "unet", onnx_path, version=7).name == "7"
    assert triton_repo.write_repository(repo, "unet", onnx_path).name == "8"
    assert triton_repo.list_versions(repo / "unet") == [1, 2, 7, 8]


def test_write_repository_raise_error_when_the_version_exists(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    triton_repo.write_repository(tmp_path / "repo", "unet", onnx_path)
    with pytest.raises(triton_repo.RepositoryError, match="version=1 of model 'unet' exists already"):
        triton_repo.write_repository(tmp_path / "repo", "unet", onnx_path, version=1)
    model_dir = tmp_path / "repo" / "unet"
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".")] == []


def test_version_policy_serves_latest_n_and_keep_versions_prunes_older_folders(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    repo = tmp_path / "repo"
    for _ in range(4):
        triton_repo.write_repository(repo, "unet", onnx_path, options=ServingOptions(num_versions=2))
    config = triton_repo.config_from_text((repo / "unet" / "config.pbtxt").read_text())
    assert config.version_policy.latest.num_versions == 2
    assert triton_repo.list_versions(repo / "unet") == [1, 2, 3, 4]
    triton_repo.write_repository(
        repo, "unet", onnx_path, options=triton_repo.ServingOptions(num_versions=2), keep_versions=3
    )
    assert triton_repo.list_versions(repo / "unet") == [3, 4, 5]
    assert [p.name for p in (repo / "unet").iterdir() if p.name.startswith(".")] == []


def test_unchanged_config_is_not_rewritten_so_the_server_does_not_reload(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "unet", onnx_path)
    config = repo / "unet" / "config.pbtxt"
    before = config.stat().st_mtime_ns, config.stat().st_ino
    triton_repo.write_repository(repo, "unet", onnx_path)
    assert (config.stat().st_mtime_ns, config.stat().st_ino) == before
    triton_repo.write_repository(repo, "unet", onnx_path, options=ServingOptions(max_batch_size=4))
    assert triton_repo.config_from_text(config.read_text()).max_batch_size == 4


# ---------------------------------------------------------------------------- external data


def save_with_external_data(model: onnx.ModelProto, folder: pathlib.Path) -> pathlib.Path:
    """model.onnx + model.onnx.data, as torch's dynamo exporter writes big models."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    return path


@pytest.mark.parametrize(
    ("mode", "files"),
    [
        ("auto", ["__pycache__", "model.onnx", "model.py"]),
        ("keep", ["__pycache__", "model.onnx", "model.onnx.data", "model.py"]),
    ],
)
def test_model_with_external_data_arrives_whole(tmp_path: pathlib.Path, mode: str, files: list[str]) -> None:
    path = save_with_external_data(layer_model(), tmp_path / "export")
    assert (tmp_path / "export" / "model.onnx.data").stat().st_size > 0
    version = triton_repo.write_repository(tmp_path / "repo", "unet", path, external_data=mode)
    assert sorted(p.name for p in version.iterdir()) == files
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 10)).astype(np.float32)
    expected = pc_run(layer_model(), x)
    np.testing.assert_array_equal(run_file(version / "model.onnx", x), expected)


def pc_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def relocate_external_data(path: pathlib.Path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize(
    ("location", "match"),
    [
        ("../outside.data", r"'\.\./outside\.data', which leaves the model's folder"),
        ("/etc/passwd", r"'/etc/passwd', an absolute path"),
        ("C:/weights.data", r"'C:/weights\.data', an absolute path"),
        ("sub\\model.onnx.data", "without backslashes"),
        ("missing.data", r"'missing\.data', which does not exist"),
    ],
)
def test_write_repository_raise_error_for_external_data_outside_or_missing(
    tmp_path: pathlib.Path, location: str, match: str
) -> None:
    path = save_with_external_data(layer_model(), tmp_path / "export")
    (tmp_path / "outside.data").write_bytes((tmp_path / "export" / "model.onnx.data").read_bytes())
    relocate_external_data(path, location)
    with pytest.raises(triton_repo.RepositoryError, match=match):
        triton_repo.write_repository(tmp_path / "repo", "unet", path)
    assert not (tmp_path / "repo" / "unet").exists()


def test_write_repository_raise_error_for_a_symlink_leaving_the_folder_or_truncated_data(
    tmp_path: pathlib.Path,
) -> None:
    path = save_with_external_data(layer_model(), tmp_path / "export")
    data = tmp_path / "export" / "model.onnx.data"
    (tmp_path / "elsewhere.data").write_bytes(data.read_bytes())
    (tmp_path / "export" / "link.data").symlink_to(tmp_path / "elsewhere.data")
    relocate_external_data(path, "link.data")
    with pytest.raises(triton_repo.RepositoryError, match="resolves outside the model's folder"):
        triton_repo.write_repository(tmp_path / "repo", "unet", path)
    relocate_external_data(path, "model.onnx.data")
    data.write_bytes(data.read_bytes()[:16])
    with pytest.raises(triton_repo.RepositoryError, match="the data file is truncated"):
        triton_repo.write_repository(tmp_path / "repo", "unet", path)


# -------------------------------------------------------------------------------- atomicity


def test_failure_mid_copy_leaves_no_partial_version(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_with_external_data(layer_model(), tmp_path / "export")
    repo = tmp_path / "repo"
    triton_repo.write_repository(repo, "unet", path, external_data="keep")
    real_copy = _repository._copy_durable

    def copy_then_fail(src: pathlib.Path, dst: pathlib.Path) -> None:
        if src.name == "model.onnx.data":  # half the data written, then the disk fills up
            dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
            raise OSError(28, "No space left on device")
        real_copy(src, dst)

    monkeypatch.setattr(_repository, "_copy_durable", copy_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        triton_repo.write_repository(repo, "unet", path, external_data="keep")
    assert sorted(p.name for p in (repo / "unet").iterdir()) == ["1", "config.pbtxt", "configs"]


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import triton_repo
    from triton_repo import _repository

    def write_half_then_hang(path, data):
        with open(path, "xb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        print("HALF", flush=True)
        time.sleep(600)

    _repository._write_durable = write_half_then_hang
    triton_repo.write_repository(sys.argv[1], "unet", sys.argv[2])
    """
)


@pytest.mark.parametrize("existing", [True, False], ids=["new-version", "new-model"])
def test_writer_killed_mid_write_leaves_no_partial_numbered_version(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path, existing: bool
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    if existing:
        triton_repo.write_repository(repo, "unet", onnx_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(repo), str(onnx_path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"HALF"  # the writer is mid-write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    staging = repo.parent / ".repo.pixeldcn-staging"
    # What a polling server sees: only complete, numbered versions (hidden staging is skipped).
    relative = (p.relative_to(repo) for p in repo.rglob("*"))
    visible = sorted(str(r) for r in relative if not any(part.startswith(".") for part in r.parts))
    if existing:
        assert visible == [
            "unet",
            "unet/1",
            "unet/1/__pycache__",
            f"unet/1/__pycache__/model.{sys.implementation.cache_tag}.pyc",
            "unet/1/model.onnx",
            "unet/1/model.py",
            "unet/config.pbtxt",
            "unet/configs",
            "unet/configs/local.pbtxt",
        ]
        assert list(repo.rglob(".staging-*"))  # the dead writer's half-written files stayed hidden
    else:  # a new model is staged outside the repository: Triton sees nothing, hidden or not
        assert list(repo.iterdir()) == []
        assert list(staging.glob(".staging-*"))
    # The next write finishes normally and removes the dead writer's staging folder.
    version = triton_repo.write_repository(repo, "unet", onnx_path)
    assert version.name == ("2" if existing else "1")
    assert list(repo.rglob(".staging-*")) == [] and list(staging.glob(".staging-*")) == []


# ------------------------------------------------------------------------ rollback, repo CLI


def test_rollback_republishes_the_previous_version_and_goes_further_back_when_repeated(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    repo = tmp_path / "repo"
    other = tmp_path / "other.onnx"
    onnx.save(layer_model(seed=1), other)
    for path in (onnx_path, other, onnx_path):  # versions 1, 2, 3
        triton_repo.write_repository(repo, "unet", path)
    first = triton_repo.rollback(repo, "unet")  # serve version 2's files again, as version 4
    assert first.name == "4"
    assert (first / "model.onnx").read_bytes() == (repo / "unet" / "2" / "model.onnx").read_bytes()
    assert triton_repo.list_versions(repo / "unet") == [1, 2, 3, 4]  # nothing deleted
    assert triton_repo.history(repo / "unet") == [1, 4]
    second = triton_repo.rollback(repo, "unet")  # then version 1's
    assert second.name == "5" and triton_repo.history(repo / "unet") == [5]
    assert (second / "model.onnx").read_bytes() == (repo / "unet" / "1" / "model.onnx").read_bytes()
    with pytest.raises(triton_repo.RepositoryError, match=r"versions \[5\] in its history; nothing older"):
        triton_repo.rollback(repo, "unet")
    assert [p.name for p in (repo / "unet").iterdir() if p.name.startswith(".")] == []


def test_rollback_raise_error_for_unknown_models_bad_names_and_multi_version_policies(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    repo = tmp_path / "repo"
    with pytest.raises(triton_repo.ModelNameError, match=r"contains '\\x00'"):
        triton_repo.rollback(repo, "un\x00et")
    with pytest.raises(triton_repo.RepositoryError, match="model 'unet' is not in the repository"):
        triton_repo.rollback(repo, "unet")
    for _ in range(2):
        triton_repo.write_repository(repo, "unet", onnx_path, options=ServingOptions(num_versions=2))
    with pytest.raises(triton_repo.RepositoryError, match="rollback needs the latest 1 version"):
        triton_repo.rollback(repo, "unet")


def pixeldcn(*argv: str) -> int:
    from pixeldcn_core.cli import main

    return main([str(a) for a in argv])


def test_cli_repo_write_builds_serving_options_from_flags(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    flags = ["--max-batch-size", "4", "--kind", "cpu", "--no-warmup", "--max-request-bytes", "4096"]
    assert pixeldcn("repo", "write", repo, "unet", onnx_path, *flags) == 0
    assert "wrote" in capsys.readouterr().out
    config = triton_repo.config_from_text((repo / "unet" / "config.pbtxt").read_text())
    assert config.max_batch_size == 4 and not config.model_warmup
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert config.parameters["max_request_bytes"].string_value == "4096"
    assert pixeldcn("repo", "write", repo, "unet", onnx_path, "--max-batch-size", "-1") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "pixeldcn repo: error: max_batch_size=-1; expected in [0, 2147483647]"
    ]


def test_cli_repo_rollback_and_history(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    for _ in range(2):
        triton_repo.write_repository(repo, "unet", onnx_path)
    assert pixeldcn("repo", "rollback", repo, "unet") == 0
    assert capsys.readouterr().out.strip() == "rolled back unet: version 3 serves version 1's files"
    assert pixeldcn("repo", "history", repo, "unet") == 0
    assert capsys.readouterr().out.strip() == "3"
    assert pixeldcn("repo", "rollback", repo, "unet") == 2  # nothing older: a usage error
    assert "nothing older to roll back to" in capsys.readouterr().err
    assert pixeldcn("repo", "rollback", repo, "a\nb") == 2
    assert "contains '\\n'" in capsys.readouterr().err
