"""``pixeldcn bench serve``: a model served by Triton, latency and throughput against concurrency.

Against any running Triton (``--url``), or, by default, the local ``tritonserver`` of
``triton_repo.LocalTritonServer`` on a repository this command writes (the U-Net with PixelDCL at
a small size, exported through ``exporters.pytorch``) or on a given ``--repo``.

For every protocol (gRPC, HTTP), batch size and concurrency level, ``concurrency`` closed-loop
clients send requests back to back. The run is cut into measurement windows; a level ends when
the last three windows are stable (as perf_analyzer: throughput and mean latency of each within
10 % of their average), or at ``--max-windows``/``--max-requests``, and is then marked unstable.
Latency percentiles and throughput come from the last three windows. The server's queue and
compute times are deltas of Triton's statistics API over the level, and the client's request
count is checked against the server's success count: nothing may be lost. At concurrency 1,
served requests alternate with in-process onnxruntime runs of the same model.onnx, so the
serving overhead is a median of paired ratios, free of the host's drift.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import BenchmarkError, BenchmarkUsageError
from ._load import (
    STABILITY,
    STABLE_WINDOWS,
    latency_ms,
    measure_level,
    model_stats,
    server_version,
    settled_stats,
    stats_delta,
    stats_int,
)
from ._machine import machine_info, physical_cores
from ._plots import serve_plots
from ._protocol import Result
from ._report import Target, fmt, machine_line, markdown_table, split_list, targets_section
from ._stats import paired_ratio, summarize

__all__ = ["BENCHMARK", "ServeSettings"]

DEFAULTS: dict[str, Any] = {"concurrency": "1,2,4,8,16", "batches": "1,4", "window": 2.0, "max_windows": 8,
            "max_requests": 5000, "paired_rounds": 60, "size": 128, "base_channels": 16,
            "depth": 5}
QUICK_DEFAULTS: dict[str, Any] = {"concurrency": "1,2", "batches": "1", "window": 0.25, "max_windows": 4,
                  "max_requests": 3000, "paired_rounds": 15, "size": 32, "base_channels": 8,
                  "depth": 3}
PROTOCOLS = ("grpc", "http")


# ---------------------------------------------------------------------------------------------
# the model and the server


def _export_default_model(tmp: Path, s: ServeSettings) -> tuple[Path, str, Path]:
    """The U-Net with ``s.up`` at a small size, exported and written as a repository."""
    try:
        import torch

        from exporters.pytorch import build_network, export_onnx
        from triton_repo import ServingOptions, write_repository
    except ImportError as exc:
        raise BenchmarkError(
            f"bench serve without --url/--repo exports a U-Net: it needs torch and the exporters "
            f"(pip install 'pixeldcn[all]') ({exc})") from exc
    torch.manual_seed(s.seed)
    net = build_network("unet", s.up, num_classes=21, base_channels=s.base_channels,
                        depth=s.depth).eval()
    onnx_path = export_onnx(net, tmp / "unet.onnx", input_shape=(1, 3, s.size, s.size))
    name = f"unet_{s.up}"
    repo = tmp / "model_repository"
    write_repository(repo, name, onnx_path, options=ServingOptions(
        max_batch_size=max(s.batches), kind="cpu", warmup_shape=(3, s.size, s.size)))
    return repo, name, onnx_path


def _find_onnx(repo: Path, model: str) -> Path | None:
    versions = sorted((p for p in (repo / model).glob("*/model.onnx")),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    return versions[-1] if versions else None


def _single_model(repo: Path) -> str:
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    if len(models) != 1:
        raise BenchmarkUsageError(
            f"--repo {repo} holds {len(models)} models {models}; pick one with --model")
    return models[0]


def _input_for(info: Any, batch: int, fallback_size: int, seed: int) -> np.ndarray:
    dims = list(info.shape[1:] if info.max_batch_size > 0 else info.shape)
    dims = [fallback_size if d < 0 else d for d in dims]
    if len(dims) == 3 and dims[0] < 0:
        dims[0] = 3
    x = np.random.default_rng(seed).standard_normal([batch, *dims])
    return x.astype(info.dtype)


# ---------------------------------------------------------------------------------------------
# the settings


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """The plan of ``pixeldcn bench serve`` (see :meth:`Serve.plan`).

    ``urls`` (protocol -> HOST:PORT) names a running server; without it the local tritonserver
    serves ``repo``, or a repository holding the U-Net with ``up`` (``size``, ``base_channels``,
    ``depth``) that the run exports.
    """

    command: str
    quick: bool
    protocols: tuple[str, ...]
    batches: tuple[int, ...]
    concurrency: tuple[int, ...]
    window_s: float
    max_windows: int
    max_requests: int
    min_windows: int
    warmup: int
    paired_rounds: int
    threads: int
    urls: Mapping[str, str] | None = None
    model: str | None = None
    repo: str | None = None
    onnx: str | None = None
    up: str = "pixel_dcl"
    size: int = 128
    base_channels: int = 16
    depth: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.protocols or set(self.protocols) - set(PROTOCOLS):
            raise BenchmarkUsageError("--protocols: expected grpc, http or both, got "
                                      f"{','.join(self.protocols)!r}")
        for flag, value, least in (("--window", self.window_s, 0.001), ("--warmup", self.warmup, 0),
                                   ("--rounds", self.paired_rounds, 1), ("--size", self.size, 1),
                                   ("--max-requests", self.max_requests, 1)):
            if value < least:
                raise BenchmarkUsageError(f"{flag} must be >= {least:g}, got {value:g}")
        if self.repo and not Path(self.repo).is_dir():
            raise BenchmarkUsageError(f"--repo {self.repo} is not a folder")

    def to_json(self, run: _Run) -> dict[str, Any]:
        names = ("command", "quick", "protocols", "batches", "concurrency", "window_s",
                 "max_windows", "max_requests", "min_windows", "warmup")
        return {**{n: (list(v) if isinstance(v := getattr(self, n), tuple) else v) for n in names},
                "paired_rounds": self.paired_rounds if run.paired else 0,
                "stability": STABILITY, "stable_windows": STABLE_WINDOWS,
                "threads_in_process": self.threads, "model": run.model,
                "input_shape": list(run.inputs[min(self.batches)].shape[1:]),
                "setup_s": round(run.setup_s, 1), **run.source,
                "server_version": run.server_version}


def _resolve_urls(args: Any, protocols: tuple[str, ...]) -> dict[str, str] | None:
    """protocol -> HOST:PORT from ``--url``/``--grpc-url``/``--http-url``; ``None`` if none."""
    if not (args.url or args.grpc_url or args.http_url):
        return None
    if not args.model:
        raise BenchmarkUsageError("--url needs --model: the name of the model to benchmark")
    urls: dict[str, str] = {}
    if args.url and "," in args.url:
        return {p: _replica_urls(args.url, protocols) for p in protocols}
    if args.url:
        url = args.url
        for prefix in ("http://", "https://", "grpc://"):
            url = url.removeprefix(prefix)
        host, _, port = url.rstrip("/").partition(":")
        if port and len(protocols) != 1:
            raise BenchmarkUsageError(
                f"--url {args.url} names one port, while --protocols has {list(protocols)}; give "
                "--url HOST (default ports 8001 gRPC, 8000 HTTP), or --grpc-url and --http-url")
        if not host or (port and not port.isdigit()):
            raise BenchmarkUsageError(f"--url: expected HOST or HOST:PORT, got {args.url!r}")
        urls = {p: f"{host}:{port or (8001 if p == 'grpc' else 8000)}" for p in protocols}
    urls.update({p: u for p, u in (("grpc", args.grpc_url), ("http", args.http_url)) if u})
    missing = [p for p in protocols if p not in urls]
    if missing:
        raise BenchmarkUsageError(f"no URL for protocol(s) {missing}; give --url or "
                                  "--grpc-url/--http-url")
    return {p: urls[p] for p in protocols}


def _replica_urls(text: str, protocols: tuple[str, ...]) -> str:
    """``--url H1:P1,H2:P2,...``: replicas of one server, spread over by one client."""
    if len(protocols) != 1:
        raise BenchmarkUsageError(f"--url {text} names replicas of one protocol, while "
                                  f"--protocols has {list(protocols)}; give --protocols grpc or http")
    parts = [u.strip() for u in text.split(",")]
    for u in parts:
        host, _, port = u.partition(":")
        if not host or not port.isdigit():
            raise BenchmarkUsageError(f"--url: expected HOST:PORT,HOST:PORT,..., got {u!r} in {text!r}")
    return ",".join(parts)


class _Aggregate:
    """Statistics of a model summed over replicas, in one server's JSON shape (what
    :func:`stats_delta` reads), so every level's nothing-lost check covers all of them."""

    def __init__(self, client: Any, model: str) -> None:
        self.client, self.model = client, model

    def statistics(self) -> dict[str, Any]:
        total: dict[str, Any] = {"name": self.model, "inference_count": 0, "execution_count": 0,
                                 "inference_stats": {}}
        for url, st in self.client.statistics().items():
            if st is None:
                raise BenchmarkError(f"replica {url} did not answer its statistics")
            entry = model_stats(st, self.model)
            for key in ("inference_count", "execution_count"):
                total[key] += stats_int(entry.get(key))
            for part, v in entry.get("inference_stats", {}).items():
                acc = total["inference_stats"].setdefault(part, {"count": 0, "ns": 0})
                acc["count"] += stats_int(v.get("count"))
                acc["ns"] += stats_int(v.get("ns"))
        return {"model_stats": [total]}


