"""triton_repo without a server: configs (golden round trip), the repository writer, the
Python-backend runner's batching helpers, the client's and launcher's error paths, the CLI parser.

Golden configs live in tests/golden/triton/; regenerate them after an intended change with
``PIXELDCN_UPDATE_GOLDEN=1 pytest tests/test_triton_repository.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
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

import pixeldcn_core as pc
import triton_repo
from triton_repo import ServingOptions, _backend_model, _config, _repository, cli_infer, cli_serve
from triton_repo._onnx_io import read_signature

GOLDEN = pathlib.Path(__file__).parent / "golden" / "triton"
UPDATE_GOLDEN = os.environ.get("PIXELDCN_UPDATE_GOLDEN") == "1"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def layer_model(seed: int = 0, cin: int = 3, cout: int = 2) -> onnx.ModelProto:
    """PixelDCL x [batch, cin, H, W] -> y [batch, cout, 2H, 2W], seeded weights."""
    weights = pc.LayerSpec("pixel_dcl", cin, cout).random_weights(seed=seed)
    return pc.build_layer_model("pixel_dcl", weights)


@pytest.fixture
def onnx_path(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "export" / "model.onnx"
    path.parent.mkdir()
    onnx.save(layer_model(), path)
    return path


def run_file(path: pathlib.Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


# ------------------------------------------------------------------------ golden configs

GOLDEN_CASES = {
    # name: (flavour, write_repository keywords)
    "production_gpu": ("production", {}),
    "production_gpu_tensorrt_fp16": (
        "production",
        dict(
            tensorrt=True,
            fp16=True,
            instances=2,
            num_versions=2,
            warmup_shape=(3, 128, 128),
            warmup_data="zero",
            trt_cache_path="/models/trt_cache/unet",
        ),
    ),
    "production_cpu": (
        "production",
        dict(kind="cpu", max_batch_size=4, warmup=False, intra_op_threads=2),
    ),
    "production_no_batching": ("production", dict(max_batch_size=0, dynamic_batching=False)),
    "local": ("local", {}),
}


def generate(flavour: str, options: dict, model: onnx.ModelProto | None = None) -> str:
    signature = read_signature(model or layer_model())
    serving = _config.ServingOptions(**options)
    build = _config.production_config if flavour == "production" else _config.local_config
    return _config.config_to_text(build("unet", signature, serving))


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_generated_config_equals_golden_file(case: str) -> None:
    flavour, options = GOLDEN_CASES[case]
    text = generate(flavour, options)
    path = GOLDEN / f"{case}.pbtxt"
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_file_parses_and_regenerates_to_the_same_text(case: str) -> None:
    text = (GOLDEN / f"{case}.pbtxt").read_text()
    config = triton_repo.config_from_text(text)
    assert config.name == "unet"
    assert triton_repo.config_to_text(config) == text


def test_local_config_matches_production_in_everything_a_client_sees() -> None:
    production = triton_repo.config_from_text(generate("production", {}))
    local = triton_repo.config_from_text(generate("local", {}))
    for field in ("name", "max_batch_size", "input", "output", "dynamic_batching", "version_policy"):
        assert getattr(local, field) == getattr(production, field), field
    assert (production.backend, production.platform) == ("onnxruntime", "onnxruntime_onnx")
    assert local.backend == "python"
    assert [g.kind for g in local.instance_group] == [local.instance_group[0].KIND_CPU]


def test_config_dims_come_from_the_model_with_batch_dim_dropped() -> None:
    # x [batch, 5, H, W] -> y [batch, 7, 2H, 2W]: dims [5, -1, -1] and [7, -1, -1].
    config = triton_repo.config_from_text(generate("production", {}, layer_model(cin=5, cout=7)))
    assert [list(t.dims) for t in config.input] == [[5, -1, -1]]
    assert [list(t.dims) for t in config.output] == [[7, -1, -1]]
    assert [w.batch_size for w in config.model_warmup] == [1, 8]
    assert list(config.model_warmup[1].inputs["x"].dims) == [5, 256, 256]


def test_config_from_text_raise_error_on_a_syntax_error() -> None:
    with pytest.raises(triton_repo.ConfigError, match="not a valid Triton model config"):
        triton_repo.config_from_text("name: 'x'\nmax_batch_size: [")


# --------------------------------------------------------------------- argument validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(kind="tpu"), r"kind='tpu'; expected one of \['cpu', 'gpu'\]"),
        (dict(fp16=True), "fp16=True needs tensorrt=True"),
        (dict(tensorrt=True, kind="cpu"), "tensorrt=True needs kind='gpu'"),
        (dict(max_batch_size=0), r"dynamic_batching=True needs max_batch_size > 0 \(got 0\)"),
        (dict(max_batch_size=-1), r"max_batch_size=-1; expected in \[0, "),
        (dict(instances=0), r"instances=0; expected in \[1, 64\]"),
        (dict(preferred_batch_sizes=[4, 16]), r"preferred_batch_sizes=16; expected in \[1, 8\]"),
        (dict(warmup_shape=(4, 64, 64)), r"warmup_shape=\(4, 64, 64\) for input 'x'; expected 3"),
        (dict(warmup_shape={"z": (3, 8, 8)}), "warmup_shape has no entry for input 'x'"),
        (dict(warmup_data="ones"), "warmup_data='ones'; expected one of"),
        (dict(num_versions=0), r"num_versions=0; expected in \[1, 1000\]"),
        (dict(intra_op_threads=0), r"intra_op_threads=0; expected in \[1, 1024\]"),
        (dict(max_queue_delay_us=1.5), r"max_queue_delay_us=1.5; expected an integer"),
        (dict(trt_cache_path="/models/trt"), r"trt_cache_path='/models/trt' needs tensorrt=True"),
        (dict(tensorrt=True, trt_cache_path="trt"), r"trt_cache_path='trt'; expected an absolute path"),
        (dict(tensorrt=True, trt_cache_path="/models/../etc"), r"without '\.\.'"),
    ],
)
def test_write_repository_raise_config_error_for_out_of_range_arguments(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path, kwargs: dict, match: str
) -> None:
    with pytest.raises(triton_repo.ConfigError, match=match):
        triton_repo.write_repository(
            tmp_path / "repo", "unet", onnx_path, options=triton_repo.ServingOptions(**kwargs)
        )
    assert not (tmp_path / "repo" / "unet").exists()


def test_tensorrt_without_a_cache_path_caches_no_engines() -> None:
    # The server deserialises the engines it finds in the cache folder: only one the user names.
    text = generate("production", dict(tensorrt=True))
    assert 'name: "tensorrt"' in text and "precision_mode" in text
    assert "trt_engine_cache" not in text
    assert "trt_engine_cache_path" in generate("production", GOLDEN_CASES["production_gpu_tensorrt_fp16"][1])


def test_write_repository_raise_error_when_batch_dim_is_static_and_batching_is_on(
    tmp_path: pathlib.Path,
) -> None:
    model = layer_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # x [1, 3, H, W]
    path = tmp_path / "static.onnx"
    onnx.save(model, path)
    with pytest.raises(triton_repo.ConfigError, match="input 'x' has a static batch dim 1"):
        triton_repo.write_repository(tmp_path / "repo", "unet", path)
    # Without batching the model's own dims are kept, batch dim included.
    version = triton_repo.write_repository(
        tmp_path / "repo", "unet", path,
        options=triton_repo.ServingOptions(max_batch_size=0, dynamic_batching=False),
    )
    config = triton_repo.config_from_text((version.parent / "config.pbtxt").read_text())
    assert list(config.input[0].dims) == [1, 3, -1, -1]
    assert list(config.model_warmup[0].inputs["x"].dims) == [1, 3, 256, 256]


def test_write_repository_raise_error_naming_the_old_keyword_and_the_new_call(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    # write_repository(..., max_batch_size=4) was the pre-0.2 call; options=ServingOptions(...) now.
    with pytest.raises(TypeError, match=r"got \['kind', 'max_batch_size'\].*options=ServingOptions\("
                       r"kind='cpu', max_batch_size=4\)") as info:
        triton_repo.write_repository(tmp_path / "repo", "unet", onnx_path, max_batch_size=4, kind="cpu")
    assert isinstance(info.value, triton_repo.ConfigError)
    with pytest.raises(triton_repo.ConfigError, match=r"unexpected keyword argument\(s\) \['batch'\]"):
        triton_repo.write_repository(tmp_path / "repo", "unet", onnx_path, batch=4)
    with pytest.raises(triton_repo.ConfigError, match=r"options is a dict; expected triton_repo\.Serving"):
        triton_repo.write_repository(tmp_path / "repo", "unet", onnx_path, options={"max_batch_size": 4})
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "is empty"),
        (".hidden", "starts with '.'"),
        ("..", "starts with '.'"),
        ("a/b", "contains '/'"),
        ("a\\b", r"contains '\\\\'"),
        ("un et", "contains ' '"),
        ("unét", "contains 'é'"),
        ("x" * 129, "has 129 characters; expected at most 128"),
        (3, "expected a str"),
    ],
)
def test_write_repository_raise_model_name_error_for_bad_names(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path, name: object, match: str
) -> None:
    with pytest.raises(triton_repo.ModelNameError, match=match):
        triton_repo.write_repository(tmp_path / "repo", name, onnx_path)  # type: ignore[arg-type]
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_model_name_error_is_a_value_error_and_a_pixeldcn_error() -> None:
    assert issubclass(triton_repo.ModelNameError, ValueError)
    assert issubclass(triton_repo.TritonRepoError, pc.PixelDCNError)


def test_valid_name_with_dots_dashes_and_underscores_is_accepted(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path
) -> None:
    version = triton_repo.write_repository(tmp_path / "repo", "unet-v2.1_fp16", onnx_path)
    assert version == tmp_path / "repo" / "unet-v2.1_fp16" / "1"


@pytest.mark.parametrize(
    ("setup", "kwargs", "match"),
    [
        ("missing", {}, "is not a file"),
        ("garbage", {}, "is not a valid ONNX model"),
        ("ok", dict(version=0), r"version=0; expected an integer >= 1 or None"),
        (
            "ok",
            dict(keep_versions=1, options=triton_repo.ServingOptions(num_versions=2)),
            r"keep_versions=1; expected None or an integer",
        ),
        ("ok", dict(external_data="copy"), "external_data='copy'; expected one of"),
    ],
)
def test_write_repository_raise_repository_error_for_bad_models_and_versions(
    tmp_path: pathlib.Path, onnx_path: pathlib.Path, setup: str, kwargs: dict, match: str
) -> None:
    path = onnx_path
    if setup == "missing":
        path = tmp_path / "nope.onnx"
    elif setup == "garbage":
        path = tmp_path / "garbage.onnx"
        path.write_bytes(b"\x00\x01 this is not protobuf \xff" * 10)
    with pytest.raises(triton_repo.RepositoryError, match=match):
        triton_repo.write_repository(tmp_path / "repo", "unet", path, **kwargs)


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


# ------------------------------------------------------------- the Python-backend runner


def double(output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A stand-in for InferenceSession.run: y = 2 x, recording the batch sizes it ran."""
    double.batches.append(feed["x"].shape[0])
    return [2 * feed["x"]]


