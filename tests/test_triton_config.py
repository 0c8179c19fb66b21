"""triton_repo configs without a server: generated configs against golden files (round trip), the
local flavour against production, and the validation of ``write_repository``'s serving options.

Golden configs live in tests/golden/triton/; regenerate them after an intended change with
``PIXELDCN_UPDATE_GOLDEN=1 pytest tests/test_triton_config.py``.
"""

from __future__ import annotations

import os
import pathlib

import onnx
import pytest

import pixeldcn_core as pc
import triton_repo

from .repository_helpers import generate, layer_model

GOLDEN = pathlib.Path(__file__).parent / "golden" / "triton"
UPDATE_GOLDEN = os.environ.get("PIXELDCN_UPDATE_GOLDEN") == "1"


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