def _replica_figures(client: Any) -> dict[str, Any]:
    """Per-replica client and server counts, and the client's retries (one protocol)."""
    clients, servers = client.replica_stats(), client.server_success_counts()
    return {"counts": client.counts(), "replicas": {
        url: {"client_ok": st.ok, "client_failed": st.failed, "server_success": servers.get(url)}
        for url, st in clients.items()}}


# ---------------------------------------------------------------------------------------------
# one run


@dataclasses.dataclass
class _Run:
    """What a run learns on the way: the server, its clients, the inputs, the measurements."""

    model: str = ""
    urls: dict[str, str] = dataclasses.field(default_factory=dict)
    onnx_path: Path | None = None
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    setup_s: float = 0.0
    clients: dict[str, Any] = dataclasses.field(default_factory=dict)
    inputs: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    in_process: dict[str, Any] = dataclasses.field(default_factory=dict)
    paired: dict[str, Any] = dataclasses.field(default_factory=dict)
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    server_version: str | None = None


def _start_server(stack: ExitStack, s: ServeSettings, run: _Run) -> Any:
    """Start the local tritonserver on ``--repo`` or on a repository of an exported U-Net."""
    from triton_repo import LocalTritonServer

    if s.repo:
        repo = Path(s.repo)
        run.model = s.model or _single_model(repo)
        run.source = {"server": "local tritonserver", "repo": "given (--repo)"}
    else:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pixeldcn-serve-")))
        print(f"[serve] export the U-Net with {s.up} at {s.size}x{s.size} (base "
              f"{s.base_channels}, depth {s.depth}) and write a repository", flush=True)
        repo, run.model, run.onnx_path = _export_default_model(tmp, s)
        run.source = {"server": "local tritonserver", "repo": "written by the benchmark",
                      "exported": {"network": "UNet", "up": s.up, "size": s.size,
                                   "base_channels": s.base_channels, "depth": s.depth,
                                   "classes": 21}}
    run.onnx_path = run.onnx_path or _find_onnx(repo, run.model)
    print("[serve] start the local tritonserver", flush=True)
    return stack.enter_context(LocalTritonServer(repo))


