"""Every input a ``pixeldcn`` command reads (docs/cli.md): one bound on pictures and ``.npy``
files, checked before decoding, and every file malformed at every command input (fuzz), each
ending in one line with exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from pixeldcn_core import cli as core_cli
from pixeldcn_core import images

from .repository_helpers import closed_port

# -- one bound on pictures and .npy inputs, checked before decoding -----------------------------


def png_bomb(path: Path, width: int, height: int, colour_type: int = 2) -> Path:
    """A valid PNG of ``width x height`` zero pixels (RGB by default), a few hundred kB on disk."""
    channels = {0: 1, 2: 3}[colour_type]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, colour_type, 0, 0, 0])
    comp = zlib.compressobj(9)
    row = bytes(1 + width * channels)  # filter byte 0, then zeros
    block = row * 256
    parts = [comp.compress(block) for _ in range(height // 256)]
    parts += [comp.compress(row * (height % 256)), comp.flush()]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


def npy_claiming(path: Path, shape: tuple[int, ...], dtype: str = "<f4") -> Path:
    """A .npy header declaring ``shape`` with no data behind it."""
    from numpy.lib import format as npy_format

    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    files = {
        # 81 M pixels: under Pillow's own bomb warning, decoded silently before (8+ GiB in quality)
        "png": png_bomb(d / "bomb.png", 9000, 9000),
        # 400 M pixels: Pillow's DecompressionBombError, a traceback before
        "png400": png_bomb(d / "bomb400.png", 20000, 20000, colour_type=0),
        "npy": npy_claiming(d / "huge.npy", (100_000, 100_000, 3)),
    }
    assert files["png"].stat().st_size < 500_000 and files["png400"].stat().st_size < 1_000_000
    for name in ("png", "npy"):
        folder = d / f"calib_{name}"
        folder.mkdir()
        (folder / files[name].name).write_bytes(files[name].read_bytes())
        files[f"calib_{name}"] = folder
    return files


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    import onnx

    from pixeldcn_core import LayerSpec, build_layer_model

    path = tmp_path_factory.mktemp("onnx") / "up.onnx"
    spec = LayerSpec("pixel_dcl", 3, 3, None, False)
    onnx.save(build_layer_model(spec.kind, spec.random_weights(0)), str(path))
    return path


def run_measured(*args: str, cwd: Path) -> tuple[int, str, int]:
    """Run ``pixeldcn ARGS`` in a child of a fresh Python; exit code, stderr, peak RSS in MiB."""
    code = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:], "
            "capture_output=True, text=True); print(json.dumps([r.returncode, r.stderr, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    proc = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "pixeldcn_core.cli", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    rc, stderr, maxrss_kib = json.loads(proc.stdout)
    return rc, stderr, maxrss_kib // 1024


def _entry_args(case: str, bombs: dict[str, Path], tiny_onnx: Path, tmp: Path) -> list[str]:
    kind, _, what = case.partition(":")
    file = str(bombs[what])
    return {
        "quality": ["quality", str(tiny_onnx), "--image", file],
        "demo": ["demo", "--image", file, "--out", str(tmp / "demo")],
        "infer": ["infer", "--url", f"127.0.0.1:{closed_port()}", "--model", "m", "--input", file],
        "export": ["export", "--arch", "unet", "--out", str(tmp / "u.onnx"), "--int8",
                   "--calibration", file],
    }[kind]


@pytest.mark.parametrize("case", ["quality:png", "quality:png400", "demo:png", "demo:png400",
                                  "infer:png", "infer:png400", "infer:npy", "export:calib_png",
                                  "export:calib_npy"])
def test_a_picture_bomb_or_a_huge_declared_npy_is_refused_by_its_header_in_one_line(
        case, bombs, tiny_onnx, tmp_path):
    rc, stderr, peak_mib = run_measured(*_entry_args(case, bombs, tiny_onnx, tmp_path), cwd=tmp_path)
    assert rc == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "over the bound" in lines[0], stderr
    assert re.search(r"declares (9000x9000|20000x20000|float32 \[100000)", lines[0]), stderr
    # decoding the RGB bomb would take 243 MB, and 972 MB more as float32 (quality)
    assert peak_mib < 600, f"peak RSS {peak_mib} MiB: the picture was decoded"


def test_the_bound_is_settable_by_flag_and_environment_and_a_bad_value_is_a_usage_error(
        bombs, tiny_onnx, tmp_path, monkeypatch, capsys):
    small = png_bomb(tmp_path / "small.png", 40, 30)
    argv = ["quality", str(tiny_onnx), "--image", str(small)]
    assert core_cli.main([*argv, "--max-image-pixels", "1000"]) == 2
    assert "declares 40x30 = 1,200 pixels, over the bound of 1,000" in capsys.readouterr().err
    monkeypatch.setenv(images.ENV_MAX_BYTES, "100")
    assert core_cli.main(argv) == 2
    assert "3,600 bytes decoded, over the bound of 100" in capsys.readouterr().err
    assert core_cli.main([*argv, "--max-image-bytes", "1e6"]) == 0  # the flag beats the environment
    capsys.readouterr()
    monkeypatch.setenv(images.ENV_MAX_BYTES, "lots")
    assert core_cli.main(argv) == 2
    assert "PIXELDCN_MAX_IMAGE_BYTES: got 'lots', expected a positive integer" in capsys.readouterr().err
    assert core_cli.main([*argv, "--max-image-pixels", "-5"]) == 2
    assert "--max-image-pixels: got '-5', expected a positive integer" in capsys.readouterr().err
    monkeypatch.delenv(images.ENV_MAX_BYTES)
    assert images.set_limits() == images.ImageLimits()


def test_load_npy_refuses_object_arrays_and_truncated_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(images.ImageError, match="holds Python objects"):
        images.load_npy(tmp_path / "obj.npy")
    np.save(tmp_path / "t.npy", np.zeros((4, 4), np.float32))
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:-8])
    with pytest.raises(images.ImageError, match=r"declares float32 \[4, 4\] but is truncated"):
        images.load_npy(tmp_path / "t.npy")
    np.save(tmp_path / "ok.npy", np.ones((2, 3), np.float32))
    assert images.load_npy(tmp_path / "ok.npy").sum() == 6


# -- fuzz: every file a command reads, malformed ------------------------------------------------

def _zip_bytes() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", b"\x00" * 16)
    return buf.getvalue()


JUNK = {
    "junk": bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8)),
    "empty": b"",
    "latin1": "name: \"caf\xe9\"\nmax_batch_size: 4\n".encode("latin-1"),
    "json_types": b'[1, "two", {"three": null}]',
    "json_wrong": b'{"withdraws": "all", "source": {"x": 1}, "benchmark": 7, "format": "v9"}',
    # a valid config.pbtxt whose request limit is not an integer (junk for any other reader)
    "bad_param": b'name: "m"\nmax_batch_size: 4\nparameters { key: "max_request_bytes" value { '
                 b'string_value: "lots" } }\n',
    "zip": _zip_bytes(),  # a zip archive that is not a torch checkpoint (KeyError in torch.load)
    "huge": None,  # a 9000 x 9000 PNG for .png inputs, else a .npy declaring 120 GB
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_onnx) -> Path:
    pytest.importorskip("tritonclient")
    from triton_repo import rollback, write_repository

    root = tmp_path_factory.mktemp("repo") / "models"
    write_repository(root, "m", tiny_onnx)
    write_repository(root, "m", tiny_onnx)
    rollback(root, "m")  # version 3 serves version 1's files, said by its pixeldcn-version.json
    return root


def _copy_repo(repo: Path, dest: Path) -> Path:
    import shutil

    return Path(shutil.copytree(repo, dest / "models", symlinks=True))


def _fuzz_cases():
    """(case id, suffix of the malformed file, argv builder(file, tmp, tiny_onnx, repo copy))."""
    yield "quality-model", ".onnx", lambda f, t, o, r: ["quality", f, "--image", str(t / "ok.png")]
    yield "quality-image", ".png", lambda f, t, o, r: ["quality", str(o), "--image", f]
    yield "check-model", ".onnx", lambda f, t, o, r: ["check", f, "--runtimes", "ort"]
    yield "infer-png", ".png", lambda f, t, o, r: ["infer", "--url", "127.0.0.1:1", "--model", "m",
                                                   "--input", f]
    yield "infer-npy", ".npy", lambda f, t, o, r: ["infer", "--url", "127.0.0.1:1", "--model", "m",
                                                   "--input", f]
    yield "demo-image", ".png", lambda f, t, o, r: ["demo", "--image", f, "--out", str(t / "d")]
    yield "repo-write-onnx", ".onnx", lambda f, t, o, r: ["repo", "write", str(t / "new"), "m", f]
    yield "repo-rollback-config", "config.pbtxt", lambda f, t, o, r: ["repo", "rollback", str(r), "m"]
    yield "repo-rollback-info", "info", lambda f, t, o, r: ["repo", "rollback", str(r), "m"]
    yield "repo-history-info", "info", lambda f, t, o, r: ["repo", "history", str(r), "m"]
    yield "deploy-config", "config.pbtxt", lambda f, t, o, r: [
        "deploy", "kubernetes", "--repository", "s3://bucket/models", "--out", str(t / "k8s"),
        "--models-from", str(r)]
    yield "bench-report", ".json", lambda f, t, o, r: ["bench", "report", f, "--no-plots"]
    yield "serve-repo", "file", lambda f, t, o, r: ["serve", f]
    yield "export-weights-pt", ".pt", lambda f, t, o, r: [
        "export", "--arch", "unet", "--depth", "2", "--base-channels", "4", "--out",
        str(t / "u.onnx"), "--weights", f]
    yield "export-weights-st", ".safetensors", lambda f, t, o, r: [
        "export", "--arch", "unet", "--depth", "2", "--base-channels", "4", "--out",
        str(t / "u.onnx"), "--weights", f]
    yield "export-calibration", ".png", lambda f, t, o, r: [
        "export", "--arch", "unet", "--out", str(t / "u.onnx"), "--int8", "--calibration",
        str(Path(f).parent)]


CASES = list(_fuzz_cases())


@pytest.mark.parametrize("junk", sorted(JUNK))
@pytest.mark.parametrize(("case", "suffix", "argv"), CASES, ids=[c[0] for c in CASES])
def test_a_malformed_file_at_any_command_input_ends_in_one_line_exit_1_or_2_never_a_traceback(
        case, suffix, argv, junk, tmp_path, tiny_onnx, repo, bombs, capsys, monkeypatch):
    if case.startswith("export") or case == "check-model":
        pytest.importorskip("torch" if case.startswith("export") else "onnxruntime")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(core_cli.DEBUG_ENV, raising=False)
    (tmp_path / "ok.png").write_bytes(png_bomb(tmp_path / "ok.png", 8, 8).read_bytes())
    r = _copy_repo(repo, tmp_path)
    if suffix == "config.pbtxt":
        target = r / "m" / "config.pbtxt"
    elif suffix == "info":
        target = r / "m" / "3" / "pixeldcn-version.json"
        assert target.is_file(), sorted(p.name for p in (r / "m" / "3").iterdir())
    else:
        folder = tmp_path / "in"
        folder.mkdir()
        target = folder / (f"input{suffix}" if suffix.startswith(".") else "input")
    content = JUNK[junk]
    if content is None:
        content = (bombs["png"] if suffix == ".png" else bombs["npy"]).read_bytes()
    target.write_bytes(content)
    try:
        rc = core_cli.main(argv(str(target), tmp_path, tiny_onnx, r))
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    err = capsys.readouterr().err
    if rc == 0:  # a file the command may ignore (a malformed info file counts as none)
        assert case.endswith("-info") and not err.strip(), (case, err)
        return
    assert rc in (1, 2), err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.startswith(f"pixeldcn {argv('f', tmp_path, tiny_onnx, r)[0]}: "), err


def test_every_corruption_of_a_torch_checkpoint_is_a_checkpoint_error_never_another_exception(tmp_path):
    # Seeded byte flips and truncations of a legacy (non-zip) and a zip checkpoint: before, some
    # ended in IndexError, struct.error or AssertionError tracebacks.
    torch = pytest.importorskip("torch")
    import io

    from exporters.pytorch import CheckpointError, read_checkpoint

    rng = np.random.default_rng(0)
    escaped = []
    for zip_format in (False, True):
        buf = io.BytesIO()
        torch.save({"w": torch.ones(3)}, buf, _use_new_zipfile_serialization=zip_format)
        base = buf.getvalue()
        for i in range(150):
            data = bytearray(base)
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            if i % 3 == 0:
                data = data[: int(rng.integers(1, len(data)))]
            path = tmp_path / f"c{int(zip_format)}_{i}.pt"
            path.write_bytes(bytes(data))
            try:
                read_checkpoint(path)
            except CheckpointError:
                pass
            except Exception as err:
                escaped.append(f"{path.name}: {type(err).__name__}: {err}")
    assert not escaped, "\n".join(escaped[:10])
