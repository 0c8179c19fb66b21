"""``pixeldcn bench network``: whole networks with each up-sampling kind, onnxruntime and PyTorch.

Every network of :data:`NETWORKS` (the paper's U-Net of the authors' code: depth 5, 64 start
channels, 21 classes, on a 1x3x256x256 input) is built with every registered up-sampling kind
(the baseline DCL at k = 3 and 6; the kinds that interleave phases also with each other
interleave), exported through ``exporters.pytorch.export_onnx`` (efficient forms, verified against
PyTorch) to a temp folder, and timed in onnxruntime and in PyTorch eager mode, every model and
runtime interleaved round by round. Times are given as ratios to the same network with DCL
(k = 6) in the same runtime (medians of per-round paired ratios), beside the paper's (Table 2:
prediction time relative to DCL on a K40 GPU, TensorFlow).

Add a network: an entry ``NETWORKS["name"] = Network(...)`` whose ``build(kind, k, dims)``
returns a ``torch.nn.Module`` with that up-sampling layer; ``--networks`` picks among them.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import INTERLEAVES, get_kind, layer_kinds

from ._errors import BenchmarkError, BenchmarkUsageError
from ._machine import machine_info, physical_cores
from ._plots import network_plots
from ._protocol import BASELINE_KIND, Result
from ._report import Target, fmt, machine_line, markdown_table, split_list, targets_section
from ._stats import paired_ratio, summarize
from ._timing import RoundPolicy, run_interleaved
from .layers import LayerVariant, layer_variants

__all__ = ["BENCHMARK", "DEEPLAB_FULL", "DEEPLAB_QUICK", "NETWORKS", "PAPER_TABLE2", "Network",
           "network_variants"]

#: Gao et al. (arXiv 1705.06820), Table 2: U-Net prediction time on PASCAL VOC 2012 relative to
#: the same U-Net with DCL, one Tesla K40 GPU, TensorFlow.
PAPER_TABLE2 = {"dcl": 1.0, "pixel_dcl": 1.28, "ipixel_dcl": 1.56}  # per-kind data, not a branch
#: Kernel sizes of the baseline kind timed (only the last, the baseline, in --quick).
BASELINE_KERNELS = (3, 6)
BASELINE = f"{BASELINE_KIND}_k{BASELINE_KERNELS[-1]}"
POLICY = RoundPolicy(15, 1, budget_s=300.0, min_rounds=5)
QUICK_POLICY = RoundPolicy(3, 1, budget_s=None, min_rounds=3)


#: DeepLab-ResNet: the paper's setting (ResNet-101, 21 PASCAL VOC classes) at 512 x 512, and a
#: --quick one.
DEEPLAB_FULL = {"size": 512, "depth": 101, "base_width": 64, "classes": 21}
DEEPLAB_QUICK = {"size": 256, "depth": 101, "base_width": 64, "classes": 21}


def _unet(kind: str, k: int, dims: Mapping[str, int]) -> Any:
    from exporters.pytorch import build_network

    return build_network("unet", kind, up_kernel_size=k, num_classes=dims["classes"],
                         base_channels=dims["base_channels"], depth=dims["depth"])


def _deeplab(kind: str, k: int | None, dims: Mapping[str, int]) -> Any:
    from exporters.pytorch import build_network

    return build_network("deeplab", kind, up_kernel_size=k, num_classes=dims["classes"],
                         depth=dims["depth"], base_channels=dims.get("base_width", 64),
                         blocks=dims.get("blocks")).eval()


@dataclasses.dataclass(frozen=True)
class Network:
    """A network ``bench network`` builds with each up-sampling kind: one group of rows.

    Attributes:
        title: its name in the report, e.g. ``"U-Net"``.
        build: ``(kind, k, dims) -> torch.nn.Module`` with that up-sampling layer everywhere.
        full, quick: its dimensions in a full and in a ``--quick`` run; ``size`` (input
            H = W) is required, ``--size`` replaces it.
        size_multiple: ``dims -> n``: the input size must be a multiple of ``n``.
        paper: kind -> the paper's prediction time relative to DCL, and where it comes from.
        targets: (variant, title, bound) of the goals set on this network (onnxruntime CPU).
        in_channels: input channels.
        by_default: timed when ``--networks`` is not given (a network that takes many minutes
            per run, like DeepLab-ResNet-101, is timed only when named).
    """

    title: str
    build: Callable[[str, int, Mapping[str, int]], Any]
    full: Mapping[str, int]
    quick: Mapping[str, int]
    size_multiple: Callable[[Mapping[str, int]], int] = lambda dims: 1
    paper: Mapping[str, float] = dataclasses.field(default_factory=dict)
    paper_source: str = ""
    targets: tuple[tuple[str, str, float], ...] = ()
    in_channels: int = 3
    by_default: bool = True


#: name -> network; ``pixeldcn bench network`` times every one (or those of ``--networks``).
NETWORKS: dict[str, Network] = {
    "unet": Network(
        "U-Net", _unet, full={"size": 256, "base_channels": 64, "depth": 5, "classes": 21},
        quick={"size": 32, "base_channels": 8, "depth": 3, "classes": 21},
        size_multiple=lambda dims: 2 ** (dims["depth"] - 1), paper=PAPER_TABLE2,
        paper_source="paper Table 2 / DCL (K40)",
        targets=(("pixel_dcl_k3", "PixelDCL", 0.78), ("ipixel_dcl_k3", "iPixelDCL", 1.0),
                 ("pixel_dcl_k3_concat", "PixelDCL (concat interleave)", 0.78),
                 ("ipixel_dcl_k3_concat", "iPixelDCL (concat interleave)", 1.0))),
    # The paper's second network (Table 1 pairs DeepLab-ResNet + DCL / iPixelDCL / PixelDCL;
    # the paper gives their accuracy, not their time). `bench decoder` times its decoder's share.
    "deeplab": Network(
        "DeepLab-ResNet-101", _deeplab, full=DEEPLAB_FULL, quick=DEEPLAB_QUICK,
        size_multiple=lambda dims: 8,  # the backbone's output stride
        paper_source="paper Table 1 (accuracy only, no time)", by_default=False),
}


def network_variants(kinds: Sequence[str] | None = None, *, quick: bool = False
                     ) -> list[LayerVariant]:
    """The efficient forms of :func:`benchmarks.layers.layer_variants` for every x2 kind
    registered now (or those in ``kinds``); the baseline at :data:`BASELINE_KERNELS` (only
    k = 6 when quick), always included.

    Raises:
        BenchmarkUsageError: a kind in ``kinds`` does not up-sample by 2.
    """
    names = [get_kind(k).name for k in kinds] if kinds else [
        k for k in layer_kinds() if get_kind(k).scale == 2]
    other = [k for k in names if get_kind(k).scale != 2]
    if other:
        raise BenchmarkUsageError(f"--kinds {','.join(other)}: the networks need x2 up-sampling "
                                  f"layers, {other[0]} has scale {get_kind(other[0]).scale}")
    ks = BASELINE_KERNELS[-1:] if quick else BASELINE_KERNELS
    return [v for v in layer_variants([BASELINE_KIND, *names])
            if v.form == "efficient" and (v.kind != BASELINE_KIND or v.k in ks)]


@dataclasses.dataclass(frozen=True)
class NetworkSettings:
    """The plan of ``pixeldcn bench network`` (see :meth:`NetworkBench.plan`)."""

    command: str
    quick: bool
    threads: int
    policy: RoundPolicy
    networks: Mapping[str, Mapping[str, int]]  # name -> dims (with --size applied)
    variants: tuple[LayerVariant, ...]
    providers: tuple[str, ...] = ("cpu",)
    batch: int = 1
    torch: bool = True
    torch_device: str = "cpu"
    verify: bool = True
    seed: int = 0

    def input_shape(self, net: str) -> tuple[int, int, int, int]:
        size = self.networks[net]["size"]
        return (self.batch, NETWORKS[net].in_channels, size, size)

    def to_json(self, runtimes: Iterable[str], torch_loaded_before: bool) -> dict[str, Any]:
        import torch

        return {
            "command": self.command, "quick": self.quick, "threads": self.threads,
            "policy": self.policy.as_dict(),
            "networks": {n: {**d, "batch": self.batch, "input_shape": list(self.input_shape(n))}
                         for n, d in self.networks.items()},
            "runtimes": sorted(runtimes), "seed": self.seed, "baseline": BASELINE,
            "onnx_form": "efficient (exporters.pytorch.export_onnx)",
            "verified_against_pytorch": self.verify,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch_loaded_before": torch_loaded_before, "torch_threads": torch.get_num_threads(),
            "spinning": "session.intra_op.allow_spinning=0",
        }


# ---------------------------------------------------------------------------------------------
# building and timing


def _torch_runner(model: Any, x: Any, device: str) -> Callable[[], None]:
    import torch

    def run() -> None:
        with torch.inference_mode():
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


class _Models:
    """Every (network, variant, runtime) to time: runners and what their rows say."""

    def __init__(self, s: NetworkSettings, choices: Sequence[Any], tmp: Path) -> None:
        self.s, self.choices, self.tmp = s, choices, tmp
        self.runners: dict[str, Callable[[], None]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.up_share: dict[str, float | None] = {}

    def add(self, net: str, v: LayerVariant, x: np.ndarray, count: str) -> None:
        """Export ``net`` with ``v``, count its MACs, add its onnxruntime and torch runners."""
        import onnx
        import torch

        from exporters.pytorch import ExportOptions, export_onnx

        from ._graphs import activation_memory, conv_macs
        from ._ort import make_runner, make_session

        s, shape = self.s, x.shape
        torch.manual_seed(s.seed)
        model = NETWORKS[net].build(v.kind, v.k, s.networks[net]).eval()
        print(f"[network] export {count}: {NETWORKS[net].title} with {v.name}", flush=True)
        path = export_onnx(model, self.tmp / f"{net}_{v.name}.onnx", input_shape=shape,
                           options=ExportOptions(verify=s.verify, interleave=v.interleave))
        proto = onnx.load(str(path))
        by_op = conv_macs(proto, {proto.graph.input[0].name: shape})
        macs = None if by_op is None else sum(by_op.values())
        if v.name == BASELINE and by_op is not None:
            # exporters keep ConvTranspose only in DCL layers: these are the up-sampling MACs
            self.up_share[net] = by_op["ConvTranspose"] / sum(by_op.values())
        memory = activation_memory(proto, {proto.graph.input[0].name: shape})
        meta = {"network": net, "variant": v.name, "kind": v.kind, "k": v.k,
                "interleave": v.interleave, "gmacs": macs and macs / 1e9,
                "memory": None if memory is None else memory.as_dict(),
                "parameters": sum(p.numel() for p in model.parameters())}
        for choice in self.choices:
            sess = make_session(proto.SerializeToString(), choice)
            self._add({**meta, "runtime": f"onnxruntime-{choice.name}"},
                      make_runner(sess, {sess.get_inputs()[0].name: x}, choice))
        if s.torch and v.interleave == INTERLEAVES[0]:  # torch runs the same model either way
            dev = s.torch_device
            self._add({**meta, "runtime": f"torch-{dev}"},
                      _torch_runner(model.to(dev), torch.from_numpy(x).to(dev), dev))

    def _add(self, meta: dict[str, Any], runner: Callable[[], None]) -> None:
        key = _key(meta["network"], meta["variant"], meta["runtime"])
        self.runners[key], self.info[key] = runner, meta


def _key(net: str, variant: str, runtime: str) -> str:
    return f"{net}|{variant}|{runtime}"


def _row(key: str, times: Mapping[str, list[float]], info: Mapping[str, dict]) -> dict[str, Any]:
    """The JSON row of one timed model: times, ratio to the baseline, MACs, the paper's."""
    meta, t = info[key], times[key]
    base_key = _key(meta["network"], BASELINE, meta["runtime"])
    row = {**meta, "times_ms": summarize(t),
           "ratio_to_dcl_k6": paired_ratio(t, times[base_key]) if base_key in times else None,
           "paper_ratio_to_dcl": NETWORKS[meta["network"]].paper.get(meta["kind"])}
    ort_key = _key(meta["network"], meta["variant"], "onnxruntime-cpu")
    if meta["runtime"].startswith("torch") and ort_key in times:
        row["onnxruntime_cpu_over_this"] = paired_ratio(times[ort_key], t)
    base_macs = info.get(base_key, {}).get("gmacs")
    row["mac_ratio_to_dcl_k6"] = meta["gmacs"] / base_macs if meta["gmacs"] and base_macs else None
    return row


