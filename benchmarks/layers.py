"""``pixeldcn bench layers``: every up-sampling layer kind, timed in onnxruntime.

Every registered kind (both forms where it has two; the efficient form of the phase-interleaving
kinds also with ``interleave="concat"``; DCL with k = 3, 4 and 6) is timed at the
U-Net decoder shapes and a VAE-decoder shape. Within one configuration (shape, batch, provider)
all variants run interleaved, one run each per round in a random order; times are reported as
median / p90 / p99 over the rounds, as useful GFLOP/s, as a ratio to DCL (k = 6) and as a
fraction of a plain Conv's throughput, every ratio being the median of per-round paired ratios.

The plain Conv (the practical limit) is one 3x3 Conv at input resolution, from the layer's
``in_channels`` to as many output channels as make its MACs equal the layer's useful MACs
(:func:`benchmarks._graphs.plain_conv_channels`). Its throughput is what onnxruntime reaches on
a dense, well-shaped GEMM of the same size; a layer at 100 % does its useful work as fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import INTERLEAVES, KINDS, LayerSpec, PixelDCNError, build_layer_model, get_kind

from ._machine import machine_info, physical_cores
from ._report import Target, fmt, markdown_table, targets_table, write_json, write_text
from ._stats import paired_ratio, summarize
from ._timing import RoundPolicy, run_interleaved

__all__ = [
    "DECODER_SHAPES",
    "VAE_SHAPE",
    "Config",
    "LayerVariant",
    "configs",
    "layer_targets",
    "layer_variants",
    "run_layers",
]

#: (in_channels, out_channels, H = W) of the U-Net decoder's up-sampling layers, 1/16 .. 1/2.
DECODER_SHAPES = ((1024, 512, 16), (512, 256, 32), (256, 128, 64), (128, 64, 128))
DECODER_BATCHES = (1, 8)
#: A VAE decoder's up-sampling layer, and its batch.
VAE_SHAPE, VAE_BATCH = (128, 64, 16), 32
QUICK_DECODER_SHAPES = ((32, 16, 8), (16, 8, 16))
QUICK_DECODER_BATCHES = (1, 2)
QUICK_VAE_SHAPE, QUICK_VAE_BATCH = (16, 8, 8), 4
#: DCL kernel sizes timed; the last is the baseline every time is divided by.
DCL_KERNELS = (3, 4, 6)
BASELINE = "dcl_k6"
#: Further paired ratios reported per configuration (numerator, denominator).
PAIRS = (("pixel_dcl_k3", "dcl_k4"), ("ipixel_dcl_k3", "dcl_k4"), ("pixel_dcl_k3", "dcl_k3"),
         ("pixel_dcl_k3_concat", "dcl_k4"), ("pixel_dcl_k3_concat", "pixel_dcl_k3"),
         ("ipixel_dcl_k3_concat", "ipixel_dcl_k3"), ("resize_conv_k3_concat", "resize_conv_k3"))
#: Kinds whose efficient graph interleaves phases, timed with each of the core's interleaves.
INTERLEAVING_KINDS = ("pixel_dcl", "ipixel_dcl", "resize_conv")

DEFAULTS = {"rounds": 20, "warmup": 1, "budget": 30.0, "min_rounds": 5}
QUICK_DEFAULTS = {"rounds": 3, "warmup": 1, "budget": None, "min_rounds": 3}


@dataclasses.dataclass(frozen=True)
class Config:
    """One shape to time every variant at."""

    role: str  # "decoder" or "vae"
    in_channels: int
    out_channels: int
    size: int
    batch: int

    @property
    def label(self) -> str:
        return f"{self.in_channels}x{self.out_channels}@{self.size} b{self.batch}"

    @property
    def shape_id(self) -> str:
        return f"{self.in_channels}x{self.out_channels}x{self.size}"


@dataclasses.dataclass(frozen=True)
class LayerVariant:
    """One layer as built by the core: kind, kernel size, ONNX form and phase interleave."""

    kind: str
    k: int
    form: str
    interleave: str = "depth_to_space"

    @property
    def name(self) -> str:
        return (f"{self.kind}_k{self.k}" + ("" if self.form == "efficient" else f"_{self.form}")
                + ("" if self.interleave == "depth_to_space" else f"_{self.interleave}"))


def layer_variants(kinds: Sequence[str] | None = None) -> list[LayerVariant]:
    """Every registered kind (or those in ``kinds``) in each of its forms; DCL at k = 3, 4, 6;
    the efficient form of :data:`INTERLEAVING_KINDS` with every other interleave too.

    DCL k = 6 (the baseline) is always included.
    """
    names = list(KINDS) if not kinds else [get_kind(k).name for k in kinds]
    if "dcl" not in names:
        names.insert(0, "dcl")
    out: list[LayerVariant] = []
    for name in dict.fromkeys(names):
        info = KINDS[name]
        ks = DCL_KERNELS if name == "dcl" else (info.default_kernel,)
        out += [LayerVariant(name, k, form) for k in ks for form in info.forms]
        if name in INTERLEAVING_KINDS:
            out += [LayerVariant(name, k, "efficient", il) for k in ks
                    for il in INTERLEAVES if il != "depth_to_space"]
    if kinds and "dcl" not in [get_kind(k).name for k in kinds]:
        out = [v for v in out if v.kind != "dcl" or v.k == 6]
    return out


def configs(quick: bool, batches: Sequence[int] | None = None, vae: bool = True) -> list[Config]:
    shapes = QUICK_DECODER_SHAPES if quick else DECODER_SHAPES
    default_batches = QUICK_DECODER_BATCHES if quick else DECODER_BATCHES
    out = [Config("decoder", cin, c, h, n)
           for n in (batches or default_batches) for cin, c, h in shapes]
    if vae:
        (cin, c, h), n = (QUICK_VAE_SHAPE, QUICK_VAE_BATCH) if quick else (VAE_SHAPE, VAE_BATCH)
        out.append(Config("vae", cin, c, h, n))
    return out


@dataclasses.dataclass
class _Entry:
    """Something timed in a configuration's rounds."""

    name: str
    role: str  # "layer", "plain_conv", "graph_variant", "node"
    run: Callable[[], None]
    info: dict[str, Any]


