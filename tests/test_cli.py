"""The ``pixeldcn`` command line as a contract (docs/cli.md): one naming pattern for its modules, a
start that imports nothing heavy, help without reST markup, one bound on every picture and .npy
input checked before decoding, and one line (exit 2 usage, 1 failure, 130 Ctrl-C) for every error.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tomllib

import pixeldcn_core as pc
from pixeldcn_core import cli as core_cli
from pixeldcn_core import images

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pixeldcn_core", "exporters", "triton_repo", "benchmarks")


def entry_points() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(data["project"]["entry-points"]["pixeldcn.commands"])


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- one naming pattern -------------------------------------------------------------------------


def test_every_command_NAME_is_registered_by_package_cli_NAME_register_and_no_other_cli_module_exists():
    eps = entry_points()
    for name, value in eps.items():
        module, attr = value.split(":")
        package, _, leaf = module.partition(".")
        assert (package in PACKAGES, leaf, attr) == (True, f"cli_{name}", "register"), value
        assert (ROOT / package / f"{leaf}.py").is_file(), value
    cli_files = {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                 if re.search(r"(^|_)cli(_|$)", p.stem)}  # cli.py, cli_x.py, _cli_x.py, x_cli.py
    expected = {v.split(":")[0].replace(".", "/") + ".py" for v in eps.values()} | {"pixeldcn_core/cli.py"}
    assert cli_files == expected


def test_the_installed_entry_points_are_the_ones_pyproject_declares():
    from importlib import metadata

    installed = {ep.name: ep.value for ep in metadata.entry_points(group=core_cli.ENTRY_POINT_GROUP)}
    assert installed == entry_points(), "stale install: run pip install -e . (or make setup) again"


# -- start-up: nothing heavy before a command runs ----------------------------------------------

HEAVY = ("torch", "onnxruntime", "onnxscript", "matplotlib", "boto3", "skimage", "PIL", "yaml",
         "kubernetes", "openvino", "tract", "onnx2torch", "safetensors", "tqdm")
BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""


def test_help_and_version_of_every_command_import_no_torch_onnxruntime_pillow_or_other_heavy_module():
    # tritonclient is imported by triton_repo/__init__ (0.1 s): not blocked here.
    commands = sorted(entry_points())
    code = BLOCKER + f"""
from pixeldcn_core.cli import main
codes = []
for argv in (["--help"], ["--version"], *[[c, "--help"] for c in {commands!r}]):
    try:
        codes.append(main(argv))
    except SystemExit as e:
        codes.append(e.code)
print("CODES", codes)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"CODES {[0] * (len(commands) + 2)}" in proc.stdout, proc.stdout[-2000:] + proc.stderr
    assert "unavailable commands" not in proc.stdout, proc.stdout
    assert "blocked" not in proc.stdout + proc.stderr


# -- help text ----------------------------------------------------------------------------------


def _texts(parser: argparse.ArgumentParser, where: str = "pixeldcn"):
    for attr in ("description", "epilog"):
        if getattr(parser, attr):
            yield where, getattr(parser, attr)
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            yield f"{where} {'/'.join(action.option_strings) or action.dest}", action.help
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"{where} {choice.dest}", choice.help or ""
            for name, sub in action.choices.items():
                yield from _texts(sub, f"{where} {name}")


def test_no_help_text_of_any_command_shows_rest_markup():
    markup = re.compile(r"``|:[a-z]+:`")
    found = [f"{where}: {text[:80]!r}" for where, text in _texts(core_cli.build_parser())
             if markup.search(text)]
    assert not found, "\n".join(found)


def test_deploy_kubernetes_port_flags_have_their_own_help_not_the_s3_secrets():
    helps = dict(_texts(core_cli.build_parser()))
    for flag in ("--http-port", "--grpc-port", "--metrics-port"):
        text = helps[f"pixeldcn deploy kubernetes {flag}"]
        assert text.startswith("container ports") and "Secret" not in text, text
    assert "AWS_ACCESS_KEY_ID" in helps["pixeldcn deploy kubernetes --s3-secret"]


def test_attribute_help_reads_names_with_digits_and_shared_lines():
    class Options:
        """Options.

        Attributes:
            s3_secret: Secret holding ``KEY``,
                referenced by :class:`~a.B`.
            a, b2: both.
        """

    assert core_cli.attribute_help(Options) == {"s3_secret": "Secret holding KEY, referenced by a.B.",
                                                "a": "both.", "b2": "both."}


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


# -- one line for every error, 130 on Ctrl-C ----------------------------------------------------


