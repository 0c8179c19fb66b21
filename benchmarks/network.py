"""``pixeldcn bench network``: the paper's U-Net with each up-sampling kind, onnxruntime and PyTorch.

The U-Net of the authors' code (``exporters.pytorch.UNet``: depth 5, 64 start channels, 21
classes) is built with every registered up-sampling kind (DCL at k = 3 and 6), exported through
``exporters.pytorch.export_onnx`` (efficient forms, verified against PyTorch) to a temp folder,
and timed on a 1x3x256x256 input in onnxruntime and in PyTorch eager mode, every model and
runtime interleaved round by round. Times are given as ratios to the DCL (k = 6) U-Net in the
same runtime (medians of per-round paired ratios), beside the paper's Table 2 (prediction time
relative to DCL on a K40 GPU, TensorFlow).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import KINDS, PixelDCNError, get_kind

from ._machine import machine_info, physical_cores
from ._report import Target, fmt, markdown_table, targets_table, write_json, write_text
from ._stats import paired_ratio, summarize
from ._timing import RoundPolicy, run_interleaved

__all__ = ["PAPER_TABLE2", "NetVariant", "network_targets", "network_variants", "run_network"]

#: Gao et al. (arXiv 1705.06820), Table 2: U-Net prediction time on PASCAL VOC 2012 relative to
#: the same U-Net with DCL, one Tesla K40 GPU, TensorFlow.
PAPER_TABLE2 = {"dcl": 1.0, "pixel_dcl": 1.28, "ipixel_dcl": 1.56}
BASELINE = "dcl_k6"
DCL_KERNELS = (3, 6)
#: Full run: the paper's U-Net at 256 x 256; quick run: a toy U-Net.
FULL = {"size": 256, "base_channels": 64, "depth": 5, "classes": 21}
QUICK = {"size": 32, "base_channels": 8, "depth": 3, "classes": 21}
DEFAULTS = {"rounds": 15, "warmup": 1, "budget": 300.0, "min_rounds": 5}
QUICK_DEFAULTS = {"rounds": 3, "warmup": 1, "budget": None, "min_rounds": 3}


#: U-Nets also exported with the core's concat interleave (onnxruntime only: torch is the same).
INTERLEAVED_KINDS = ("pixel_dcl", "ipixel_dcl")


@dataclasses.dataclass(frozen=True)
class NetVariant:
    kind: str
    k: int
    interleave: str = "depth_to_space"

    @property
    def name(self) -> str:
        return f"{self.kind}_k{self.k}" + (
            "" if self.interleave == "depth_to_space" else f"_{self.interleave}")


def network_variants(kinds: list[str] | None = None, *, quick: bool = False) -> list[NetVariant]:
    """Every registered kind (default kernel; DCL at k = 3 and 6, only 6 when quick), and
    PixelDCL and iPixelDCL also exported with ``interleave="concat"``."""
    names = list(KINDS) if not kinds else [get_kind(k).name for k in kinds]
    if "dcl" not in names:
        names.insert(0, "dcl")
    out: list[NetVariant] = []
    for name in dict.fromkeys(names):
        ks = ((6,) if quick else DCL_KERNELS) if name == "dcl" else (KINDS[name].default_kernel,)
        out += [NetVariant(name, k) for k in ks]
        if name in INTERLEAVED_KINDS:
            out += [NetVariant(name, k, "concat") for k in ks]
    return out


def network_targets(result: dict[str, Any]) -> list[Target]:
    """The issue's whole-network targets, onnxruntime on CPU."""
    rows = {(r["variant"], r["runtime"]): r for r in result["rows"]}
    size = result["settings"]["network"]["size"]
    out = []
    share = result.get("dcl_k6_up_sampling_mac_share")
    for name, title, bound, paper in (("pixel_dcl_k3", "PixelDCL", 0.78, 1.28),
                                      ("ipixel_dcl_k3", "iPixelDCL", 1.0, 1.56),
                                      ("pixel_dcl_k3_concat", "PixelDCL (concat interleave)", 0.78, 1.28),
                                      ("ipixel_dcl_k3_concat", "iPixelDCL (concat interleave)", 1.0, 1.56)):
        row = rows.get((name, "onnxruntime-cpu"))
        out.append(Target(
            f"unet_{name}_vs_dcl_k6", f"U-Net {size}x{size} with {title} / with DCL k=6 "
            f"(onnxruntime CPU; paper {paper}x)",
            None if row is None else row["ratio_to_dcl_k6"]["median"], bound,
            note="" if share is None or row is None else (
                f"MACs {row['mac_ratio_to_dcl_k6']:.2f}x DCL k=6's; {100 * share:.0f} % of the DCL "
                f"k=6 U-Net's MACs are in its up-sampling layers, so even free ones would leave "
                f"{1 - share:.2f}x at equal efficiency elsewhere")))
    return out


