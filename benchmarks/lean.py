"""``pixeldcn bench lean``: what the up-sampling choice costs, and the lean served path.

Two parts, one run (each can be skipped):

- **floor**: the U-Net with each up-sampling kind beside the same U-Net whose every
  up-sampling layer is replaced by a *free* one with the right shapes (a channel slice + nearest
  x2 resize: no MACs, almost no time). Every kind's time and MACs are given relative to that
  floor; ``time ratio / MAC ratio`` near 1 means the up-sampling layers run at the throughput of
  the network's plain convolutions. onnxruntime CPU, paired rounds (one run of each per round,
  random order).
- **served**: the same U-Net served by the local Triton with each I/O option side by side:
  float32 or uint8 NHWC input (normalised in the graph), logits or the class mask (ArgMax in the
  graph), tensors by value or through system shared memory, fp32 or int8 (static QDQ,
  calibrated on scikit-image's photographs). Each served request alternates with an in-process
  onnxruntime run of the same model file (paired ratio), with Triton's server-side breakdown
  (queue, compute input / infer / output per request) and the nothing-lost accounting (requests
  answered to the client == the server's success count).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import BenchmarkError, BenchmarkUsageError
from ._machine import machine_info, physical_cores
from ._protocol import BASELINE_KIND, Result
from ._report import Target, fmt, machine_line, markdown_table, split_list, targets_section
from ._stats import paired_ratio, summarize
from ._timing import RoundPolicy, run_interleaved

__all__ = ["BENCHMARK", "FLOOR", "SERVED_OPTIONS", "free_upsampling"]

#: Name of the floor row: the network with free up-sampling layers.
FLOOR = "free_upsampling"
#: The served options, in report order: (name, input, output, shared memory, int8).
SERVED_OPTIONS = (
    ("fp32 in / logits out", "float32", "logits", False, False),
    ("uint8 in / logits out", "uint8-nhwc", "logits", False, False),
    ("fp32 in / mask out", "float32", "mask", False, False),
    ("uint8 in / mask out", "uint8-nhwc", "mask", False, False),
    ("uint8 in / mask out, shm", "uint8-nhwc", "mask", True, False),
    ("fp32 in / logits out, shm", "float32", "logits", True, False),
    ("int8: uint8 in / mask out", "uint8-nhwc", "mask", False, True),
    ("int8: uint8 in / mask out, shm", "uint8-nhwc", "mask", True, True),
)
DEFAULTS: dict[str, Any] = {"sizes": "128,256", "base_channels": 64, "depth": 5, "serve_size": 128,
            "paired_rounds": 40}
QUICK: dict[str, Any] = {"sizes": "32", "base_channels": 8, "depth": 3, "serve_size": 32, "paired_rounds": 6}
POLICY = RoundPolicy(11, 1, budget_s=240.0, min_rounds=5)
QUICK_POLICY = RoundPolicy(3, 1, budget_s=None, min_rounds=3)
TARGET_EFFICIENCY = 1.05  # (time / floor time) / (MACs / floor MACs), of TARGET_KIND
#: The kind the efficiency target is set on, and the kind of the served U-Net (data, not a branch).
TARGET_KIND = SERVED_KIND = "pixel_dcl"
TARGET_SERVED = {128: 1.10, 256: 1.05}  # served p50 uint8/mask/shm over in-process, c = 1


def free_upsampling(model: Any) -> Any:
    """``model`` with every pixeldcn up-sampling layer replaced by a free one of the same
    shapes: ``nearest_x2(x[:, :C])`` (channels repeated when C > Cin). In place; returns it."""
    import torch
    from torch import nn

    from exporters.pytorch import UpsampleLayer

    class FreeUpsample(nn.Module):
        def __init__(self, cin: int, cout: int, scale: int) -> None:
            super().__init__()
            self.cin, self.cout, self.scale = cin, cout, scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.cout > self.cin:
                x = x.repeat(1, -(-self.cout // self.cin), 1, 1)
            x = x[:, : self.cout]
            return nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")

    from pixeldcn_core import get_kind

    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, UpsampleLayer):
                setattr(parent, name, FreeUpsample(child.in_channels, child.out_channels,
                                                   get_kind(child.kind).scale))
    return model


@dataclasses.dataclass(frozen=True)
class LeanSettings:
    command: str
    quick: bool
    floor: bool
    serve: bool
    kinds: tuple[str, ...]
    sizes: tuple[int, ...]
    base_channels: int
    depth: int
    classes: int
    serve_size: int
    protocols: tuple[str, ...]
    paired_rounds: int
    threads: int
    policy: RoundPolicy
    int8: bool
    seed: int

    def __post_init__(self) -> None:
        m = 2 ** (self.depth - 1)
        for size in (*self.sizes, self.serve_size):
            if size < m or size % m:
                raise BenchmarkUsageError(f"--sizes/--serve-size: got {size}, expected a multiple "
                                          f"of {m} (2 ** (depth - 1))")
        if self.paired_rounds < 2:
            raise BenchmarkUsageError(f"--rounds: got {self.paired_rounds}, expected >= 2")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["policy"] = self.policy.as_dict()
        return d


def _unet(kind: str, s: LeanSettings, k: int | None = None) -> Any:
    from exporters.pytorch import build_network

    return build_network("unet", kind, up_kernel_size=k, num_classes=s.classes,
                         base_channels=s.base_channels, depth=s.depth).eval()


# -- floor -----------------------------------------------------------------------------------------
def _floor_part(s: LeanSettings, tmp: Path, progress: bool) -> list[dict[str, Any]]:
    import onnx
    import torch

    from exporters.pytorch import ExportOptions, export_onnx

    from ._graphs import conv_macs
    from ._ort import ProviderChoice, make_runner, make_session

    choice = ProviderChoice("cpu", s.threads)
    rows: list[dict[str, Any]] = []
    for size in s.sizes:
        shape = (1, 3, size, size)
        x = np.random.default_rng(s.seed).standard_normal(shape).astype(np.float32)
        runners: dict[str, Callable[[], None]] = {}
        macs: dict[str, float | None] = {}
        variants = [(FLOOR, BASELINE_KIND, 6), (f"{BASELINE_KIND}_k6", BASELINE_KIND, 6),
                    *[(k, k, None) for k in s.kinds if k != BASELINE_KIND]]
        for name, kind, k in variants:
            torch.manual_seed(s.seed)
            model = _unet(kind, s, k)
            if name == FLOOR:
                model = free_upsampling(model)
            print(f"[lean] export U-Net {size}x{size} with {name}", flush=True)
            path = export_onnx(model, tmp / f"floor_{size}_{name}.onnx", shape,
                               options=ExportOptions(verify=False))
            proto = onnx.load(str(path))
            by_op = conv_macs(proto, {proto.graph.input[0].name: shape})
            macs[name] = None if by_op is None else sum(by_op.values()) / 1e9
            sess = make_session(proto.SerializeToString(), choice)
            runners[name] = make_runner(sess, {sess.get_inputs()[0].name: x}, choice)
        times = run_interleaved(runners, s.policy, seed=s.seed, desc=f"floor {size}",
                                progress=progress)
        for name, kind, _ in variants:
            t_ratio = paired_ratio(times[name], times[FLOOR])
            mine, floor_macs = macs[name], macs[FLOOR]
            m_ratio = mine / floor_macs if mine and floor_macs else None
            rows.append({
                "size": size, "variant": name, "kind": None if name == FLOOR else kind,
                "gmacs": macs[name], "times_ms": summarize(times[name]),
                "time_over_floor": t_ratio, "macs_over_floor": m_ratio,
                "efficiency": t_ratio["median"] / m_ratio if m_ratio else None,
                "time_over_dcl_k6": paired_ratio(times[name], times[f"{BASELINE_KIND}_k6"]),
            })
    return rows


# -- served ------------------------------------------------------------------------------------------
def _served_models(s: LeanSettings, tmp: Path) -> dict[str, Path]:
    """One model file per distinct (input, output, int8): float export, then the core's
    in-graph processing (int8: quantised before the processing is added)."""
    import onnx
    import torch

    import pixeldcn_core as pc
    from exporters.pytorch import ExportOptions, export_onnx, quantize_int8

    torch.manual_seed(s.seed)
    shape = (1, 3, s.serve_size, s.serve_size)
    f32 = export_onnx(_unet(SERVED_KIND, s), tmp / "served_f32.onnx", shape,
                      options=ExportOptions(verify=False))
    bases = {False: onnx.load(str(f32))}
    if s.int8 and any(o[4] for o in SERVED_OPTIONS):
        print("[lean] quantising the served U-Net to int8 (calibration: photos)", flush=True)
        bases[True] = onnx.load(str(quantize_int8(f32, tmp / "served_int8.onnx", "photos",
                                                  shape=shape)))
    paths: dict[str, Path] = {}
    for _, inp, out, _, int8 in SERVED_OPTIONS:
        key = _model_name(inp, out, int8)
        if key in paths or int8 not in bases:
            continue
        m = bases[int8]
        if inp != "float32":
            m = pc.add_preprocessing(m, layout=inp.split("-")[1])
        if out != "logits":
            m = pc.add_postprocessing(m, out)
        paths[key] = tmp / f"{key}.onnx"
        onnx.save(m, str(paths[key]))
    return paths


def _model_name(inp: str, out: str, int8: bool) -> str:
    return f"unet_{'int8' if int8 else 'fp32'}_{inp.split('-')[0]}_{out}"


def _input(inp: str, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if inp == "float32":
        return rng.standard_normal((1, 3, size, size)).astype(np.float32)
    return rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)


def _serve_part(s: LeanSettings, tmp: Path) -> list[dict[str, Any]]:
    import triton_repo

    from ._load import settled_stats, stats_delta
    from ._ort import ProviderChoice, make_runner, make_session

    paths = _served_models(s, tmp)
    repo = tmp / "repo"
    opts = triton_repo.ServingOptions(max_batch_size=8)
    for name, path in paths.items():
        triton_repo.write_repository(repo, name, path, options=opts)
    choice = ProviderChoice("cpu", s.threads)
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        config = triton_repo.ServerConfig(ready_timeout=300)
        server = stack.enter_context(triton_repo.LocalTritonServer(repo, config))
        for label, inp, out, shm, int8 in SERVED_OPTIONS:
            name = _model_name(inp, out, int8)
            if name not in paths:
                continue
            sess = make_session(paths[name].read_bytes(), choice)
            x = _input(inp, s.serve_size, s.seed)
            local = make_runner(sess, {sess.get_inputs()[0].name: x}, choice)
            for p in s.protocols:
                url = server.grpc_url if p == "grpc" else server.http_url
                client = stack.enter_context(triton_repo.Client(
                    url, name, protocol=p, shared_memory="system" if shm else None,
                    headers=server.admin_headers(p), timeout=300))
                client.wait_ready(300)
                expected = sess.run(None, {sess.get_inputs()[0].name: x})[0]
                for _ in range(2):  # warm: connection, shapes, shared-memory regions
                    got = client.infer(x)
                if got.dtype != expected.dtype or got.shape != expected.shape or (
                        got.dtype.kind in "iu" and not np.array_equal(got, expected)):
                    raise BenchmarkError(f"{label} ({p}): the served answer differs from "
                                         "in-process onnxruntime on the same model")
                local()
                before = settled_stats(client, name)
                served_t, local_t = [], []
                for _ in range(s.paired_rounds):
                    t0 = time.perf_counter()
                    client.infer(x)
                    t1 = time.perf_counter()
                    local()
                    served_t.append(t1 - t0)
                    local_t.append(time.perf_counter() - t1)
                after = settled_stats(client, name, base=before, expect_success=s.paired_rounds)
                delta = stats_delta(before, after, name)
                rows.append({
                    "option": label, "model": name, "protocol": p, "input": inp, "output": out,
                    "shared_memory": shm, "int8": int8,
                    "request_bytes": int(x.nbytes), "response_bytes": int(expected.nbytes),
                    "served_ms": summarize(served_t), "in_process_ms": summarize(local_t),
                    "served_over_in_process": paired_ratio(served_t, local_t),
                    "overhead_ms": float(np.median(1e3 * (np.asarray(served_t)
                                                          - np.asarray(local_t)))),
                    "server": delta, "client_requests": s.paired_rounds,
                    "lost": None if delta["reset"] else s.paired_rounds - delta["success"],
                })
                print(f"[lean] {label} ({p}): served/in-process "
                      f"{rows[-1]['served_over_in_process']['median']:.3f}", flush=True)
                client.close()
    return rows


# -- report --------------------------------------------------------------------------------------------
def lean_targets(records: Mapping[str, Any], s: Mapping[str, Any]) -> list[Target]:
    out = []
    for r in records.get("floor", []):
        if r["kind"] == TARGET_KIND:
            out.append(Target(
                f"unet{r['size']}_pixel_dcl_efficiency",
                f"U-Net {r['size']}x{r['size']}: (PixelDCL time / floor time) / (its MACs / "
                "floor MACs), onnxruntime CPU", r["efficiency"], TARGET_EFFICIENCY,
                note=f"time {fmt(r['time_over_floor']['median'])}x, MACs "
                     f"{fmt(r['macs_over_floor'])}x the floor's"))
    for r in records.get("served", []):
        if r["option"] == "uint8 in / mask out, shm" and s["serve_size"] in TARGET_SERVED:
            out.append(Target(
                f"served_{r['protocol']}_{s['serve_size']}_uint8_mask_shm",
                f"U-Net {s['serve_size']}x{s['serve_size']} served ({r['protocol']}, c=1), uint8 "
                "in / mask out with shared memory, p50 over in-process onnxruntime of the same "
                "model", r["served_over_in_process"]["median"], TARGET_SERVED[s["serve_size"]],
                note=f"overhead {fmt(r['overhead_ms'], 1)} ms per request"))
    return out


def lean_markdown(result: Result) -> str:
    s = result.settings
    lines = ["# Lean served path and the free up-sampling floor", "",
             machine_line(result.machine, ["onnxruntime", "torch", "tritonclient"]), "",
             f"Command: `{s['command']}`", ""]
    floor = result.get("floor", [])
    if floor:
        lines += ["## U-Net against the free up-sampling floor (onnxruntime CPU, batch 1)", "",
                  "Floor: the same U-Net with every up-sampling layer replaced by a channel "
                  "slice + nearest x2 resize (no MACs). *Efficiency* = time ratio / MAC ratio: "
                  "1.0 means the network with these layers runs at the floor's MAC throughput.",
                  "", markdown_table(
                      ["size", "up-sampling", "GMAC", "ms median (p90)", "time / floor",
                       "MACs / floor", "efficiency", "time / DCL k=6"],
                      [[r["size"], r["variant"], fmt(r["gmacs"], 1),
                        f"{fmt(r['times_ms']['median'], 1)} ({fmt(r['times_ms']['p90'], 1)})",
                        fmt(r["time_over_floor"]["median"]), fmt(r["macs_over_floor"]),
                        fmt(r["efficiency"]), fmt(r["time_over_dcl_k6"]["median"])]
                       for r in floor]), ""]
    served = result.get("served", [])
    if served:
        lines += [f"## Served options side by side (U-Net {s['serve_size']}x{s['serve_size']}, "
                  "local Triton, Python backend, concurrency 1, batch 1)", "",
                  "Each served request alternates with an in-process onnxruntime run of the same "
                  "model file; server columns are Triton's per-request means.", "",
                  markdown_table(
                      ["option", "protocol", "request / response bytes", "served ms p50",
                       "in-process ms p50", "served / in-process", "overhead ms",
                       "queue / input / infer / output ms", "lost"],
                      [[r["option"], r["protocol"],
                        f"{r['request_bytes']} / {r['response_bytes']}",
                        fmt(r["served_ms"]["median"], 1), fmt(r["in_process_ms"]["median"], 1),
                        f"**{fmt(r['served_over_in_process']['median'])}**",
                        fmt(r["overhead_ms"], 1),
                        " / ".join(fmt(r["server"][k], 2) for k in (
                            "queue_ms", "compute_input_ms", "compute_infer_ms",
                            "compute_output_ms")),
                        "-" if r["lost"] is None else r["lost"]] for r in served]), ""]
    lines += targets_section("Targets (reported, never asserted)", result.targets)
    return "\n".join(lines) + "\n"


class Lean:
    """``pixeldcn bench lean`` as a :class:`benchmarks.Benchmark`."""

    name = "lean"
    help = "U-Net against the free up-sampling floor; served I/O options side by side"

    def add_arguments(self, p: Any) -> None:
        p.add_argument("--no-floor", action="store_true", help="skip the floor comparison")
        p.add_argument("--no-serve", action="store_true", help="skip the served options")
        p.add_argument("--no-int8", action="store_true", help="skip the int8 served options")
        p.add_argument("--kinds", default="pixel_dcl,ipixel_dcl",
                       help="kinds beside the floor and DCL k=6 (default pixel_dcl,ipixel_dcl)")
        p.add_argument("--sizes", default=None, help="floor U-Net input sizes (default 128,256)")
        p.add_argument("--serve-size", type=int, default=None, help="served U-Net size (128)")
        p.add_argument("--base-channels", type=int, default=None, help="U-Net width (64)")
        p.add_argument("--depth", type=int, default=None, help="U-Net depth (5)")
        p.add_argument("--protocols", default="grpc", help="grpc, http or both (default grpc)")
        p.epilog = ("--rounds: served/in-process pairs per option (default 40); the floor's "
                    "rounds follow --min-rounds/--budget (default at most 11, 240 s per size).")

    def plan(self, args: Any) -> LeanSettings:
        from pixeldcn_core import get_kind

        d = QUICK if args.quick else DEFAULTS

        def opt(name: str) -> Any:
            v = getattr(args, name)
            return d[name] if v is None else v

        kinds = tuple(get_kind(k).name for k in split_list(args.kinds, "--kinds"))
        protocols = tuple(split_list(args.protocols, "--protocols"))
        if any(p not in ("grpc", "http") for p in protocols):
            raise BenchmarkUsageError(f"--protocols: got {args.protocols!r}, expected grpc, http")
        policy = (QUICK_POLICY if args.quick else POLICY).with_flags(_NoRounds(args))
        return LeanSettings(
            command=args.command_line, quick=args.quick, floor=not args.no_floor,
            serve=not args.no_serve, kinds=kinds,
            sizes=tuple(split_list(opt("sizes"), "--sizes", int)),
            base_channels=int(opt("base_channels")), depth=int(opt("depth")), classes=21,
            serve_size=int(opt("serve_size")), protocols=protocols,
            paired_rounds=int(d["paired_rounds"] if args.rounds is None else args.rounds),
            threads=args.threads or physical_cores(), policy=policy,
            int8=not args.no_int8, seed=args.seed)

    def run(self, s: LeanSettings, *, progress: bool = True) -> Result:
        machine = machine_info()
        records: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="pixeldcn-bench-lean-") as tmp:
            if s.floor:
                records["floor"] = _floor_part(s, Path(tmp), progress)
            if s.serve:
                records["served"] = _serve_part(s, Path(tmp))
        records["lost_total"] = sum(r["lost"] or 0 for r in records.get("served", []))
        settings = s.to_json()
        return Result(self.name, machine, settings, records,
                      tuple(lean_targets(records, settings)))

    def failure(self, result: Result) -> str | None:
        lost = result["lost_total"]
        return (f"{lost} request(s) the client saw answered are missing from the server's "
                "success count") if lost else None

    markdown = staticmethod(lean_markdown)

    def plots(self, result: Result, out_dir: Path) -> list[Path]:
        return []


class _NoRounds:
    """The common flags with --rounds hidden (it counts the served pairs here)."""

    def __init__(self, args: Any) -> None:
        self._args = args
        self.rounds = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._args, name)


BENCHMARK = Lean()