def _connect(stack: ExitStack, s: ServeSettings, run: _Run) -> Any:
    """Start or reach the server, open one client per protocol; returns the statistics client."""
    from triton_repo import connect

    t0 = time.perf_counter()
    server = None
    if s.urls:
        run.urls, run.model = dict(s.urls), s.model or ""
        run.source = {"server": "external", "urls": run.urls}
    else:
        server = _start_server(stack, s, run)
        run.urls = {"grpc": server.grpc_url, "http": server.http_url}
    run.setup_s = time.perf_counter() - t0
    run.clients = {p: stack.enter_context(connect(run.urls[p], run.model, protocol=p,
                                                  timeout=120.0)) for p in s.protocols}
    stats = run.clients[s.protocols[0]]
    if hasattr(stats, "replica_stats"):  # several URLs: one ReplicaClient
        stats.wait_ready(timeout=60.0)
        stats = _Aggregate(stats, run.model)
    if server is not None:
        # The Python backend writes __pycache__ into the version folder when it loads
        # model.py; the server's repository poll sees the change and reloads the model once,
        # which resets its statistics. Let that happen before anything is counted.
        time.sleep(2.5 * server.config.poll_secs)
        stats.wait_ready(timeout=60.0)
    info = run.clients[s.protocols[0]].info()
    for b in s.batches:
        if info.max_batch_size and b > info.max_batch_size:
            raise BenchmarkUsageError(f"--batches {b}: model {run.model!r} accepts at most "
                                      f"max_batch_size={info.max_batch_size}")
    run.inputs = {b: _input_for(info, b, s.size, s.seed) for b in s.batches}
    return stats


