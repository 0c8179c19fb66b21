"""The benchmark protocol: plan -> run -> typed result -> one report path; errors and exit codes."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from pathlib import Path
from typing import Any

import pytest

import benchmarks
from benchmarks import (
    FORMAT_VERSION,
    BenchmarkError,
    BenchmarkUsageError,
    Result,
    ResultVersionError,
    Target,
    load_result,
)
from benchmarks import _protocol as protocol
from benchmarks.cli_bench import MODULES
from pixeldcn_core import PixelDCNError
from pixeldcn_core.cli import main

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"


# -- a toy benchmark, plugged in from outside the package ----------------------------------------


@dataclasses.dataclass(frozen=True)
class ToySettings:
    command: str
    size: int
    lose: bool

    def __post_init__(self) -> None:
        if self.size < 1:
            raise BenchmarkUsageError(f"--size must be >= 1, got {self.size}")


class Toy:
    name = "toy"
    help = "a toy benchmark of the tests"

    def add_arguments(self, p: Any) -> None:
        p.add_argument("--size", type=int, default=3)
        p.add_argument("--lose", action="store_true")

    def plan(self, args: Any) -> ToySettings:
        return ToySettings(args.command_line, args.size, args.lose)

    def run(self, s: ToySettings, *, progress: bool = True) -> Result:
        rows = [{"i": i, "square": i * i} for i in range(s.size)]
        target = Target("squares", "sum of squares", float(sum(r["square"] for r in rows)), 100.0)
        return Result(self.name, {"cpu_model": "toy"}, {"command": s.command, "size": s.size},
                      {"rows": rows, "lost": int(s.lose)}, (target,))

    def markdown(self, result: Result) -> str:
        return "# Toy\n\n" + "\n".join(f"{r['i']}: {r['square']}" for r in result["rows"])

    def plots(self, result: Result, out_dir: Path) -> list[Path]:
        return []

    def failure(self, result: Result) -> str | None:
        return "the toy lost one" if result["lost"] else None


@pytest.fixture
def toy() -> Any:
    bench = benchmarks.register_benchmark(Toy())
    yield bench
    protocol._REGISTERED.pop("toy")


def test_a_registered_benchmark_runs_plan_run_report_and_its_json_carries_the_version(
        toy, tmp_path, capsys):
    assert main(["bench", "toy", "--size", "4", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "toy.json").read_text())
    assert data["benchmark"] == "toy" and data["format_version"] == FORMAT_VERSION == 2
    assert data["settings"] == {"command": "pixeldcn bench toy --size 4 --out " + str(tmp_path),
                                "size": 4}
    assert data["rows"][3] == {"i": 3, "square": 9}
    assert data["targets"] == [{"name": "squares", "description": "sum of squares",
                                "measured": 14.0, "threshold": 100.0, "op": "<=", "unit": "x",
                                "note": "", "status": "PASS"}]
    assert (tmp_path / "toy.md").read_text() == "# Toy\n\n0: 0\n1: 1\n2: 4\n3: 9\n"
    out = capsys.readouterr().out
    assert "[toy] target sum of squares: 14.0 <= 100 -> PASS" in out
    assert f"[toy] wrote {tmp_path}/toy.json, toy.md" in out


def test_report_renders_a_stored_result_again_identically(toy, tmp_path):
    assert main(["bench", "toy", "--out", str(tmp_path / "a")]) == 0
    assert main(["bench", "report", str(tmp_path / "a" / "toy.json"), "--out",
                 str(tmp_path / "b")]) == 0
    for name in ("toy.json", "toy.md"):
        assert (tmp_path / "b" / name).read_text() == (tmp_path / "a" / name).read_text()


def test_a_benchmark_failure_is_one_line_and_exit_code_1_after_the_report_is_written(
        toy, tmp_path, capsys):
    assert main(["bench", "toy", "--lose", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "pixeldcn bench: error: the toy lost one\n"
    assert json.loads((tmp_path / "toy.json").read_text())["lost"] == 1


def test_a_bad_setting_of_a_plugged_benchmark_is_exit_code_2(toy, tmp_path, capsys):
    assert main(["bench", "toy", "--size", "0", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "pixeldcn bench: error: --size must be >= 1, got 0\n"
    assert not tmp_path.joinpath("toy.json").exists()


def test_bench_help_lists_every_benchmark_the_report_command_and_the_exit_codes(toy, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for name in (*MODULES, "toy", "report"):
        assert name in text
    assert "1 a failure" in text and "2 a usage error" in text


# -- the result file: versioned, refused in another version --------------------------------------


def test_result_round_trips_through_its_json():
    r = Result("x", {"cpu_model": "c"}, {"command": "pixeldcn bench x"}, {"rows": [1, 2]},
               (Target("t", "d", 0.5, 1.0, note="n"),))
    back = Result.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r and back["rows"] == [1, 2] and back.get("missing", 7) == 7


@pytest.mark.parametrize("old", [{"schema": 1}, {"format_version": 1}, {"format_version": 3}, {}])
def test_a_result_of_another_format_version_is_refused_naming_both_versions(old, tmp_path):
    data = {"benchmark": "layers", **old, "machine": {}, "settings": {}, "configs": []}
    path = tmp_path / "layers.json"
    path.write_text(json.dumps(data))
    version = old.get("format_version", old.get("schema"))
    with pytest.raises(ResultVersionError, match=(
            f"layers.json: result format version {version}, this pixeldcn reads version 2; "
            r"run `pixeldcn bench layers` again")):
        load_result(path)


def test_report_of_an_old_result_is_one_line_and_exit_code_2(tmp_path, capsys):
    path = tmp_path / "layers.json"
    path.write_text(json.dumps({"benchmark": "layers", "schema": 1}))
    assert main(["bench", "report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixeldcn bench: error: ") and "format version 1" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such result file"),
    ("{not json", "not a JSON result file"),
    ("[1, 2]", "not a pixeldcn benchmark result"),
    ('{"benchmark": "nope", "format_version": 2}', "a result of benchmark 'nope', expected one of"),
    ('{"benchmark": "layers", "format_version": 2, "targets": [{"foo": 1}]}',
     "a target is not a target"),
    ('{"benchmark": "layers", "format_version": 2}',
     "the layers result lacks what its report needs: KeyError"),
])
def test_report_of_something_else_is_a_usage_error(content, message, tmp_path, capsys):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    assert main(["bench", "report", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_the_error_types_map_to_the_documented_exit_codes():
    assert issubclass(BenchmarkError, PixelDCNError) and not issubclass(BenchmarkError, ValueError)
    assert issubclass(BenchmarkUsageError, BenchmarkError)
    assert issubclass(BenchmarkUsageError, ValueError)
    assert issubclass(ResultVersionError, BenchmarkUsageError)


# -- the committed results are current and their reports are views of them ----------------------


# Committed JSON that is not a benchmark result: data behind a README table, written by a helper
# function (`benchmarks._training.init_indices()`), not by `bench`.
AUXILIARY = {"quality/init_indices.json"}


def _rel(p: pathlib.Path) -> str:
    return p.relative_to(RESULTS).as_posix()


def test_auxiliary_result_data_exists_and_parses_and_every_other_json_is_a_result():
    for name in sorted(AUXILIARY):
        assert json.loads((RESULTS / name).read_text()), name
        with pytest.raises(BenchmarkUsageError, match="not a pixeldcn benchmark result"):
            load_result(RESULTS / name)


@pytest.mark.parametrize("path", [p for p in sorted(RESULTS.rglob("*.json"))
                                  if _rel(p) not in AUXILIARY], ids=_rel)
def test_committed_results_load_and_render_to_the_committed_markdown(path, tmp_path):
    result = load_result(path)
    assert result.format_version == FORMAT_VERSION
    assert main(["bench", "report", str(path), "--out", str(tmp_path), "--no-plots"]) == 0
    assert (tmp_path / path.with_suffix(".md").name).read_text() == \
        path.with_suffix(".md").read_text()


# -- usage errors of bench layers: one line, exit code 2, nothing written -------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--budget", "-5"], "--budget must be > 0 seconds (0: none), got -5.0"),
    (["--batches", "1,x"], "--batches: expected comma-separated positive integers, got '1,x'"),
    (["--batches", "0"], "--batches: expected comma-separated positive integers, got '0'"),
    (["--kinds", "dcl,nope"], "unknown up-sampling layer kind 'nope'; expected one of bilinear,"),
    (["--providers", "rocm"], "--providers: unknown provider 'rocm'; expected a comma-separated"),
    (["--threads", "-1"], "--threads must be >= 0, got -1"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
])
def test_bench_layers_usage_errors_are_one_line_and_exit_code_2(argv, message, tmp_path, capsys):
    rc = main(["bench", "layers", "--quick", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("pixeldcn bench: error: ") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_a_usage_error_before_anything_runs(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("keep")
    assert main(["bench", "layers", "--quick", "--out", str(a_file)]) == 2
    assert capsys.readouterr().err == f"pixeldcn bench: error: --out {a_file}: not a folder\n"
    assert a_file.read_text() == "keep"


def test_a_report_that_cannot_be_written_is_a_failure_exit_code_1(toy, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "toy.md").mkdir()  # a folder where the Markdown file must go
    assert main(["bench", "toy", "--out", str(locked)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pixeldcn bench: error: cannot write the report to {locked}: ")
    assert len(err.splitlines()) == 1
