"""``pixeldcn quality``: index of a model's output beside bicubic's; clean errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from exporters.pytorch import ExportOptions, export_onnx  # noqa: E402
from exporters.pytorch._sr import SRNet  # noqa: E402


def pixeldcn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pixeldcn_core.cli", "quality", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("quality_cli")
    torch.manual_seed(0)
    # x2 up-sampling with He-random DCL phases and no bicubic residual: a checkerboard painter.
    painter = SRNet("dcl", 2, 1, 8, 1, 4, "default", residual=False)
    export_onnx(painter, d / "dcl.onnx", (1, 1, 32, 32), options=ExportOptions(dynamic=True, verify=False))
    export_onnx(painter, d / "static.onnx", (1, 1, 32, 32),
                options=ExportOptions(dynamic=False, verify=False))
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = (127 + 100 * np.sin(xx / 7.0) * np.cos(yy / 9.0)).astype(np.uint8)
    Image.fromarray(smooth).save(d / "photo.png")
    Image.fromarray(smooth[:16, :16]).save(d / "small.png")
    (d / "text.png").write_text("not an image")
    return {"dcl": d / "dcl.onnx", "static": d / "static.onnx", "photo": d / "photo.png",
            "small": d / "small.png", "text": d / "text.png", "dir": d}


def test_prints_the_output_index_beside_bicubics_and_saves_the_map(files):
    out = files["dir"] / "map.png"
    proc = pixeldcn(str(files["dcl"]), "--image", str(files["photo"]), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines()}
    index = float(lines["index"].split()[1])
    bicubic = float(lines["bicubic"].split()[1])
    assert "input [1, 1, 64, 64] -> output [1, 1, 128, 128]" in lines["model"]
    assert index > 0.3 and bicubic < 0.02  # He-random DCL phases vs smooth interpolation
    assert "checkerboard artifacts" in lines["ratio"]
    m = np.asarray(Image.open(out))
    assert m.shape == (128, 128) and m.mean() > 60  # mostly band energy: bright


def test_a_static_model_takes_a_centre_crop_of_a_larger_image(files):
    proc = pixeldcn(str(files["static"]), "--image", str(files["photo"]))
    assert proc.returncode == 0, proc.stderr
    assert "input [1, 1, 32, 32] -> output [1, 1, 64, 64]" in proc.stdout


@pytest.mark.parametrize(
    "args,match",
    [
        (["{dcl}", "--image", "{dir}/missing.png"], "--image: .*missing.png' does not exist"),
        (["{dir}/missing.onnx", "--image", "{photo}"], "missing.onnx' does not exist"),
        (["{dcl}", "--image", "{text}"], "text.png is not an image Pillow can read"),
        (["{static}", "--image", "{small}"],
         "--image is 16x16 pixels, smaller than the model's input 32x32"),
        (["{dcl}", "--image", "{small}", "--stride", "9"],
         "expected each side >= 2 \\* stride = 18"),
        (["{dcl}", "--image", "{photo}", "--stride", "1"], "--stride must be an int >= 2, got 1"),
        (["{text}", "--image", "{photo}"], "text.png is not an ONNX model"),
        (["--image", "{photo}"], "expected either MODEL.onnx or --url HOST:PORT --model NAME"),
        (["{dcl}", "--image", "{photo}", "--out", "{dir}/map.jpg"], "expected a path ending in .png"),
        (["--url", "127.0.0.1:1", "--image", "{photo}"], "--url needs --model NAME"),
        (["--url", "127.0.0.1:1", "--model", "../etc", "--image", "{photo}"], r"\.\./etc"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(files, args, match):
    proc = pixeldcn(*[a.format(**files) for a in args])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    import re

    assert re.search(match, proc.stderr), proc.stderr


def test_a_server_that_does_not_answer_exits_1(files):
    proc = pixeldcn("--url", "127.0.0.1:1", "--model", "sr", "--image", str(files["photo"]))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.server
@pytest.mark.slow
def test_a_served_model_gives_the_same_index_as_its_onnx_file(files, tmp_path):
    from triton_repo import LocalTritonServer, ServingOptions, write_repository

    repo = tmp_path / "repo"
    write_repository(repo, "painter", files["dcl"], options=ServingOptions(max_batch_size=2))
    local = pixeldcn(str(files["dcl"]), "--image", str(files["photo"]))
    assert local.returncode == 0, local.stderr
    with LocalTritonServer(repo) as server:
        served = pixeldcn("--url", server.grpc_url, "--model", "painter", "--image",
                          str(files["photo"]))
        missing = pixeldcn("--url", server.grpc_url, "--model", "nothere", "--image",
                           str(files["photo"]))
    assert served.returncode == 0, served.stderr
    index = {p.stdout.split("index")[1].split()[0] for p in (local, served)}
    assert len(index) == 1, (local.stdout, served.stdout)  # same 4 decimals
    assert "painter at 127.0.0.1:" in served.stdout
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "nothere" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