def _paired_c1(s: ServeSettings, run: _Run, stats: Any) -> None:
    """Served requests alternating with in-process onnxruntime runs of the same model.onnx."""
    from ._ort import ProviderChoice, make_runner, make_session

    if run.onnx_path is None or not run.onnx_path.is_file():
        return
    choice = ProviderChoice("cpu", s.threads)
    sess = make_session(run.onnx_path.read_bytes(), choice)
    x1 = run.inputs[min(s.batches)]
    run_local = make_runner(sess, {sess.get_inputs()[0].name: x1}, choice)
    run_local()
    for p in s.protocols:
        run.clients[p].infer(x1)  # warm connection
        served, local = [], []
        before = settled_stats(stats, run.model)
        for _ in range(s.paired_rounds):
            t0 = time.perf_counter()
            run.clients[p].infer(x1)
            t1 = time.perf_counter()
            run_local()
            served.append(t1 - t0)
            local.append(time.perf_counter() - t1)
        after = settled_stats(stats, run.model, base=before, expect_success=s.paired_rounds)
        delta = stats_delta(before, after, run.model)
        run.paired[p] = {
            "batch": int(x1.shape[0]), "served_ms": summarize(served),
            "in_process_ms": summarize(local),
            "served_over_in_process": paired_ratio(served, local),
            # Model-size independent: what serving adds to one request, in ms.
            "overhead_ms": float(np.median(1e3 * (np.asarray(served) - np.asarray(local)))),
            "rounds_ms": {"served": [1e3 * t for t in served],
                          "in_process": [1e3 * t for t in local]},
            "server": delta, "client_requests": s.paired_rounds,
            "lost": None if delta["reset"] else s.paired_rounds - delta["success"],
        }
    run.in_process = {"batch": int(x1.shape[0]), "threads": s.threads, "median_ms": float(
        np.median([p["in_process_ms"]["median"] for p in run.paired.values()]))}