def network_targets(rows: Sequence[dict], settings: Mapping[str, Any],
                    up_share: Mapping[str, float | None]) -> list[Target]:
    """The goals of :attr:`Network.targets`, onnxruntime on CPU."""
    by = {(r["network"], r["variant"], r["runtime"]): r for r in rows}
    out = []
    for net, dims in settings["networks"].items():
        n, share, size = NETWORKS[net], up_share.get(net), dims["size"]
        for variant, title, bound in n.targets:
            row = by.get((net, variant, "onnxruntime-cpu"))
            paper = n.paper.get(row["kind"] if row else variant.rsplit("_k", 1)[0])
            out.append(Target(
                f"{net}_{variant}_vs_{BASELINE}", f"{n.title} {size}x{size} with {title} / with "
                f"DCL k=6 (onnxruntime CPU; paper {paper}x)",
                None if row is None else row["ratio_to_dcl_k6"]["median"], bound,
                note="" if share is None or row is None else (
                    f"MACs {row['mac_ratio_to_dcl_k6']:.2f}x DCL k=6's; {100 * share:.0f} % of "
                    f"the DCL k=6 {n.title}'s MACs are in its up-sampling layers, so even free "
                    f"ones would leave {1 - share:.2f}x at equal efficiency elsewhere")))
    return out


