"""Load generation and server statistics: closed-loop clients measured in windows until stable
(perf_analyzer's rule), and deltas of Triton's statistics API. Used by ``bench serve`` (levels of
concurrency) and ``bench lean`` (paired served / in-process runs)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import numpy as np

from ._errors import BenchmarkError

__all__ = [
    "STABILITY",
    "STABLE_WINDOWS",
    "LevelResult",
    "is_stable",
    "latency_ms",
    "measure_level",
    "model_stats",
    "server_version",
    "settled_stats",
    "stats_delta",
    "stats_int",
]

STABILITY = 0.10  # perf_analyzer's default --stability-percentage
STABLE_WINDOWS = 3

# ---------------------------------------------------------------------------------------------
# statistics


def stats_int(v: Any) -> int:
    return int(v or 0)  # gRPC's JSON writes 64-bit counters as strings


def model_stats(stats: dict[str, Any], model: str) -> dict[str, Any]:
    entries = [s for s in stats.get("model_stats", []) if s.get("name") == model]
    if not entries:
        raise BenchmarkError(f"the server's statistics have no model {model!r}")
    return entries[0]


def _flatten(entry: dict[str, Any]) -> dict[str, int]:
    out = {"inference_count": stats_int(entry.get("inference_count")),
           "execution_count": stats_int(entry.get("execution_count"))}
    for part, value in entry.get("inference_stats", {}).items():
        out[f"{part}_count"] = stats_int(value.get("count"))
        out[f"{part}_ns"] = stats_int(value.get("ns"))
    return out


def stats_delta(before: dict[str, Any], after: dict[str, Any], model: str) -> dict[str, Any]:
    """What the server did between two ``get_inference_statistics`` snapshots of ``model``.

    Returns counts (successful and failed requests, inferences, executions), the mean batch
    the server executed, and per-request means in ms of queueing and of compute (input, infer,
    output).
    """
    a, b = _flatten(model_stats(before, model)), _flatten(model_stats(after, model))
    d = {k: b.get(k, 0) - a.get(k, 0) for k in b}
    ok = d.get("success_count", 0)
    # A counter that went down: the model was reloaded and its statistics restarted from 0.
    reset = any(v < 0 for v in d.values())

    def per_request_ms(part: str) -> float | None:
        n = d.get(f"{part}_count", 0)
        return d.get(f"{part}_ns", 0) / n / 1e6 if n else None

    return {
        "reset": reset,
        "success": ok,
        "fail": d.get("fail_count", 0),
        "inferences": d.get("inference_count", 0),
        "executions": d.get("execution_count", 0),
        "mean_executed_batch": (d["inference_count"] / d["execution_count"])
        if d.get("execution_count") else None,
        "queue_ms": per_request_ms("queue"),
        "compute_input_ms": per_request_ms("compute_input"),
        "compute_infer_ms": per_request_ms("compute_infer"),
        "compute_output_ms": per_request_ms("compute_output"),
        "request_ms": per_request_ms("success"),
    }


def settled_stats(client: Any, model: str, *, base: dict[str, Any] | None = None,
                  expect_success: int | None = None, timeout: float = 3.0) -> dict[str, Any]:
    """A statistics snapshot taken once the server's bookkeeping has caught up.

    Triton counts a request after its response is sent, so a snapshot taken right after the
    client's last answer can miss it. Without ``expect_success``: poll until two snapshots
    20 ms apart agree. With it: poll until ``expect_success`` successes were counted since
    ``base`` (or ``timeout`` passes: the difference is then reported as lost).
    """
    deadline = time.perf_counter() + timeout
    last = client.statistics()
    while time.perf_counter() < deadline:
        time.sleep(0.02)
        now = client.statistics()
        if expect_success is not None and base is not None:
            if stats_delta(base, now, model)["success"] >= expect_success:
                return now
        elif _flatten(model_stats(now, model)) == _flatten(model_stats(last, model)):
            return now
        last = now
    return last


def is_stable(throughputs: list[float], latencies: list[float], *,
              threshold: float = STABILITY, windows: int = STABLE_WINDOWS) -> bool:
    """perf_analyzer's rule: over the last ``windows`` windows, every throughput and every mean
    latency lies within ``threshold`` of their average."""
    if len(throughputs) < windows or len(latencies) < windows:
        return False
    for series in (throughputs[-windows:], latencies[-windows:]):
        avg = sum(series) / windows
        if avg <= 0 or any(abs(v / avg - 1) > threshold for v in series):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# one level


@dataclasses.dataclass
class LevelResult:
    latencies_s: list[float]  # of the requests that completed in the reported windows
    window_throughputs: list[float]  # requests/s per window
    window_latencies_ms: list[float]  # mean latency per window
    stable: bool
    stop_reason: str
    sent: int  # every request the clients sent (warm-up included)
    succeeded: int
    failed: int
    errors: list[str]
    reported_window_s: float


class _ClosedLoop:
    """``concurrency`` workers calling ``infer()`` back to back, each after ``warmup`` untimed
    calls; every answer's completion time and latency is recorded. A context manager: the
    timed calls start on entering (all workers warm), the workers stop on leaving."""

    def __init__(self, infer: Any, concurrency: int, warmup: int) -> None:
        self.infer, self.warmup = infer, warmup
        self.lock = threading.Lock()
        self.done: list[tuple[float, float]] = []  # (completion time, latency)
        self.errors: list[str] = []
        self.sent = self.ok = self.failed = 0
        self.stop = threading.Event()
        self.warm = threading.Barrier(concurrency + 1)
        self.threads = [threading.Thread(target=self._worker, daemon=True)
                        for _ in range(concurrency)]

    def _call(self) -> float | None:
        with self.lock:
            self.sent += 1
        t0 = time.perf_counter()
        try:
            self.infer()
        except Exception as err:  # a failed request is counted, not fatal
            with self.lock:
                self.failed += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{type(err).__name__}: {str(err)[:200]}")
            return None
        latency = time.perf_counter() - t0
        with self.lock:
            self.ok += 1
        return latency

    def _worker(self) -> None:
        for _ in range(self.warmup):  # connection, first runs
            self._call()
        try:
            self.warm.wait()
        except threading.BrokenBarrierError:
            return
        while not self.stop.is_set():
            latency = self._call()
            if latency is not None:
                with self.lock:
                    self.done.append((time.perf_counter(), latency))

    def between(self, t0: float, t1: float) -> list[float]:
        """Latencies of the requests completed in ``[t0, t1)``."""
        with self.lock:
            return [lat for t, lat in self.done if t0 <= t < t1]

    def __enter__(self) -> _ClosedLoop:
        for t in self.threads:
            t.start()
        self.warm.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def measure_level(infer: Any, concurrency: int, *, window_s: float, max_windows: int,
                  max_requests: int, min_windows: int = STABLE_WINDOWS, warmup: int = 1
                  ) -> LevelResult:
    """Run ``concurrency`` closed-loop workers calling ``infer()`` until stable or bounded.

    Every worker sends ``warmup`` requests before the first window opens. Windows are timed on
    the completion time of the requests; a level stops when stable (after at least
    ``min_windows`` windows), after ``max_windows`` windows, or once ``max_requests`` requests
    completed.
    """
    thr: list[float] = []  # requests/s per window
    lat_ms: list[float] = []  # mean latency per window
    reason = "max_windows"
    with _ClosedLoop(infer, concurrency, warmup) as load:
        edges = [time.perf_counter()]
        while len(thr) < max_windows:
            time.sleep(max(0.0, edges[-1] + window_s - time.perf_counter()))
            edges.append(time.perf_counter())
            window = load.between(edges[-2], edges[-1])
            thr.append(len(window) / (edges[-1] - edges[-2]))
            lat_ms.append(1e3 * float(np.mean(window)) if window else float("inf"))
            if len(thr) >= min_windows and is_stable(thr, lat_ms):
                reason = "stable"
                break
            if len(load.done) >= max_requests:
                reason = "max_requests"
                break
    lo, hi = edges[max(0, len(edges) - 1 - STABLE_WINDOWS)], edges[-1]
    return LevelResult(
        latencies_s=load.between(lo, hi), window_throughputs=thr, window_latencies_ms=lat_ms,
        stable=reason == "stable", stop_reason=reason, sent=load.sent, succeeded=load.ok,
        failed=load.failed, errors=load.errors, reported_window_s=hi - lo)


def latency_ms(latencies_s: list[float]) -> dict[str, float | int]:
    if not latencies_s:
        return {"p50": float("nan"), "p90": float("nan"), "p95": float("nan"),
                "p99": float("nan"), "mean": float("nan"), "n": 0}
    a = np.asarray(latencies_s) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "n": int(a.size)}


def server_version(url: str, protocol: str) -> str | None:
    """``name version`` of the Triton server at ``url``, or ``None`` when it does not say."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as tc

            meta = tc.InferenceServerClient(url).get_server_metadata(as_json=True)
        else:
            import tritonclient.http as tc

            meta = tc.InferenceServerClient(url).get_server_metadata()
        return f"{meta.get('name')} {meta.get('version')}"
    except Exception:  # informative only
        return None