def _level(s: ServeSettings, run: _Run, stats: Any, p: str, b: int, c: int) -> dict[str, Any]:
    """One protocol, batch and concurrency: the sweep's JSON row."""
    client, x = run.clients[p], run.inputs[b]
    before = settled_stats(stats, run.model)
    level = measure_level(lambda: client.infer(x), c, window_s=s.window_s,
                          max_windows=s.max_windows, max_requests=s.max_requests,
                          min_windows=s.min_windows, warmup=s.warmup)
    after = settled_stats(stats, run.model, base=before, expect_success=level.succeeded)
    server = stats_delta(before, after, run.model)
    lat = latency_ms(level.latencies_s)
    span = level.reported_window_s
    row: dict[str, Any] = {
        "protocol": p, "batch": b, "concurrency": c, "latency_ms": lat,
        "throughput_per_s": lat["n"] * b / span if span > 0 else None,
        "requests_per_s": lat["n"] / span if span > 0 else None,
        "stable": level.stable, "stop_reason": level.stop_reason,
        "windows": len(level.window_throughputs),
        "window_requests_per_s": level.window_throughputs,
        "window_mean_latency_ms": level.window_latencies_ms,
        "client": {"sent": level.sent, "succeeded": level.succeeded, "failed": level.failed,
                   "errors": level.errors},
        "server": server, "lost": None if server["reset"] else level.succeeded - server["success"],
    }
    if run.in_process and b == run.in_process["batch"]:
        row["p50_over_in_process"] = lat["p50"] / run.in_process["median_ms"]
    print(f"[serve] {p:4s} b{b} c{c:<3d} p50 {fmt(lat['p50'], 1)} ms p99 {fmt(lat['p99'], 1)} ms "
          f"{fmt(row['throughput_per_s'], 1)} inf/s "
          f"{'stable' if level.stable else 'UNSTABLE (' + level.stop_reason + ')'}; "
          f"client {level.succeeded} ok / server {server['success']} ok", flush=True)
    return row


def serve_targets(result: Mapping[str, Any], settings: Mapping[str, Any]) -> list[Target]:
    g = result["paired_c1"].get("grpc")
    local = settings["server"].startswith("local")
    return [Target(
        "served_grpc_c1_p50_over_in_process",
        "local Triton, gRPC, concurrency 1: served p50 / in-process onnxruntime "
        "(median of paired ratios)",
        g["served_over_in_process"]["median"] if g and local else None, 1.15,
        note=("not a local server" if not local else "" if not g else
              f"serving adds {g['overhead_ms']:.2f} ms per request to "
              f"{g['in_process_ms']['median']:.1f} ms in process: the bound holds for models "
              f"of >= {g['overhead_ms'] / 0.15:.0f} ms in process"))]


# ---------------------------------------------------------------------------------------------
# report


def _paired_md(paired: Mapping[str, Any]) -> list[str]:
    rows = []
    for p, v in paired.items():
        sv = v["server"]
        outside = (v["served_ms"]["mean"] - sv["request_ms"]) if sv["request_ms"] else None
        rows.append([p, v["batch"], fmt(v["served_ms"]["median"], 2),
                     fmt(v["in_process_ms"]["median"], 2),
                     f"**{fmt(v['served_over_in_process']['median'])}**",
                     fmt(v["overhead_ms"], 2), fmt(sv["request_ms"], 2),
                     fmt(sv["queue_ms"], 3), fmt(sv["compute_input_ms"], 3),
                     fmt(sv["compute_infer_ms"], 2), fmt(sv["compute_output_ms"], 3),
                     fmt(outside, 2), f"{v['client_requests']} / {sv['success']}"])
    return ["## Serving overhead at concurrency 1 (served and in-process runs alternated)", "",
            markdown_table(["protocol", "batch", "served p50 ms", "in-process p50 ms",
                            "served / in-process", "added ms (paired median)",
                            "server request ms", "queue", "compute input", "compute infer",
                            "compute output", "outside the server ms (mean)",
                            "client / server requests"], rows), "",
            "Server times are Triton's per-request means over these requests (statistics "
            "deltas); 'outside the server' is the client's mean latency minus the server's "
            "request time: (de)serialisation, the protocol stack and the client.", ""]