def test_ctrl_c_while_the_commands_load_exits_130_in_one_line(tmp_path):
    # A real SIGINT, delivered while a plugin's register() runs (the first seconds of any command).
    code = """
import os, signal, sys, time
from importlib import metadata
from pixeldcn_core import cli
signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job ignores it
class Slow:
    name, value = "slow", "x:y"
    def load(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)
cli.metadata = type("M", (), {"entry_points": staticmethod(lambda group: [Slow()])})
sys.exit(cli.main(["--help"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "pixeldcn: interrupted"


def test_ctrl_c_inside_a_command_exits_130_in_one_line(capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    def register(sub):
        sub.add_parser("slow").set_defaults(func=interrupted)

    assert core_cli.run_command(register, "slow", []) == 130
    assert capsys.readouterr().err.strip() == "pixeldcn slow: interrupted"


def test_an_unexpected_error_is_one_line_saying_internal_error_and_debug_shows_the_traceback(
        monkeypatch, capsys):
    def broken(args):
        raise ZeroDivisionError("boom")

    def register(sub):
        sub.add_parser("boom").set_defaults(func=broken)

    assert core_cli.run_command(register, "boom", []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and "ZeroDivisionError: boom" in err
    monkeypatch.setenv(core_cli.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        core_cli.run_command(register, "boom", [])


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "soon"])
def test_seconds_flags_refuse_inf_nan_and_negatives_as_usage_errors(value, capsys):
    for argv in (["repo", "push", "r", "s3://b/p", "--settle-secs", value],
                 ["repo", "rm", "s3://b/p", "m", "1", "--settle-secs", value],
                 ["serve", "r", "--ready-timeout", value],
                 ["infer", "--url", "h:1", "--model", "m", "--input", "x.npy", "--timeout", value]):
        with pytest.raises(SystemExit) as exc:
            core_cli.main(argv)
        assert exc.value.code == 2
        assert "expected a finite number >= 0" in capsys.readouterr().err


def test_serve_on_a_missing_folder_exits_2_naming_the_folder(tmp_path, capsys):
    assert core_cli.main(["serve", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"pixeldcn serve: error: REPO {str(tmp_path / 'nope')!r} does not exist; "
                           "expected a model repository folder (write one with pixeldcn repo write) "
                           "or s3://BUCKET/PREFIX")


def test_infer_says_where_serve_prints_its_address_when_nothing_answers(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 4, 4), np.float32))
    port = closed_port()
    assert core_cli.main(["infer", "--url", f"127.0.0.1:{port}", "--model", "m", "--input",
                          str(tmp_path / "x.npy"), "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pixeldcn serve prints the grpc address it listens on" in err


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


# -- newcomer path: serve, then infer with the address serve printed ----------------------------


@pytest.mark.server
@pytest.mark.slow
def test_infer_reaches_serve_at_the_address_it_printed_and_explains_a_side_that_is_not_a_multiple(
        tmp_path, capsys):
    """README's path: ``serve REPO``, then ``infer --url`` what it printed; a 451 x 300 photo to a
    U-Net is refused with the size rule, not onnxruntime's Concat error."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tritonclient")
    from PIL import Image

    from exporters.pytorch import ExportOptions, UNet, export_onnx
    from triton_repo import write_repository

    torch.manual_seed(0)
    net = UNet(3, 2, 4, 3, "pixel_dcl").eval()  # depth 3: sides must be multiples of 4
    onnx_path = export_onnx(net, tmp_path / "unet.onnx", (1, 3, 32, 32),
                            options=ExportOptions(verify=False))
    write_repository(tmp_path / "repo", "unet", onnx_path)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    proc = subprocess.Popen([sys.executable, "-m", "triton_repo.cli_serve", str(tmp_path / "repo")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stdout:  # blocks until serve prints its addresses (ready)
            match = re.match(r"send a picture: pixeldcn infer --url (\S+) ", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, proc.stderr.read() if proc.poll() is not None else "no address"
        assert core_cli.main(["infer", "--url", url, "--model", "unet", "--input",
                              str(tmp_path / "ok.png")]) == 0
        assert "shape [1, 2, 32, 48]" in capsys.readouterr().out
        assert core_cli.main(["infer", "--url", url, "--model", "unet", "--input",
                              str(tmp_path / "photo.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "refused the 451x300 input" in err, err
        assert "multiple of 16" in err and "size multiple" in err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_a_closed_stdout_ends_quietly_without_a_broken_pipe_traceback():
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "pixeldcn_core.cli", "layer", "--size", "4", "4"],
                              stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr


def test_repo_ls_and_deploy_on_a_bucket_whose_config_is_not_utf8_end_in_one_line(tmp_path, monkeypatch,
                                                                                   capsys):
    """A hand-uploaded latin-1 config.pbtxt in S3 (moto server): before, a UnicodeDecodeError
    traceback from ``repo ls`` and ``deploy``."""
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    from .scale_helpers import MotoS3Server, set_env

    server = MotoS3Server(tmp_path / "moto.log").start()
    try:
        set_env(monkeypatch, server.env())
        s3 = boto3.client("s3", endpoint_url=server.endpoint_url)
        s3.create_bucket(Bucket="pixeldcn-fuzz")
        s3.put_object(Bucket="pixeldcn-fuzz", Key="prod/m/config.pbtxt", Body=JUNK["latin1"])
        s3.put_object(Bucket="pixeldcn-fuzz", Key="prod/m/1/model.onnx", Body=b"x")
        for argv in (["repo", "ls", "s3://pixeldcn-fuzz/prod"],
                     ["deploy", "kubernetes", "--repository", "s3://pixeldcn-fuzz/prod", "--out",
                      str(tmp_path / "k8s")]):
            assert core_cli.main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1, err
            assert "s3://pixeldcn-fuzz/prod/m/config.pbtxt: not UTF-8 text" in err, err
    finally:
        server.stop()


RULE_KINDS = [k for k in pc.layer_kinds() if pc.get_kind(k).in_per_out is not None]


@pytest.mark.parametrize("kind", RULE_KINDS)
def test_layer_and_check_layer_derive_out_channels_from_the_channel_rule(kind, capsys):
    """carafe, dysample and the bilinear kinds: no --out-channels needed (C = Cin / in_per_out)."""
    c = 8 // pc.get_kind(kind).in_per_out
    assert core_cli.main(["layer", "--kind", kind, "--in-channels", "8", "--size", "6", "4",
                          "--batch", "1"]) == 0
    assert f"8->{c} ch" in capsys.readouterr().out
    assert core_cli.main(["check", "--layer", kind, "--in-channels", "8",
                          "--runtimes", "onnxruntime,reference"]) == 0
    assert "result: PASS" in capsys.readouterr().out