double.batches = []  # type: ignore[attr-defined]


def test_runner_concatenates_same_shaped_requests_into_one_run_and_splits_back() -> None:
    rng = np.random.default_rng(0)
    requests = [{"x": rng.standard_normal((n, 3, 4, 4)).astype(np.float32)} for n in (1, 3, 2)]
    double.batches.clear()
    results = _backend_model.run_batched(double, requests, ["y"])
    assert double.batches == [6]  # one run for 1 + 3 + 2 samples
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], 2 * request["x"])


def test_runner_groups_requests_by_dtype_and_sample_shape() -> None:
    f32 = np.float32
    requests = [
        {"x": np.zeros((1, 3, 4, 4), f32)},
        {"x": np.zeros((2, 3, 8, 8), f32)},
        {"x": np.zeros((1, 3, 4, 4), f32)},
        {"x": np.zeros((1, 3, 4, 4), np.float16)},
    ]
    assert _backend_model.group_by_sample_shape(requests) == [[0, 2], [1], [3]]


def test_runner_raise_error_when_the_model_does_not_keep_the_batch_dim() -> None:
    def collapse(output_names, feed):
        return [feed["x"].sum(axis=0, keepdims=True)]

    requests = [{"x": np.ones((1, 3, 2, 2), np.float32)}, {"x": np.ones((2, 3, 2, 2), np.float32)}]
    with pytest.raises(RuntimeError, match=r"output 'y' has shape \[1, 3, 2, 2\] for 3 input samples"):
        _backend_model.run_batched(collapse, requests, ["y"])