def _op_counts(model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _build_entries(cfg: Config, choice: Any, variants: Sequence[LayerVariant], *, dtype: str,
                   graph_variants: bool, breakdown: Sequence[str], seed: int) -> list[_Entry]:
    from ._graphs import (
        PIXEL_DCL_VARIANTS,
        node_models,
        pixel_dcl_variant_model,
        plain_conv_channels,
        plain_conv_model,
    )
    from ._ort import make_runner, make_session

    np_dtype = np.float16 if dtype == "float16" else np.float32
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.batch, cfg.in_channels, cfg.size, cfg.size)).astype(np_dtype)
    pixels = cfg.batch * cfg.size * cfg.size
    entries: list[_Entry] = []
    convs: dict[int, str] = {}  # plain-conv output channels -> entry name
    for v in variants:
        spec = LayerSpec(v.kind, cfg.in_channels, cfg.out_channels, v.k)
        weights = spec.random_weights(seed)
        model = build_layer_model(v.kind, weights, form=v.form, dtype=dtype,
                                  interleave=v.interleave)
        sess = make_session(model.SerializeToString(), choice)
        cout = plain_conv_channels(spec)
        conv_name = f"conv3x3_{cfg.in_channels}to{cout}"
        entries.append(_Entry(v.name, "layer", make_runner(sess, {"x": x}, choice), {
            "kind": v.kind, "k": v.k, "form": v.form, "interleave": v.interleave,
            "title": spec.info.title,
            "ops": _op_counts(model),
            "useful_flops": 2 * spec.macs_per_input_pixel() * pixels,
            "plain_conv": conv_name,
        }))
        if cout not in convs:
            convs[cout] = conv_name
            cm = plain_conv_model(cfg.in_channels, cout, dtype=dtype)
            csess = make_session(cm.SerializeToString(), choice)
            entries.append(_Entry(conv_name, "plain_conv", make_runner(csess, {"x": x}, choice), {
                "in_channels": cfg.in_channels, "out_channels": cout, "kernel": 3,
                "useful_flops": 2 * 9 * cfg.in_channels * cout * pixels,
            }))
        if (v.kind, v.form, v.interleave) == ("pixel_dcl", "efficient", "depth_to_space") \
                and graph_variants:
            for gname in PIXEL_DCL_VARIANTS:
                if gname == "core":
                    continue  # that is the layer itself
                gm = pixel_dcl_variant_model(gname, weights, dtype=dtype)
                gsess = make_session(gm.SerializeToString(), choice)
                entries.append(_Entry(f"{v.name}@{gname}", "graph_variant",
                                      make_runner(gsess, {"x": x}, choice), {
                    "kind": v.kind, "k": v.k, "variant": gname,
                    "description": PIXEL_DCL_VARIANTS[gname], "ops": _op_counts(gm),
                    "useful_flops": 2 * spec.macs_per_input_pixel() * pixels,
                    "of": v.name,
                }))
        if v.name in breakdown:
            for nm in node_models(model, {"x": x}):
                nsess = make_session(nm.model.SerializeToString(), choice)
                entries.append(_Entry(f"{v.name}/{nm.index}", "node",
                                      make_runner(nsess, nm.feeds, choice), {
                    "of": v.name, "index": nm.index, "op_type": nm.op_type, "label": nm.label,
                }))
    return entries