# ---------------------------------------------------------------------------------------------
# report


def _ratio_table(net: str, rows: list[dict], runtimes: list[str]) -> str:
    # results made before the memory measurement render as they did (no memory column)
    has_memory = any(r.get("memory") for r in rows)
    header = ["up-sampling", "GMAC", "MACs / DCL k=6", *(["largest interm. / peak MiB"] * has_memory)]
    for rt in runtimes:
        header += [f"{rt} ms median (p90)", f"{rt} / DCL k=6"]
    table = []
    for v in dict.fromkeys(r["variant"] for r in rows):
        by_rt = {r["runtime"]: r for r in rows if r["variant"] == v}
        first = next(iter(by_rt.values()))
        m = first.get("memory")
        mem = "-" if not m else (f"{fmt(m['largest_bytes'] / 2**20, 1)} / "
                                 f"{fmt(m['peak_live_bytes'] / 2**20, 1)}")
        line = [v, fmt(first["gmacs"], 1), fmt(first["mac_ratio_to_dcl_k6"]), *([mem] * has_memory)]
        for r in (by_rt.get(rt) for rt in runtimes):
            line += ["-", "-"] if r is None else [
                f"{fmt(r['times_ms']['median'], 1)} ({fmt(r['times_ms']['p90'], 1)})",
                f"**{fmt(r['ratio_to_dcl_k6']['median'])}**"]
        paper = first["paper_ratio_to_dcl"]
        table.append([*line, "-" if paper is None else f"{paper:.2f}"])
    return markdown_table([*header, NETWORKS[net].paper_source or "paper / DCL"], table)