def test_runner_batched_onnxruntime_run_equals_one_run_per_request(onnx_path: pathlib.Path) -> None:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    requests = [{"x": rng.standard_normal((n, 3, 5, 7)).astype(np.float32)} for n in (2, 1, 4)]
    results = _backend_model.run_batched(session.run, requests, ["y"])
    for request, result in zip(requests, results, strict=True):
        expected = session.run(["y"], request)[0]
        np.testing.assert_allclose(result["y"], expected, rtol=0, atol=1e-6)  # float32 reassociation


# --------------------------------------------------------------- client and launcher errors


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_refused_connection_raise_server_unavailable_error_not_a_timeout(protocol: str) -> None:
    client = triton_repo.Client(f"127.0.0.1:{closed_port()}", "unet", protocol=protocol, timeout=5)
    with pytest.raises(triton_repo.ServerUnavailableError, match="nothing answers at") as info:
        client.infer(np.zeros((1, 3, 4, 4), np.float32))
    assert not isinstance(info.value, TimeoutError)
    assert isinstance(info.value, ConnectionError)
    assert client.is_ready() is False
    with pytest.raises(triton_repo.ServerUnavailableError, match="nothing answered at"):
        client.wait_ready(timeout=0.5)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_that_accepts_but_never_answers_raise_server_timeout_error(protocol: str) -> None:
    import socket
    import time

    with socket.socket() as silent:  # listens (the kernel accepts), never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = triton_repo.Client(f"127.0.0.1:{port}", "unet", protocol=protocol, timeout=1)
        started = time.monotonic()
        with pytest.raises(triton_repo.ServerTimeoutError, match="did not answer within 1s") as info:
            client.infer(np.zeros((1, 3, 4, 4), np.float32))
        assert time.monotonic() - started < 10
    assert isinstance(info.value, TimeoutError)
    assert not isinstance(info.value, triton_repo.ServerUnavailableError)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(model="a/b"), triton_repo.ModelNameError, "contains '/'"),
        (
            dict(protocol="ftp"),
            triton_repo.ConfigError,
            r"protocol='ftp'; expected one of \('grpc', 'http'\)",
        ),
        (dict(timeout=0), triton_repo.ConfigError, "timeout=0; expected a positive number"),
    ],
)
def test_client_raise_error_for_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    arguments = {"model": "unet", **kwargs}
    model = arguments.pop("model")
    with pytest.raises(error, match=match):
        triton_repo.Client("127.0.0.1:1", model, **arguments)