def run_config(cfg: Config, choice: Any, variants: Sequence[LayerVariant], policy: RoundPolicy, *,
               dtype: str = "float32", graph_variants: bool = False,
               breakdown: Sequence[str] = (), seed: int = 0, progress: bool = True
               ) -> dict[str, Any]:
    """Time every variant of one configuration, interleaved; returns its JSON record."""
    t_build = time.perf_counter()
    entries = _build_entries(cfg, choice, variants, dtype=dtype, graph_variants=graph_variants,
                             breakdown=breakdown, seed=seed)
    build_s = time.perf_counter() - t_build
    t0 = time.perf_counter()
    times = run_interleaved({e.name: e.run for e in entries}, policy, seed=seed,
                            desc=f"{choice.name} {cfg.label}", progress=progress)
    wall = time.perf_counter() - t0
    base = times[BASELINE]
    by_name = {e.name: e for e in entries}
    records = []
    for e in entries:
        t = times[e.name]
        rec: dict[str, Any] = {"name": e.name, "role": e.role, **e.info,
                               "times_ms": summarize(t)}
        rec["ratio_to_dcl_k6"] = paired_ratio(t, base)
        flops = e.info.get("useful_flops")
        if flops:
            rec["useful_gflop"] = flops / 1e9
            rec["gflops_per_s"] = flops / 1e9 / (rec["times_ms"]["median"] / 1e3)
        conv = e.info.get("plain_conv")
        if conv:
            # (F_layer / t_layer) / (F_conv / t_conv), paired per round.
            cflops = by_name[conv].info["useful_flops"]
            rec["fraction_of_plain_conv"] = paired_ratio(times[conv], t, scale=flops / cflops)
        of = e.info.get("of")
        if of:
            rec["ratio_to_" + ("core" if e.role == "graph_variant" else "whole")] = paired_ratio(
                t, times[of])
        records.append(rec)
    pairs = {f"{a}/{b}": paired_ratio(times[a], times[b])
             for a, b in PAIRS if a in times and b in times}
    return {
        **dataclasses.asdict(cfg), "label": cfg.label, "provider": choice.name,
        "rounds_run": len(base), "build_s": round(build_s, 2), "timed_s": round(wall, 2),
        "variants": records, "pairs": pairs,
    }


# ---------------------------------------------------------------------------------------------
# targets


