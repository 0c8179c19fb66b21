"""The ``pixeldcn`` command line as a contract (docs/cli.md): one naming pattern for its modules, a
start that imports nothing heavy, help without reST markup, and one line (exit 2 usage, 1
failure, 130 Ctrl-C) for every error. Its inputs (bounded pictures, malformed files) are in
test_cli_inputs.py.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

import pixeldcn_core as pc
from pixeldcn_core import cli as core_cli

from .repository_helpers import closed_port

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pixeldcn_core", "exporters", "triton_repo", "benchmarks")


def entry_points() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(data["project"]["entry-points"]["pixeldcn.commands"])




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
        latin1 = 'name: "caf\xe9"\nmax_batch_size: 4\n'.encode("latin-1")  # not UTF-8
        s3.put_object(Bucket="pixeldcn-fuzz", Key="prod/m/config.pbtxt", Body=latin1)
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