def _torch_runner(model: Any, x: Any, device: str) -> Any:
    import torch

    def run() -> None:
        with torch.inference_mode():
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def run_network(args: argparse.Namespace) -> int:
    """Handler of ``pixeldcn bench network``."""
    # Before torch starts its OpenMP pool: idle threads must sleep, not spin, or they steal
    # the cores from the onnxruntime session timed next (the same reason as ORT's spinning).
    torch_was_loaded = "torch" in sys.modules
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import onnx
        import torch

        from exporters.pytorch import UNet, export_onnx
    except ImportError as exc:
        raise PixelDCNError(
            f"bench network needs torch and the exporters: pip install 'pixeldcn[cpu,torch]' ({exc})"
        ) from exc
    from ._graphs import conv_macs
    from ._ort import make_runner, make_session, parse_providers, resolve_providers

    net = dict(QUICK if args.quick else FULL)
    if args.size:
        net["size"] = args.size
    if net["size"] % 2 ** (net["depth"] - 1):
        raise PixelDCNError(
            f"--size must be a multiple of {2 ** (net['depth'] - 1)} for a depth-{net['depth']} "
            f"U-Net, got {net['size']}")
    defaults = QUICK_DEFAULTS if args.quick else DEFAULTS
    policy = RoundPolicy(
        args.rounds if args.rounds is not None else defaults["rounds"],
        args.warmup if args.warmup is not None else defaults["warmup"],
        budget_s=(args.budget if args.budget is not None else defaults["budget"]) or None,
        min_rounds=args.min_rounds if args.min_rounds is not None else defaults["min_rounds"],
    )
    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    names = parse_providers(args.providers)
    choices, skipped = resolve_providers(names, threads=threads, required=names)
    if args.torch_device == "cuda" and not torch.cuda.is_available():
        raise PixelDCNError("--torch-device cuda: torch sees no CUDA device")
    variants = network_variants([k.strip() for k in args.kinds.split(",")] if args.kinds else None,
                                quick=args.quick)
    shape = (args.batch, 3, net["size"], net["size"])
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal(shape).astype(np.float32)
    out_dir = Path(args.out or "runs/bench-network")
    out_dir.mkdir(parents=True, exist_ok=True)

    runners: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    up_share: float | None = None
    t_build = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pixeldcn-bench-") as tmp:
        for i, v in enumerate(variants):
            torch.manual_seed(args.seed)
            model = UNet(in_channels=3, num_classes=net["classes"],
                         base_channels=net["base_channels"], depth=net["depth"], up=v.kind,
                         up_kernel_size=v.k).eval()
            print(f"[network] export {i + 1}/{len(variants)}: U-Net with {v.name}", flush=True)
            path = export_onnx(model, Path(tmp) / f"unet_{v.name}.onnx", input_shape=shape,
                               verify=not args.no_verify, interleave=v.interleave)
            proto = onnx.load(str(path))
            by_op = conv_macs(proto, {proto.graph.input[0].name: shape})
            macs = None if by_op is None else sum(by_op.values())
            if v.name == BASELINE and by_op is not None:
                # exporters keep ConvTranspose only in DCL layers: these are the up-sampling MACs
                up_share = by_op["ConvTranspose"] / macs
            params = sum(p.numel() for p in model.parameters())
            for choice in choices:
                sess = make_session(proto.SerializeToString(), choice)
                key = f"{v.name}|onnxruntime-{choice.name}"
                runners[key] = make_runner(sess, {sess.get_inputs()[0].name: x}, choice)
                info[key] = {"variant": v.name, "kind": v.kind, "k": v.k,
                             "interleave": v.interleave,
                             "runtime": f"onnxruntime-{choice.name}", "gmacs": macs and macs / 1e9,
                             "parameters": params}
            if not args.no_torch and v.interleave == "depth_to_space":
                dev = args.torch_device
                tm = model.to(dev)
                tx = torch.from_numpy(x).to(dev)
                key = f"{v.name}|torch-{dev}"
                runners[key] = _torch_runner(tm, tx, dev)
                info[key] = {"variant": v.name, "kind": v.kind, "k": v.k,
                             "interleave": v.interleave, "runtime": f"torch-{dev}",
                             "gmacs": macs and macs / 1e9,
                             "parameters": params}
        build_s = time.perf_counter() - t_build
        t0 = time.perf_counter()
        times = run_interleaved(runners, policy, seed=args.seed, desc="network rounds",
                                progress=not args.no_progress)
        timed_s = time.perf_counter() - t0

    rows = []
    for key, t in times.items():
        meta = info[key]
        base_key = f"{BASELINE}|{meta['runtime']}"
        row = {**meta, "times_ms": summarize(t),
               "ratio_to_dcl_k6": paired_ratio(t, times[base_key]) if base_key in times else None,
               "paper_ratio_to_dcl": PAPER_TABLE2.get(meta["kind"])}
        ort_key = f"{meta['variant']}|onnxruntime-cpu"
        if meta["runtime"].startswith("torch") and ort_key in times:
            row["onnxruntime_cpu_over_this"] = paired_ratio(times[ort_key], t)
        base_macs = info.get(base_key, {}).get("gmacs")
        row["mac_ratio_to_dcl_k6"] = (meta["gmacs"] / base_macs) if meta["gmacs"] and base_macs \
            else None
        rows.append(row)
    result: dict[str, Any] = {
        "benchmark": "network",
        "schema": 1,
        "machine": machine_info(),
        "settings": {
            "command": "pixeldcn bench " + " ".join(args.argv),
            "quick": args.quick, "threads": threads, "policy": policy.as_dict(),
            "network": {**net, "batch": args.batch, "input_shape": list(shape)},
            "runtimes": sorted({r["runtime"] for r in rows}), "seed": args.seed,
            "baseline": BASELINE, "onnx_form": "efficient (exporters.pytorch.export_onnx)",
            "verified_against_pytorch": not args.no_verify,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch_loaded_before": torch_was_loaded,
            "torch_threads": torch.get_num_threads(),
            "spinning": "session.intra_op.allow_spinning=0",
        },
        "skipped_providers": skipped,
        "rounds_run": len(next(iter(times.values()))),
        "build_s": round(build_s, 1), "timed_s": round(timed_s, 1),
        "paper": PAPER_TABLE2,
        # Share of the DCL k=6 U-Net's MACs in its up-sampling layers: even free up-sampling
        # layers leave (1 - share) of its time, at equal efficiency elsewhere.
        "dcl_k6_up_sampling_mac_share": up_share,
        "title": f"U-Net {net['size']}x{net['size']} (base {net['base_channels']}, depth "
                 f"{net['depth']}): time / DCL k=6 U-Net",
        "rows": rows,
    }
    result["targets"] = [t.as_dict() for t in network_targets(result)]
    write_json(out_dir / "network.json", result)
    write_text(out_dir / "network.md", network_markdown(result) + "\n")
    if not args.no_plots:
        from ._plots import network_plot

        network_plot(result, out_dir)
    for t in result["targets"]:
        print(f"[network] target {t['description']}: {fmt(t['measured'])} {t['op']} "
              f"{t['threshold']:g} -> {t['status']}")
    print(f"[network] {result['rounds_run']} rounds in {result['timed_s']} s (+{result['build_s']} s"
          f" export); wrote {out_dir}/network.json, network.md"
          + ("" if args.no_plots else ", network_ratio.png"))
    return 0


