"""Every command and code block of README.md runs, in order, as a reader would paste them.

The README is the entry point: a command in it that fails is the first thing a newcomer meets.
This test reads its fenced blocks and runs them in one scratch folder, in document order:

- ``bash`` blocks: each ``pixeldcn ...`` line runs as ``python -m pixeldcn_core.cli ...`` and
  must exit 0; a line ending in ``&`` starts in the background (``pixeldcn serve``) and must print
  its ready line; ``make TARGET`` lines must name a target of the Makefile (``make test`` is what
  CI itself runs; ``make demo`` is ``pixeldcn demo``, run by tests/test_demo.py);
- ``python`` blocks run in one fresh interpreter each, in the same folder.

The only substitutions are the ones a reader makes: ``photo.png`` is a 256x256 photograph
(scikit-image's astronaut) and the literal gRPC port of the serve example is a free port.
"""

from __future__ import annotations

import os
import pathlib
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

pytestmark = [pytest.mark.server, pytest.mark.slow]


def blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(README.read_text(encoding="utf-8"))]


def commands(body: str) -> list[str]:
    """The command lines of a bash block, comments removed."""
    out = []
    for line in body.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_the_readme_is_an_entry_point() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
    assert "QUALITY_HEADLINE" not in text


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = {m.group(1) for m in re.finditer(r"^([a-z][\w-]*):", makefile, re.M)}
    for lang, body in blocks():
        for line in commands(body) if lang == "bash" else []:
            if line.startswith("make "):
                assert line.split()[1] in targets, line


def test_every_command_and_code_block_of_the_readme_runs(tmp_path: pathlib.Path) -> None:
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()[::2, ::2]).save(tmp_path / "photo.png")  # 256 x 256 RGB
    port = str(_free_port())
    background: list[subprocess.Popen] = []
    ran: list[str] = []
    try:
        for lang, body in blocks():
            if lang == "bash":
                for line in commands(body):
                    if line.startswith("make "):
                        continue
                    assert line.startswith("pixeldcn "), f"README command not covered: {line}"
                    line = line.replace("8001", port)
                    ran.append(line)
                    _run_command(line, tmp_path, background)
            elif lang == "python":
                ran.append(body.splitlines()[0])
                done = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=_env(),
                                      capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, f"README python block failed:\n{body}\n{done.stderr[-3000:]}"
    finally:
        for proc in background:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert any(line.startswith("pixeldcn serve") for line in ran)
    assert (tmp_path / "mask.png").is_file()
    for proc in background:
        assert proc.returncode in (0, 130), proc.returncode


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_command(line: str, cwd: pathlib.Path, background: list[subprocess.Popen]) -> None:
    argv = shlex.split(line.removesuffix("&").strip())
    cmd = [sys.executable, "-m", "pixeldcn_core.cli", *argv[1:]]
    if line.endswith("&"):
        # SIGINT's default restored: a shell starts background jobs with it ignored, and the
        # server would inherit that and never stop on the SIGINT this test sends at the end
        proc = subprocess.Popen(cmd, cwd=cwd, env={**_env(), "PYTHONUNBUFFERED": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=_default_sigint)
        background.append(proc)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(s) for s in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        deadline = time.monotonic() + 300
        seen = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                out = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(out)
            if "pixeldcn infer" in out:  # serve's ready line: the command to paste
                return
        raise AssertionError(f"`{line}` never said it was ready:\n{''.join(seen)[-3000:]}")
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{done.stderr[-3000:]}"


def test_readme_blocks_parse() -> None:
    # the parser itself: the first python block is the core example, and it computes
    langs = [lang for lang, _ in blocks()]
    assert "bash" in langs and "python" in langs
    first = next(body for lang, body in blocks() if lang == "python")
    scope: dict[str, object] = {}
    exec(compile(first, "README.md", "exec"), scope)  # our own README
    assert np.asarray(scope["y_ref"]).shape == (1, 8, 64, 64)