def _sweep_md(result: Result) -> list[str]:
    rows = []
    for r in result["rows"]:
        lat, sv = r["latency_ms"], r["server"]
        rows.append([r["protocol"], r["batch"], r["concurrency"], fmt(lat["p50"], 1),
                     fmt(lat["p90"], 1), fmt(lat["p95"], 1), fmt(lat["p99"], 1),
                     fmt(r["throughput_per_s"], 1), "yes" if r["stable"] else "**no**",
                     fmt(sv["queue_ms"], 2), fmt(sv["compute_infer_ms"], 1),
                     fmt(sv["mean_executed_batch"], 2),
                     f"{r['client']['succeeded']} / {sv['success']}"])
    return ["## Concurrency sweep", "", markdown_table(
        ["protocol", "batch", "concurrency", "p50 ms", "p90", "p95", "p99", "inferences/s",
         "stable", "server queue ms", "server infer ms", "executed batch",
         "client ok / server ok"], rows), "",
        "Latency and throughput from the last three windows of each level; server times are "
        "per request over the whole level (Triton statistics deltas). Requests lost (client "
        f"successes - server successes): {result['lost_total']}; levels that could not be "
        f"checked (server statistics reset by a model reload): {result['unchecked_levels']}.",
        ""]


def serve_markdown(result: Result) -> str:
    s = result.settings
    lines = [
        "# Served by Triton (`pixeldcn bench serve`)", "",
        machine_line(result.machine, ("onnxruntime", "tritonclient"),
                     f"server {s.get('server_version')}"),
        f"Settings: `{s['command']}`; model `{s['model']}` input {s['input_shape']} per sample; "
        f"windows of {s['window_s']} s, stable when the last {s['stable_windows']} windows' "
        f"throughput and mean latency are within {int(100 * s['stability'])} % of their average "
        f"(perf_analyzer's rule), at most {s['max_windows']} windows or {s['max_requests']} "
        "requests per level; closed-loop clients (one request in flight each).", "",
        *targets_section("Targets", result.targets),
        *(_paired_md(result["paired_c1"]) if result["paired_c1"] else []), *_sweep_md(result),
        *_replicas_md(result.get("replicas"))]
    return "\n".join(lines)


def _replicas_md(replicas: Mapping[str, Any] | None) -> list[str]:
    if not replicas:
        return []
    c = replicas["counts"]
    rows = [[url, v["client_ok"], v["client_failed"], v["server_success"]]
            for url, v in replicas["replicas"].items()]
    return ["## Replicas (one client spreading requests, failing over)", "",
            markdown_table(["replica", "client ok", "client failed attempts",
                            "server successes (whole run)"], rows), "",
            f"Aggregate: {c['answered']} answered, {c['retries']} retried on another replica, "
            f"{c['failed_calls']} failed calls. The sweep's server figures are summed over the "
            "replicas.", ""]


# ---------------------------------------------------------------------------------------------
# the benchmark