def network_markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    n = s["network"]
    runtimes = s["runtimes"]
    lines = [
        "# U-Net with each up-sampling layer (`pixeldcn bench network`)",
        "",
        f"{m['cpu_model']}, {m['physical_cores']} cores, {m['os']}; python {m['python']}, "
        f"onnxruntime {m['packages'].get('onnxruntime')}, torch {m['packages'].get('torch')}, "
        f"numpy {m['packages'].get('numpy')}; {m['timestamp']}.",
        f"Settings: `{s['command']}`; input {'x'.join(map(str, n['input_shape']))}, base "
        f"{n['base_channels']} channels, depth {n['depth']}, {n['classes']} classes; "
        f"{s['threads']} threads; {result['rounds_run']} rounds ({s['policy']['warmup']} warm-up) "
        f"in {result['timed_s']} s; every model and runtime interleaved per round.",
        "",
    ]
    if result["targets"]:
        lines += ["## Targets", "", targets_table(
            [Target(**{k: v for k, v in t.items() if k != "status"}) for t in result["targets"]]),
            ""]
    variants = list(dict.fromkeys(r["variant"] for r in result["rows"]))
    rows = []
    for v in variants:
        by_rt = {r["runtime"]: r for r in result["rows"] if r["variant"] == v}
        first = next(iter(by_rt.values()))
        row = [v, fmt(first["gmacs"], 1), fmt(first["mac_ratio_to_dcl_k6"])]
        for rt in runtimes:
            r = by_rt.get(rt)
            row += ["-", "-"] if r is None else [
                f"{fmt(r['times_ms']['median'], 1)} ({fmt(r['times_ms']['p90'], 1)})",
                f"**{fmt(r['ratio_to_dcl_k6']['median'])}**"]
        paper = first["paper_ratio_to_dcl"]
        row.append("-" if paper is None else f"{paper:.2f}")
        rows.append(row)
    header = ["up-sampling", "GMAC", "MACs / DCL k=6"]
    for rt in runtimes:
        header += [f"{rt} ms median (p90)", f"{rt} / DCL k=6"]
    header.append("paper Table 2 / DCL (K40)")
    lines += ["## Prediction time relative to the DCL (k=6) U-Net", "",
              markdown_table(header, rows), "",
              "Ratios: medians of per-round paired ratios within the same runtime. GMAC: "
              "multiply-accumulates of every Conv and ConvTranspose of the exported model. "
              "The paper's DCL row is its baseline (kernel size not given in Table 2).", ""]
    torch_rows = [r for r in result["rows"] if "onnxruntime_cpu_over_this" in r]
    if torch_rows:
        lines += ["## onnxruntime against PyTorch eager (same model, same rounds)", "",
                  markdown_table(["up-sampling", "onnxruntime-cpu / " + torch_rows[0]["runtime"]],
                                 [[r["variant"], fmt(r["onnxruntime_cpu_over_this"]["median"])]
                                  for r in torch_rows]), ""]
    detail = [[r["variant"], r["runtime"], fmt(r["times_ms"]["median"], 1),
               fmt(r["times_ms"]["p90"], 1), fmt(r["times_ms"]["p99"], 1), r["times_ms"]["n"],
               fmt(r["gmacs"] and r["gmacs"] / (r["times_ms"]["median"] / 1e3) * 2, 1)]
              for r in result["rows"]]
    lines += ["## Details", "", markdown_table(
        ["up-sampling", "runtime", "median ms", "p90", "p99", "runs", "GFLOP/s"], detail), ""]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kinds", default=None,
                   help="comma-separated layer kinds (default: every registered kind); the "
                        "DCL k=6 U-Net, the baseline, is always timed")
    p.add_argument("--size", type=int, default=None,
                   help="input height = width (default 256; quick: 32)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--providers", default="cpu",
                   help="onnxruntime providers, comma-separated: cpu, cuda, tensorrt (default cpu)")
    p.add_argument("--no-torch", action="store_true", help="time onnxruntime only")
    p.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--no-verify", action="store_true",
                   help="skip checking each exported model against PyTorch")
