"""The ``pixeldcn serve`` and ``infer`` command line without a server (parser, exit codes, image
input and output) and the package surface (``__all__``, no torch or exporters imported).
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import triton_repo
from triton_repo import cli_infer, cli_serve

from .repository_helpers import closed_port

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
