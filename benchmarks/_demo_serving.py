"""What both demos share: numbered steps, a model repository written once per model, a short
served benchmark against in-process onnxruntime, and their tables."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Steps", "inprocess_latency", "latency_table", "served_benchmark", "write_once"]


class Steps:
    """``[i/n] text`` before a step, ``(seconds)`` after it."""

    def __init__(self, total: int) -> None:
        self.total, self.i, self.t0 = total, 0, time.perf_counter()

    def start(self, text: str) -> None:
        self.i += 1
        self.t0 = time.perf_counter()
        print(f"[{self.i}/{self.total}] {text}", flush=True)

    def done(self, text: str = "") -> None:
        print(f"      {text}{' ' if text else ''}({time.perf_counter() - self.t0:.1f} s)",
              flush=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_once(repo: Path, name: str, onnx_path: Path, options: Any) -> tuple[Path, bool]:
    """``onnx_path`` as a version of ``name`` in ``repo``, unless the newest version already
    holds the same bytes: then that version, unchanged. Returns (version folder, written).

    Running the demo again with the same model so adds no version (a repository served with
    ``pixeldcn serve`` does not grow by one model copy per run)."""
    from triton_repo import write_repository

    versions = sorted((p for p in (repo / name).glob("*/model.onnx") if p.parent.name.isdigit()),
                      key=lambda p: int(p.parent.name))
    if versions and _sha256(versions[-1]) == _sha256(onnx_path):
        return versions[-1].parent, False
    return write_repository(repo, name, onnx_path, options=options), True


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "mean": float(a.mean()), "n": len(ms)}


def served_benchmark(url: str, model: str, x: np.ndarray, requests: int,
                     concurrencies: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """Latency and throughput over gRPC at a few concurrency levels (warm-up excluded)."""
    from triton_repo import Client

    rows = []
    for conc in concurrencies:
        clients = [Client(url, model, protocol="grpc") for _ in range(conc)]
        for c in clients:
            c.infer(x)  # warm-up: connection and first run
        per = max(1, requests // conc)

        def worker(c: Any, per: int = per) -> list[float]:
            out = []
            for _ in range(per):
                t0 = time.perf_counter()
                c.infer(x)
                out.append((time.perf_counter() - t0) * 1e3)
            return out

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(conc) as pool:
            lat = [v for vs in pool.map(worker, clients) for v in vs]
        wall = time.perf_counter() - t0
        for c in clients:
            c.close()
        rows.append({"concurrency": conc, **_percentiles(lat), "throughput_per_s": len(lat) / wall})
    return rows


def inprocess_latency(onnx_path: Path, x: np.ndarray, runs: int) -> dict[str, float]:
    """The same model in onnxruntime in this process: ``runs`` timed runs after one warm-up."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": x})
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        ms.append((time.perf_counter() - t0) * 1e3)
    return _percentiles(ms)


def latency_table(local: dict[str, float], served: list[dict[str, Any]]) -> str:
    """In-process and served latency as a Markdown table."""
    lines = ["| path | concurrency | p50 ms | p90 ms | requests/s | p50 / in-process |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| onnxruntime in process | 1 | {local['p50']:.1f} | {local['p90']:.1f} | "
             f"{1e3 / local['mean']:.2f} | 1.00 |"]
    lines += [f"| Triton gRPC | {row['concurrency']} | {row['p50']:.1f} | {row['p90']:.1f} | "
              f"{row['throughput_per_s']:.2f} | {row['p50'] / local['p50']:.2f} |"
              for row in served]
    return "\n".join(lines)
