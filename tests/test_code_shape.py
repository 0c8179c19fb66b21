"""The shape of the code: no function of 80 lines or more, no source file over 600 lines.

A function that needs 80 lines does several things; a file over 600 lines has, in this project,
always turned out to hold two concepts (the triton_repo server, its deployment manifests and its
S3 repository were each split in two or three when they crossed it). Both limits cover the four
packages and the tests. A function's length runs from its ``def`` (decorators excluded) to its
last line, docstring included.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("pixeldcn_core", "exporters", "triton_repo", "benchmarks", "tests")
MAX_FUNCTION_LINES = 79
MAX_FILE_LINES = 600


def _sources() -> list[pathlib.Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_the_scan_sees_the_packages() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert {"pixeldcn_core/__init__.py", "exporters/pytorch/_export.py",
            "triton_repo/_server.py", "benchmarks/quality.py", "tests/test_code_shape.py"} <= names


def test_no_function_of_80_lines_or_more() -> None:
    long = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n"
                      + "\n".join(long))


def test_no_source_file_over_600_lines() -> None:
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in _sources()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]
    assert not big, (f"files over {MAX_FILE_LINES} lines (split them by concept):\n"
                     + "\n".join(big))