class Serve:
    """``pixeldcn bench serve`` as a :class:`benchmarks.Benchmark`."""

    name = "serve"
    help = "a model served by Triton: latency/throughput against concurrency"

    def add_arguments(self, p: Any) -> None:
        p.add_argument("--url", default=None,
                       help="a running Triton: HOST (ports 8001 gRPC, 8000 HTTP) or HOST:PORT "
                            "with one protocol, or replicas HOST:PORT,HOST:PORT,... (one "
                            "protocol; aggregate and per-replica figures); needs --model")
        p.add_argument("--grpc-url", default=None, help="HOST:PORT of a running Triton's gRPC")
        p.add_argument("--http-url", default=None, help="HOST:PORT of a running Triton's HTTP")
        p.add_argument("--repo", default=None,
                       help="start the local tritonserver on this model repository")
        p.add_argument("--model", default=None,
                       help="model name (default: the repository's only one)")
        p.add_argument("--onnx", default=None,
                       help="the model.onnx for the in-process comparison (default: from the repo)")
        p.add_argument("--up", default="pixel_dcl",
                       help="up-sampling kind of the U-Net exported when no --url/--repo is given")
        p.add_argument("--size", type=int, default=None, help="U-Net input size (default 128)")
        p.add_argument("--base-channels", type=int, default=None, help="U-Net width (default 16)")
        p.add_argument("--depth", type=int, default=None, help="U-Net depth (default 5)")
        p.add_argument("--protocols", default="grpc,http", help="grpc, http or both (default)")
        p.add_argument("--concurrency", default=None, help="levels, default 1,2,4,8,16")
        p.add_argument("--batches", default=None, help="batch sizes, default 1,4")
        p.add_argument("--window", type=float, default=None, help="window seconds (default 2)")
        p.add_argument("--max-windows", type=int, default=None,
                       help="windows per level at most (default 8)")
        p.add_argument("--max-requests", type=int, default=None,
                       help="requests per level at most (default 5000)")
        p.epilog = ("For serve, --rounds is the number of served/in-process pairs at concurrency "
                    "1 (default 60), --warmup the warm-up requests per client and level "
                    "(default 1), --budget the most seconds per level, --min-rounds the fewest "
                    "windows (>= 3).")

    def plan(self, args: Any) -> ServeSettings:
        """The settings of ``args``; raises :class:`BenchmarkUsageError` on a bad flag."""
        d = QUICK_DEFAULTS if args.quick else DEFAULTS

        def opt(name: str) -> Any:
            v = getattr(args, name)
            return d[name] if v is None else v

        protocols = tuple(p.lower() for p in split_list(args.protocols, "--protocols"))
        window_s = float(opt("window"))
        max_windows = max(STABLE_WINDOWS, int(opt("max_windows")))
        if args.budget and window_s > 0:  # seconds per level
            max_windows = max(STABLE_WINDOWS, int(args.budget / window_s))
        return ServeSettings(
            command=args.command_line, quick=args.quick, protocols=protocols,
            batches=tuple(split_list(opt("batches"), "--batches", int)),
            concurrency=tuple(split_list(opt("concurrency"), "--concurrency", int)),
            window_s=window_s, max_windows=max_windows, max_requests=int(opt("max_requests")),
            min_windows=max(STABLE_WINDOWS, args.min_rounds or STABLE_WINDOWS),
            warmup=1 if args.warmup is None else args.warmup,
            paired_rounds=int(d["paired_rounds"] if args.rounds is None else args.rounds),
            threads=args.threads or physical_cores(), urls=_resolve_urls(args, protocols),
            model=args.model, repo=args.repo, onnx=args.onnx, up=args.up, size=int(opt("size")),
            base_channels=int(opt("base_channels")), depth=int(opt("depth")), seed=args.seed)

    def run(self, s: ServeSettings, *, progress: bool = True) -> Result:
        try:
            import onnxruntime  # noqa: F401  (the in-process comparison)

            import triton_repo  # noqa: F401
        except ImportError as exc:
            raise BenchmarkError(f"bench serve needs onnxruntime and tritonclient: pip install "
                                 f"'pixeldcn[cpu,triton]' ({exc})") from exc
        from ._timing import progress_bar

        machine, run = machine_info(), _Run(onnx_path=Path(s.onnx) if s.onnx else None)
        levels = [(p, b, c) for p in s.protocols for b in s.batches for c in s.concurrency]
        with ExitStack() as stack:
            stats = _connect(stack, s, run)
            _paired_c1(s, run, stats)
            with progress_bar(len(levels), "serve levels", progress) as bar:
                for level in levels:
                    run.rows.append(_level(s, run, stats, *level))
                    bar.update(1)
            run.server_version = server_version(run.urls[s.protocols[0]].split(",")[0],
                                                 s.protocols[0])
            first = run.clients[s.protocols[0]]
            replicas = _replica_figures(first) if hasattr(first, "replica_stats") else None
        checked = [r["lost"] for r in run.rows] + [p["lost"] for p in run.paired.values()]
        records = {"in_process": run.in_process, "paired_c1": run.paired, "rows": run.rows,
                   "lost_total": sum(n or 0 for n in checked),
                   # Levels whose count could not be checked: the server's statistics were reset.
                   "unchecked_levels": sum(n is None for n in checked)}
        if replicas:
            records["replicas"] = replicas
        settings = s.to_json(run)
        return Result(self.name, machine, settings, records,
                      tuple(serve_targets(records, settings)))

    def failure(self, result: Result) -> str | None:
        lost = result["lost_total"]
        return (f"{lost} request(s) the client saw answered are missing from the server's "
                "success count (see the report)") if lost else None

    markdown = staticmethod(serve_markdown)
    plots = staticmethod(serve_plots)


BENCHMARK = Serve()