def _find(cfg: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((v for v in cfg["variants"] if v["name"] == name), None)


def layer_targets(result: dict[str, Any]) -> list[Target]:
    """The issue's per-layer targets on the CPU provider, batch 1, every decoder shape."""
    out: list[Target] = []
    for cfg in result["configs"]:
        if cfg["provider"] != "cpu" or cfg["role"] != "decoder" or cfg["batch"] != 1:
            continue
        shape = f"{cfg['in_channels']}->{cfg['out_channels']} @{cfg['size']}"
        sid = f"{cfg['in_channels']}x{cfg['out_channels']}x{cfg['size']}"

        def note(v: dict[str, Any], base: str, bound: float, cfg: dict[str, Any] = cfg) -> str:
            b = _find(cfg, base)
            if b is None:
                return ""
            flops = v["useful_flops"] / b["useful_flops"]
            return (f"useful FLOPs {flops:.3f}x {base}'s: the bound needs "
                    f"{flops / bound:.2f}x its GFLOP/s")

        # The efficient form with each interleave: the default DepthToSpace, then "concat".
        for suffix, how in (("", ""), ("_concat", ", concat interleave")):
            pix = _find(cfg, f"pixel_dcl_k3{suffix}")
            ipix = _find(cfg, f"ipixel_dcl_k3{suffix}")
            if pix is not None:
                out.append(Target(f"pixel_dcl{suffix}_vs_dcl_k6_b1_{sid}",
                                  f"PixelDCL (efficient{how}) / DCL k=6, b1, {shape}",
                                  pix["ratio_to_dcl_k6"]["median"], 0.45,
                                  note=note(pix, "dcl_k6", 0.45)))
                r4 = cfg.get("pairs", {}).get(f"pixel_dcl_k3{suffix}/dcl_k4")
                out.append(Target(f"pixel_dcl{suffix}_vs_dcl_k4_b1_{sid}",
                                  f"PixelDCL (efficient{how}) / DCL k=4, b1, {shape}",
                                  None if r4 is None else r4["median"], 1.0,
                                  note=note(pix, "dcl_k4", 1.0)))
                frac = pix.get("fraction_of_plain_conv")
                out.append(Target(f"pixel_dcl{suffix}_plain_conv_fraction_b1_{sid}",
                                  f"PixelDCL (efficient{how}) useful GFLOP/s vs plain 3x3 Conv, "
                                  f"b1, {shape}",
                                  None if frac is None else 100 * frac["median"], 70.0, op=">=",
                                  unit="%"))
            if ipix is not None:
                out.append(Target(f"ipixel_dcl{suffix}_vs_dcl_k6_b1_{sid}",
                                  f"iPixelDCL (efficient{how}) / DCL k=6, b1, {shape}",
                                  ipix["ratio_to_dcl_k6"]["median"], 1.1,
                                  note=note(ipix, "dcl_k6", 1.1)))
    return out


# ---------------------------------------------------------------------------------------------
# report


def _cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "-"
    return f"{fmt(v['ratio_to_dcl_k6']['median'])} ({fmt(v['times_ms']['median'], 1)} ms)"


def layers_markdown(result: dict[str, Any]) -> str:
    """The whole report as Markdown: targets, summary tables, variants, breakdowns, details."""
    m = result["machine"]
    s = result["settings"]
    lines = [
        "# Up-sampling layers in onnxruntime (`pixeldcn bench layers`)",
        "",
        f"{m['cpu_model']}, {m['physical_cores']} cores, {m['os']}; python {m['python']}, "
        f"onnxruntime {m['packages'].get('onnxruntime') or m['packages'].get('onnxruntime-gpu')},"
        f" numpy {m['packages'].get('numpy')}; {m['timestamp']}.",
        f"Settings: `{s['command']}`; {s['threads']} intra-op threads, spinning off; up to "
        f"{s['policy']['rounds']} rounds ({s['policy']['warmup']} warm-up), budget "
        f"{s['policy']['budget_s']} s per configuration; dtype {s['dtype']}.",
        "Ratios are medians of per-round paired ratios (same round, same load).",
        "",
    ]
    if result.get("skipped_providers"):
        lines += ["Providers skipped: " + "; ".join(
            f"{k} ({v})" for k, v in result["skipped_providers"].items()), ""]
    if result["targets"]:
        lines += ["## Targets (CPU, fp32, batch 1)", "",
                  targets_table([Target(**{k: v for k, v in t.items() if k != "status"})
                                 for t in result["targets"]]), ""]
    for provider in dict.fromkeys(c["provider"] for c in result["configs"]):
        cfgs = [c for c in result["configs"] if c["provider"] == provider]
        names = list(dict.fromkeys(v["name"] for c in cfgs for v in c["variants"]
                                   if v["role"] == "layer"))
        lines += [f"## {provider}: time relative to DCL k=6 (median time)", "",
                  markdown_table(["layer"] + [c["label"] for c in cfgs],
                                 [[n] + [_cell(_find(c, n)) for c in cfgs] for n in names]), ""]
        rows = []
        for n in names:
            row = [n]
            for c in cfgs:
                v = _find(c, n)
                if v is None:
                    row.append("-")
                    continue
                frac = v.get("fraction_of_plain_conv")
                row.append(f"{fmt(v['gflops_per_s'], 1)} ({fmt(100 * frac['median'], 0)} %)"
                           if frac else fmt(v["gflops_per_s"], 1))
            rows.append(row)
        lines += [f"## {provider}: useful GFLOP/s (fraction of a plain 3x3 Conv of the same MACs)",
                  "", markdown_table(["layer"] + [c["label"] for c in cfgs], rows), ""]
        gv = [c for c in cfgs if any(v["role"] == "graph_variant" for v in c["variants"])]
        if gv:
            vnames = ["pixel_dcl_k3", *dict.fromkeys(
                v["name"] for c in gv for v in c["variants"] if v["role"] == "graph_variant")]
            rows = []
            for n in vnames:
                row = [n.split("@")[1] if "@" in n else "core (emitter today)"]
                for c in gv:
                    v = _find(c, n)
                    if v is None:
                        row.append("-")
                        continue
                    core = v.get("ratio_to_core", {"median": 1.0})["median"]
                    row.append(f"{fmt(v['times_ms']['median'], 1)} ms, {fmt(core)}x core, "
                               f"{fmt(v['ratio_to_dcl_k6']['median'])}x DCL6")
                rows.append(row)
            lines += [f"## {provider}: PixelDCL (k=3) efficient-form graph variants", "",
                      markdown_table(["graph"] + [c["label"] for c in gv], rows), "",
                      *[f"- `{n.split('@')[1]}`: {_find(gv[0], n)['description']}"
                        for n in vnames[1:] if _find(gv[0], n)], ""]
        for c in cfgs:
            nodes = [v for v in c["variants"] if v["role"] == "node"]
            for whole in dict.fromkeys(v["of"] for v in nodes):
                part = [v for v in nodes if v["of"] == whole]
                w = _find(c, whole)
                total = sum(v["times_ms"]["median"] for v in part)
                rows = [[f"{v['index']}: {v['label']}", fmt(v["times_ms"]["median"], 2),
                         f"{fmt(100 * v['ratio_to_whole']['median'], 1)} %"] for v in part]
                rows.append(["**sum of nodes** / whole model",
                             f"{fmt(total, 1)} / {fmt(w['times_ms']['median'], 1)}",
                             f"{fmt(100 * total / w['times_ms']['median'], 0)} %"])
                lines += [f"### {provider}, {c['label']}: {whole} node by node", "",
                          markdown_table(["node", "median ms", "share of whole"], rows), ""]
        lines += [f"## {provider}: details", ""]
        for c in cfgs:
            rows = []
            for v in c["variants"]:
                if v["role"] == "node":
                    continue
                t = v["times_ms"]
                frac = v.get("fraction_of_plain_conv")
                rows.append([v["name"], v["role"], fmt(t["median"], 2), fmt(t["p90"], 2),
                             fmt(t["p99"], 2), t["n"], fmt(v.get("useful_gflop"), 3),
                             fmt(v.get("gflops_per_s"), 1), fmt(v["ratio_to_dcl_k6"]["median"]),
                             "-" if not frac else f"{fmt(100 * frac['median'], 0)} %"])
            lines += [f"### {c['label']} ({c['rounds_run']} rounds, {c['timed_s']} s)", "",
                      markdown_table(["variant", "role", "median ms", "p90", "p99", "runs",
                                      "useful GFLOP", "GFLOP/s", "x DCL k=6", "of plain conv"],
                                     rows), ""]
    return "\n".join(lines)


def _split_list(text: str | None) -> list[str] | None:
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def run_layers(args: argparse.Namespace) -> int:
    """Handler of ``pixeldcn bench layers``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise PixelDCNError("bench layers needs onnxruntime: pip install 'pixeldcn[cpu]'") from exc
    from ._ort import parse_providers, resolve_providers

    defaults = QUICK_DEFAULTS if args.quick else DEFAULTS
    policy = RoundPolicy(
        args.rounds if args.rounds is not None else defaults["rounds"],
        args.warmup if args.warmup is not None else defaults["warmup"],
        budget_s=(args.budget if args.budget is not None else defaults["budget"]) or None,
        min_rounds=args.min_rounds if args.min_rounds is not None else defaults["min_rounds"],
    )
    threads = args.threads or physical_cores()
    names = parse_providers(args.providers)
    explicit = args.providers.strip().lower() not in ("auto", "")
    choices, skipped = resolve_providers(
        names, threads=threads, fp16=args.trt_fp16, cache_dir=args.trt_cache,
        required=names if explicit else ())
    if not choices:
        raise PixelDCNError("no usable execution provider: " + "; ".join(
            f"{k}: {v}" for k, v in skipped.items()))
    variants = layer_variants(_split_list(args.kinds))
    batches = [int(b) for b in _split_list(args.batches) or []] or None
    cfgs = configs(args.quick, batches, vae=not args.no_vae)
    breakdown = [] if args.no_breakdown else ["pixel_dcl_k3", "pixel_dcl_k3_concat", "ipixel_dcl_k3"]
    out_dir = Path(args.out or "runs/bench-layers")
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "layers",
        "schema": 1,
        "machine": machine_info(),
        "settings": {
            "command": "pixeldcn bench " + " ".join(args.argv),
            "quick": args.quick, "threads": threads, "policy": policy.as_dict(),
            "providers": [c.name for c in choices], "dtype": args.dtype, "seed": args.seed,
            "graph_variants": args.variants, "breakdown": breakdown,
            "baseline": BASELINE,
            "plain_conv": "one 3x3 Conv at input resolution from in_channels to "
                          "round(useful MACs per pixel / (9 in_channels)) channels",
            "spinning": "session.intra_op.allow_spinning=0",
        },
        "skipped_providers": skipped,
        "configs": [],
    }
    t0 = time.perf_counter()
    for choice in choices:
        for cfg in cfgs:
            # Only batch-1 decoder shapes get the node breakdown and the graph variants: they
            # explain the targets, which are set there.
            at_target = cfg.role == "decoder" and cfg.batch == 1
            rec = run_config(cfg, choice, variants, policy, dtype=args.dtype,
                             graph_variants=args.variants and at_target,
                             breakdown=breakdown if at_target else (), seed=args.seed,
                             progress=not args.no_progress)
            result["configs"].append(rec)
            pix = _find(rec, "pixel_dcl_k3")
            print(f"[layers] {choice.name:8s} {cfg.label:22s} {rec['rounds_run']:3d} rounds "
                  f"{rec['timed_s']:6.1f} s"
                  + (f"  PixelDCL {pix['ratio_to_dcl_k6']['median']:.2f}x DCL6" if pix else ""),
                  flush=True)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    result["targets"] = [t.as_dict() for t in layer_targets(result)]
    write_json(out_dir / "layers.json", result)
    write_text(out_dir / "layers.md", layers_markdown(result) + "\n")
    if not args.no_plots:
        from ._plots import layers_plots

        layers_plots(result, out_dir)
    for t in result["targets"]:
        print(f"[layers] target {t['description']}: {fmt(t['measured'])} {t['op']} "
              f"{t['threshold']:g} -> {t['status']}")
    print(f"[layers] wrote {out_dir}/layers.json, layers.md" +
          ("" if args.no_plots else ", layers_*.png") + f" in {result['total_s']} s")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kinds", default=None,
                   help="comma-separated layer kinds (default: every registered kind); "
                        "DCL k=6, the baseline, is always timed")
    p.add_argument("--batches", default=None,
                   help="comma-separated decoder batch sizes (default 1,8; quick: 1,2)")
    p.add_argument("--no-vae", action="store_true", help="skip the VAE-decoder configuration")
    p.add_argument("--providers", default="auto",
                   help="onnxruntime providers: comma-separated cpu, cuda, tensorrt; 'auto' "
                        "(default) = CPU plus every GPU provider that works here")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                   help="model dtype (float16 is for GPU providers)")
    p.add_argument("--trt-fp16", action="store_true", help="let TensorRT use fp16 kernels")
    p.add_argument("--trt-cache", default=None, help="TensorRT engine cache folder")
    p.add_argument("--variants", action="store_true",
                   help="also time alternative ONNX graphs of PixelDCL's efficient form")
    p.add_argument("--no-breakdown", action="store_true",
                   help="skip timing PixelDCL and iPixelDCL node by node at batch 1")