def test_launcher_raise_error_for_a_missing_repository_or_a_bad_port(tmp_path: pathlib.Path) -> None:
    with pytest.raises(triton_repo.ServerStartError, match="is not a folder"):
        triton_repo.LocalTritonServer(tmp_path / "nope")
    with pytest.raises(triton_repo.ServerStartError, match=r"http_port=70000; expected a port"):
        triton_repo.LocalTritonServer(tmp_path, http_port=70000)


def test_launcher_raise_helpful_error_when_nvidia_pytriton_is_missing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real_find_spec(name, *a)
    )
    with pytest.raises(triton_repo.TritonNotInstalledError, match=r"pip install 'pixeldcn\[triton\]'"):
        triton_repo.LocalTritonServer(tmp_path)


# --------------------------------------------------------------------------------- the CLI


def test_cli_registers_serve_and_infer_with_handlers() -> None:
    parser = argparse.ArgumentParser(prog="pixeldcn")
    sub = parser.add_subparsers(dest="command")
    cli_serve.register(sub)
    cli_infer.register(sub)
    serve = parser.parse_args(["serve", "repo", "--host", "0.0.0.0", "--http-port", "8000"])
    assert (serve.repo, serve.host, serve.http_port, serve.grpc_port) == (
        pathlib.Path("repo"),
        "0.0.0.0",
        8000,
        None,
    )
    assert callable(serve.func)
    infer = parser.parse_args(
        ["infer", "--url", "h:1", "--model", "m", "--input", "x.npy", "--protocol", "http"]
    )
    assert (infer.url, infer.model, infer.protocol, infer.output) == ("h:1", "m", "http", None)
    assert callable(infer.func) and infer.func is not serve.func