def _network_md(net: str, result: Result) -> list[str]:
    s, n = result.settings, result.settings["networks"][net]
    rows = [r for r in result["rows"] if r["network"] == net]
    dims = ", ".join(f"{k} {v}" for k, v in n.items() if k not in ("size", "batch", "input_shape"))
    lines = [f"## {NETWORKS[net].title}: prediction time relative to DCL (k=6)", "",
             f"Input {'x'.join(map(str, n['input_shape']))}; {dims}.", "",
             _ratio_table(net, rows, s["runtimes"]), ""]
    torch_rows = [r for r in rows if "onnxruntime_cpu_over_this" in r]
    if torch_rows:
        lines += [f"## {NETWORKS[net].title}: onnxruntime against PyTorch eager (same model, "
                  "same rounds)", "", markdown_table(
                      ["up-sampling", "onnxruntime-cpu / " + torch_rows[0]["runtime"]],
                      [[r["variant"], fmt(r["onnxruntime_cpu_over_this"]["median"])]
                       for r in torch_rows]), ""]
    return lines


def network_markdown(result: Result) -> str:
    s = result.settings
    lines = [
        "# Networks with each up-sampling layer (`pixeldcn bench network`)", "",
        machine_line(result.machine, ("onnxruntime", "torch", "numpy")),
        f"Settings: `{s['command']}`; {s['threads']} threads; {result['rounds_run']} rounds "
        f"({s['policy']['warmup']} warm-up) in {result['timed_s']} s; every model and runtime "
        "interleaved per round.", "", *targets_section("Targets", result.targets)]
    for net in s["networks"]:
        lines += _network_md(net, result)
    memory = any(r.get("memory") for r in result["rows"])
    lines += ["Ratios: medians of per-round paired ratios within the same runtime. GMAC: "
              "multiply-accumulates of every Conv and ConvTranspose of the exported model. "
              + ("MiB: the largest intermediate tensor and the peak of live activations (graph "
                 "order, no in-place reuse), from ONNX shape inference at the input size. "
                 if memory else "")
              + "The paper's DCL row is its baseline (kernel size not given in Table 2).", ""]
    detail = [[r["network"], r["variant"], r["runtime"], fmt(r["times_ms"]["median"], 1),
               fmt(r["times_ms"]["p90"], 1), fmt(r["times_ms"]["p99"], 1), r["times_ms"]["n"],
               fmt(r["gmacs"] and 2 * r["gmacs"] / (r["times_ms"]["median"] / 1e3), 1)]
              for r in result["rows"]]
    lines += ["## Details", "", markdown_table(
        ["network", "up-sampling", "runtime", "median ms", "p90", "p99", "runs", "GFLOP/s"],
        detail), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the benchmark


class NetworkBench:
    """``pixeldcn bench network`` as a :class:`benchmarks.Benchmark`."""

    name = "network"
    help = "the paper's U-Net with each up-sampling kind: onnxruntime and PyTorch"

    def add_arguments(self, p: Any) -> None:
        p.add_argument("--kinds", default=None,
                       help="comma-separated layer kinds (default: every registered kind); the "
                            "DCL k=6 network, the baseline, is always timed")
        p.add_argument("--networks", default=None,
                       help=f"comma-separated networks among {', '.join(NETWORKS)} (default: "
                            f"{', '.join(n for n, net in NETWORKS.items() if net.by_default)})")
        p.add_argument("--size", type=int, default=None,
                       help="input height = width (default: each network's, U-Net 256, "
                            "DeepLab 512; quick: 32, 256)")
        p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
        p.add_argument("--providers", default="cpu",
                       help="onnxruntime providers, comma-separated: cpu, cuda, tensorrt "
                            "(default cpu)")
        p.add_argument("--no-torch", action="store_true", help="time onnxruntime only")
        p.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda"))
        p.add_argument("--no-verify", action="store_true",
                       help="skip checking each exported model against PyTorch")

    def plan(self, args: Any) -> NetworkSettings:
        """The settings of ``args``; raises :class:`BenchmarkUsageError` on a bad flag."""
        from ._ort import parse_providers

        nets = split_list(args.networks, "--networks") or [
            n for n, net in NETWORKS.items() if net.by_default]
        unknown = [n for n in nets if n not in NETWORKS]
        if unknown:
            raise BenchmarkUsageError(f"--networks: unknown network(s) {unknown}; expected some "
                                      f"of {', '.join(NETWORKS)}")
        if args.batch < 1:
            raise BenchmarkUsageError(f"--batch must be >= 1, got {args.batch}")
        dims = {n: {**(NETWORKS[n].quick if args.quick else NETWORKS[n].full),
                    **({"size": args.size} if args.size else {})} for n in nets}
        for n, d in dims.items():
            m = NETWORKS[n].size_multiple(d)
            if d["size"] < 1 or d["size"] % m:
                raise BenchmarkUsageError(
                    f"--size must be a multiple of {m} for this {NETWORKS[n].title} "
                    f"({', '.join(f'{k} {v}' for k, v in d.items() if k != 'size')}), "
                    f"got {d['size']}")
        return NetworkSettings(
            command=args.command_line, quick=args.quick, threads=args.threads or physical_cores(),
            policy=(QUICK_POLICY if args.quick else POLICY).with_flags(args), networks=dims,
            variants=tuple(network_variants(split_list(args.kinds, "--kinds"), quick=args.quick)),
            providers=tuple(parse_providers(args.providers)), batch=args.batch,
            torch=not args.no_torch, torch_device=args.torch_device, verify=not args.no_verify,
            seed=args.seed)

    def run(self, s: NetworkSettings, *, progress: bool = True) -> Result:
        # Before torch starts its OpenMP pool: idle threads must sleep, not spin, or they steal
        # the cores from the onnxruntime session timed next (the same reason as ORT's spinning).
        torch_was_loaded = "torch" in sys.modules
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import torch

            import exporters.pytorch  # noqa: F401
        except ImportError as exc:
            raise BenchmarkError(f"bench network needs torch and the exporters: pip install "
                                 f"'pixeldcn[cpu,torch]' ({exc})") from exc
        from ._ort import resolve_providers

        machine = machine_info()
        torch.set_num_threads(s.threads)
        choices, skipped = resolve_providers(s.providers, threads=s.threads, required=s.providers)
        if s.torch_device == "cuda" and not torch.cuda.is_available():
            raise BenchmarkUsageError("--torch-device cuda: torch sees no CUDA device")
        t_build = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="pixeldcn-bench-") as tmp:
            models = _Models(s, choices, Path(tmp))
            xs = {n: np.random.default_rng(s.seed).standard_normal(s.input_shape(n))
                  .astype(np.float32) for n in s.networks}
            todo = [(n, v) for n in s.networks for v in s.variants]
            for i, (net, v) in enumerate(todo):
                models.add(net, v, xs[net], f"{i + 1}/{len(todo)}")
            build_s = time.perf_counter() - t_build
            t0 = time.perf_counter()
            times = run_interleaved(models.runners, s.policy, seed=s.seed, desc="network rounds",
                                    progress=progress)
            timed_s = time.perf_counter() - t0
        rows = [_row(key, times, models.info) for key in times]
        settings = s.to_json({r["runtime"] for r in rows}, torch_was_loaded)
        records = {
            "skipped_providers": skipped, "rounds_run": len(next(iter(times.values()))),
            "build_s": round(build_s, 1), "timed_s": round(timed_s, 1),
            "paper": {n: dict(NETWORKS[n].paper) for n in s.networks},
            # Share of the DCL k=6 network's MACs in its up-sampling layers: even free
            # up-sampling layers leave (1 - share) of its time, at equal efficiency elsewhere.
            "up_sampling_mac_share": models.up_share, "rows": rows,
        }
        return Result(self.name, machine, settings, records,
                      tuple(network_targets(rows, settings, models.up_share)))

    markdown = staticmethod(network_markdown)
    def plots(self, result: Result, out_dir: Path) -> list[Path]:
        return network_plots(result, out_dir, {n: net.title for n, net in NETWORKS.items()})


BENCHMARK = NetworkBench()