def test_cli_infer_returns_exit_code_1_and_says_why_when_no_server_answers(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 4, 4), np.float32))
    argv = [
        "--url",
        f"127.0.0.1:{closed_port()}",
        "--model",
        "unet",
        "--input",
        str(tmp_path / "x.npy"),
    ]
    assert cli_infer.main(argv) == 1
    assert "nothing answers at" in capsys.readouterr().err


def test_cli_saves_multichannel_output_as_an_argmax_colour_mask(tmp_path: pathlib.Path) -> None:
    from PIL import Image

    y = np.zeros((1, 21, 4, 6), np.float32)
    y[0, 0, :, :3] = 1.0  # class 0 (black) on the left,
    y[0, 15, :, 3:] = 1.0  # class 15 (person, (192, 128, 128)) on the right
    (written,) = cli_infer.save_output(y, tmp_path / "mask.png")
    pixels = np.asarray(Image.open(written))
    assert pixels.shape == (4, 6, 3)
    assert tuple(pixels[0, 0]) == (0, 0, 0) and tuple(pixels[0, 5]) == (192, 128, 128)
    rgb = np.full((2, 3, 4, 4), 2.0, np.float32)  # 3 channels: clipped image, one file per sample
    assert [p.name for p in cli_infer.save_output(rgb, tmp_path / "img.png")] == ["img_0.png", "img_1.png"]
    assert np.asarray(Image.open(tmp_path / "img_0.png")).max() == 255


def test_cli_loads_a_png_as_float32_nchw_in_unit_range(tmp_path: pathlib.Path) -> None:
    from PIL import Image

    image = np.zeros((5, 7, 3), np.uint8)
    image[..., 0] = 255
    Image.fromarray(image).save(tmp_path / "in.png")
    x = cli_infer.load_input(tmp_path / "in.png", channels=3)
    assert x.dtype == np.float32 and x.shape == (1, 3, 5, 7)
    assert x[0, 0].min() == 1.0 and x[0, 1:].max() == 0.0
    with pytest.raises(triton_repo.InferenceInputError, match="the model takes 5 channels"):
        cli_infer.load_input(tmp_path / "in.png", channels=5)
    with pytest.raises(triton_repo.InferenceInputError, match=r"has suffix '\.txt'; expected \.npy"):
        cli_infer.load_input(tmp_path / "in.txt", channels=3)


def test_public_api_matches_all() -> None:
    import types

    # Submodules (cli_serve, cli_repo) become attributes once imported, e.g. by the pixeldcn command.
    public = {
        n for n in dir(triton_repo)
        if not n.startswith("_") and not isinstance(getattr(triton_repo, n), types.ModuleType)
    }  # fmt: skip
    assert public == set(triton_repo.__all__)


def test_triton_repo_imports_neither_torch_nor_exporters() -> None:
    code = (
        "import sys, triton_repo, triton_repo.cli_serve, triton_repo.cli_infer; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'exporters', 'pytriton')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
