"""``pixeldcn bench layers``: every up-sampling layer kind, timed in onnxruntime.

Every registered kind (both forms where it has two; the efficient form of the kinds whose
registry entry says they interleave phases also with each other interleave; DCL, the baseline,
with k = 3, 4 and 6) is timed at the U-Net decoder shapes and a VAE-decoder shape. Within one
configuration (shape, batch, provider) all variants run interleaved, one run each per round in a
random order; times are reported as median / p90 / p99 over the rounds, as useful GFLOP/s, as a
ratio to DCL (k = 6) and as a fraction of a plain Conv's throughput, every ratio being the median
of per-round paired ratios.

The plain Conv (the practical limit) is one 3x3 Conv at input resolution, from the layer's
``in_channels`` to as many output channels as make its MACs equal the layer's useful MACs
(:func:`benchmarks._graphs.plain_conv_channels`). Its throughput is what onnxruntime reaches on
a dense, well-shaped GEMM of the same size; a layer at 100 % does its useful work as fast.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pixeldcn_core import INTERLEAVES, LayerSpec, build_layer_model, get_kind, layer_kinds

from ._errors import BenchmarkError
from ._machine import machine_info, physical_cores
from ._plots import layers_plots
from ._protocol import BASELINE_KIND, Result
from ._report import Target, fmt, machine_line, markdown_table, split_list, targets_section
from ._stats import paired_ratio, summarize
from ._timing import RoundPolicy, run_interleaved

__all__ = [
    "BENCHMARK",
    "DECODER_SHAPES",
    "VAE_SHAPE",
    "Config",
    "LayerVariant",
    "LayersSettings",
    "configs",
    "layer_spec",
    "layer_targets",
    "layer_variants",
]

#: (in_channels, out_channels, H = W) of the U-Net decoder's up-sampling layers, 1/16 .. 1/2.
DECODER_SHAPES = ((1024, 512, 16), (512, 256, 32), (256, 128, 64), (128, 64, 128))
DECODER_BATCHES = (1, 8)
#: A VAE decoder's up-sampling layer, and its batch.
VAE_SHAPE, VAE_BATCH = (128, 64, 16), 32
QUICK_DECODER_SHAPES = ((32, 16, 8), (16, 8, 16))
QUICK_DECODER_BATCHES = (1, 2)
QUICK_VAE_SHAPE, QUICK_VAE_BATCH = (16, 8, 8), 4
#: Kernel sizes of the baseline kind timed; the last is the baseline every time is divided by.
BASELINE_KERNELS = (3, 4, 6)
BASELINE = f"{BASELINE_KIND}_k{BASELINE_KERNELS[-1]}"
#: Further paired ratios reported per configuration (numerator, denominator).
PAIRS = (("pixel_dcl_k3", "dcl_k4"), ("ipixel_dcl_k3", "dcl_k4"), ("pixel_dcl_k3", "dcl_k3"),
         ("pixel_dcl_k3_concat", "dcl_k4"), ("pixel_dcl_k3_concat", "pixel_dcl_k3"),
         ("ipixel_dcl_k3_concat", "ipixel_dcl_k3"), ("resize_conv_k3_concat", "resize_conv_k3"))
#: Layers also timed node by node (batch-1 decoder shapes, unless --no-breakdown).
BREAKDOWN = ("pixel_dcl_k3", "pixel_dcl_k3_concat", "ipixel_dcl_k3")
#: The layer whose alternative ONNX graphs ``--variants`` times (:mod:`benchmarks._graphs`).
GRAPH_VARIANTS_OF = "pixel_dcl_k3"
#: The issue's per-layer targets (CPU, batch 1, every decoder shape, each interleave of the
#: efficient form): (layer, title, against, bound). ``against`` is a variant (time ratio, at
#: most ``bound``) or ``"plain_conv"`` (percent of the plain Conv's GFLOP/s, at least ``bound``).
LAYER_TARGETS = (("pixel_dcl_k3", "PixelDCL", BASELINE, 0.45),
                 ("pixel_dcl_k3", "PixelDCL", "dcl_k4", 1.0),
                 ("pixel_dcl_k3", "PixelDCL", "plain_conv", 70.0),
                 ("ipixel_dcl_k3", "iPixelDCL", BASELINE, 1.1))

POLICY = RoundPolicy(20, 1, budget_s=30.0, min_rounds=5)
QUICK_POLICY = RoundPolicy(3, 1, budget_s=None, min_rounds=3)


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


@dataclasses.dataclass(frozen=True)
class LayerVariant:
    """One layer as built by the core: kind, kernel size, ONNX form and phase interleave."""

    kind: str
    k: int
    form: str = "efficient"
    interleave: str = INTERLEAVES[0]

    @property
    def name(self) -> str:
        return (f"{self.kind}_k{self.k}" + ("" if self.form == "efficient" else f"_{self.form}")
                + ("" if self.interleave == INTERLEAVES[0] else f"_{self.interleave}"))


def layer_variants(kinds: Sequence[str] | None = None) -> list[LayerVariant]:
    """Every kind registered now (or those in ``kinds``) in each of its forms, the baseline at
    :data:`BASELINE_KERNELS`; the efficient form of every kind that interleaves phases with
    every other interleave too. The baseline (DCL k = 6) is always included; its other kernel
    sizes only when ``kinds`` names it or is empty."""
    names = [get_kind(k).name for k in kinds] if kinds else list(layer_kinds())
    sweep = BASELINE_KIND in names
    out: list[LayerVariant] = []
    for name in dict.fromkeys([BASELINE_KIND, *names]):
        info = get_kind(name)
        ks = (BASELINE_KERNELS if sweep else BASELINE_KERNELS[-1:]) if name == BASELINE_KIND \
            else (info.default_kernel,)
        out += [LayerVariant(name, k, form) for k in ks for form in info.forms]
        if info.interleaves:
            out += [LayerVariant(name, k, "efficient", il) for k in ks for il in INTERLEAVES[1:]]
    return out


def layer_spec(v: LayerVariant, cfg: Config) -> LayerSpec:
    """The layer timed for ``v`` at ``cfg``: ``cfg``'s channels, except for a kind whose output
    channels follow its input ones (``KindInfo.in_per_out = r``: bilinear, bilinear-additive),
    which takes ``r * out_channels`` input channels, so that every layer writes the same output
    ``[N, out_channels, 2 size, 2 size]``."""
    r = get_kind(v.kind).in_per_out
    cin = cfg.in_channels if r is None else r * cfg.out_channels
    return LayerSpec(v.kind, cin, cfg.out_channels, v.k)


def configs(quick: bool, batches: Sequence[int] | None = None, vae: bool = True) -> list[Config]:
    shapes = QUICK_DECODER_SHAPES if quick else DECODER_SHAPES
    default_batches = QUICK_DECODER_BATCHES if quick else DECODER_BATCHES
    out = [Config("decoder", cin, c, h, n)
           for n in (batches or default_batches) for cin, c, h in shapes]
    if vae:
        (cin, c, h), n = (QUICK_VAE_SHAPE, QUICK_VAE_BATCH) if quick else (VAE_SHAPE, VAE_BATCH)
        out.append(Config("vae", cin, c, h, n))
    return out


@dataclasses.dataclass(frozen=True)
class LayersSettings:
    """The plan of ``pixeldcn bench layers`` (see :meth:`Layers.plan`)."""

    command: str
    quick: bool
    threads: int
    policy: RoundPolicy
    providers: tuple[str, ...]
    providers_required: bool  # named on the command line: each must work
    variants: tuple[LayerVariant, ...]
    configs: tuple[Config, ...]
    dtype: str = "float32"
    seed: int = 0
    graph_variants: bool = False
    breakdown: tuple[str, ...] = BREAKDOWN
    trt_fp16: bool = False
    trt_cache: str | None = None

    def to_json(self, providers: Sequence[str]) -> dict[str, Any]:
        return {
            "command": self.command, "quick": self.quick, "threads": self.threads,
            "policy": self.policy.as_dict(), "providers": list(providers), "dtype": self.dtype,
            "seed": self.seed, "graph_variants": self.graph_variants,
            "breakdown": list(self.breakdown), "baseline": BASELINE,
            "plain_conv": "one 3x3 Conv at input resolution from in_channels to "
                          "round(useful MACs per pixel / (9 in_channels)) channels",
            "spinning": "session.intra_op.allow_spinning=0",
        }


# ---------------------------------------------------------------------------------------------
# timing one configuration


@dataclasses.dataclass
class _Entry:
    """Something timed in a configuration's rounds, and what its record says about it."""

    name: str
    role: str  # "layer", "plain_conv", "graph_variant", "node"
    run: Callable[[], None]
    info: dict[str, Any]


def _op_counts(model: Any) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


class _Builder:
    """Sessions of one configuration on one provider: the layers and what is timed beside them."""

    def __init__(self, cfg: Config, choice: Any, s: LayersSettings, at_target: bool) -> None:
        from ._ort import make_runner, make_session

        self.cfg, self.s, self.at_target = cfg, s, at_target
        self.runner = lambda model, feeds: make_runner(
            make_session(model.SerializeToString(), choice), feeds, choice)
        rng = np.random.default_rng(s.seed)
        shape = (cfg.batch, cfg.in_channels, cfg.size, cfg.size)
        self.x = rng.standard_normal(shape).astype(np.float16 if s.dtype == "float16" else np.float32)
        self.useful_flops_per_mac = 2 * cfg.batch * cfg.size * cfg.size  # FLOPs = 2 MACs, per pixel
        self.entries: list[_Entry] = []
        self.convs: set[str] = set()
        self.inputs: dict[int, np.ndarray] = {}

    def add(self, name: str, role: str, model: Any, info: dict[str, Any],
            feeds: dict[str, np.ndarray] | None = None) -> None:
        self.entries.append(_Entry(name, role, self.runner(model, feeds or {"x": self.x}), info))

    def input(self, cin: int) -> np.ndarray:
        """The input of the configuration, or one with ``cin`` channels (same seed, dtype)."""
        if cin == self.cfg.in_channels:
            return self.x
        if cin not in self.inputs:
            rng = np.random.default_rng(self.s.seed)
            shape = (self.cfg.batch, cin, self.cfg.size, self.cfg.size)
            self.inputs[cin] = rng.standard_normal(shape).astype(self.x.dtype)
        return self.inputs[cin]

    def layer(self, v: LayerVariant) -> None:
        from ._graphs import activation_memory, conv_macs, plain_conv_channels

        spec = layer_spec(v, self.cfg)
        cin = spec.in_channels
        weights = spec.random_weights(self.s.seed)
        model = build_layer_model(v.kind, weights, form=v.form, dtype=self.s.dtype,
                                  interleave=v.interleave, in_channels=cin)
        flops = self.useful_flops_per_mac * spec.macs_per_input_pixel()
        cout = plain_conv_channels(spec)
        conv = f"conv3x3_{cin}to{cout}"
        x = self.input(cin)
        memory = activation_memory(model, {"x": x.shape})
        graph_macs = conv_macs(model, {"x": x.shape})
        self.add(v.name, "layer", model, {
            "kind": v.kind, "k": v.k, "form": v.form, "interleave": v.interleave,
            "in_channels": cin, "out_channels": spec.out_channels,
            "title": spec.info.title, "ops": _op_counts(model), "useful_flops": flops,
            "graph_gmac": None if graph_macs is None else sum(graph_macs.values()) / 1e9,
            "memory": None if memory is None else memory.as_dict(),
            "plain_conv": conv}, feeds={"x": x})
        self.plain_conv(conv, cout, cin)
        if v.name == GRAPH_VARIANTS_OF and self.s.graph_variants and self.at_target:
            self.graph_variants(v, weights, flops)
        if v.name in self.s.breakdown and self.at_target:
            self.nodes(v, model)

    def plain_conv(self, name: str, cout: int, cin: int) -> None:
        from ._graphs import plain_conv_model

        if name in self.convs:
            return
        self.convs.add(name)
        self.add(name, "plain_conv", plain_conv_model(cin, cout, dtype=self.s.dtype), {
            "in_channels": cin, "out_channels": cout, "kernel": 3,
            "useful_flops": self.useful_flops_per_mac * 9 * cin * cout},
            feeds={"x": self.input(cin)})

    def graph_variants(self, v: LayerVariant, weights: dict, flops: int) -> None:
        from ._graphs import PIXEL_DCL_VARIANTS, pixel_dcl_variant_model

        for gname, description in PIXEL_DCL_VARIANTS.items():
            if gname == "core":
                continue  # that is the layer itself
            gm = pixel_dcl_variant_model(gname, weights, dtype=self.s.dtype)
            self.add(f"{v.name}@{gname}", "graph_variant", gm, {
                "kind": v.kind, "k": v.k, "variant": gname, "description": description,
                "ops": _op_counts(gm), "useful_flops": flops, "of": v.name})

    def nodes(self, v: LayerVariant, model: Any) -> None:
        from ._graphs import node_models

        for nm in node_models(model, {"x": self.x}):
            self.add(f"{v.name}/{nm.index}", "node", nm.model, {
                "of": v.name, "index": nm.index, "op_type": nm.op_type, "label": nm.label},
                feeds=nm.feeds)


def _record(e: _Entry, times: dict[str, list[float]], entries: dict[str, _Entry]) -> dict:
    """The JSON record of one timed entry: times, ratios paired per round, useful GFLOP/s."""
    t = times[e.name]
    rec: dict[str, Any] = {"name": e.name, "role": e.role, **e.info, "times_ms": summarize(t),
                           "ratio_to_dcl_k6": paired_ratio(t, times[BASELINE])}
    flops = e.info.get("useful_flops")
    if flops:
        rec["useful_gflop"] = flops / 1e9
        rec["gflops_per_s"] = flops / 1e9 / (rec["times_ms"]["median"] / 1e3)
    conv = e.info.get("plain_conv")
    if conv:
        # (layer FLOPs / layer time) / (conv FLOPs / conv time), paired per round.
        rec["fraction_of_plain_conv"] = paired_ratio(
            times[conv], t, scale=flops / entries[conv].info["useful_flops"])
    of = e.info.get("of")
    if of:
        rec["ratio_to_" + ("core" if e.role == "graph_variant" else "whole")] = paired_ratio(
            t, times[of])
    return rec


def run_config(cfg: Config, choice: Any, s: LayersSettings, *, progress: bool = True
               ) -> dict[str, Any]:
    """Time every variant of one configuration, interleaved; returns its JSON record.

    Only batch-1 decoder shapes get the node breakdown and the graph variants: they explain the
    targets, which are set there.
    """
    t_build = time.perf_counter()
    b = _Builder(cfg, choice, s, at_target=cfg.role == "decoder" and cfg.batch == 1)
    for v in s.variants:
        b.layer(v)
    build_s = time.perf_counter() - t_build
    t0 = time.perf_counter()
    times = run_interleaved({e.name: e.run for e in b.entries}, s.policy, seed=s.seed,
                            desc=f"{choice.name} {cfg.label}", progress=progress)
    wall = time.perf_counter() - t0
    entries = {e.name: e for e in b.entries}
    return {
        **dataclasses.asdict(cfg), "label": cfg.label, "provider": choice.name,
        "rounds_run": len(times[BASELINE]), "build_s": round(build_s, 2),
        "timed_s": round(wall, 2), "variants": [_record(e, times, entries) for e in b.entries],
        "pairs": {f"{a}/{d}": paired_ratio(times[a], times[d])
                  for a, d in PAIRS if a in times and d in times},
    }


# ---------------------------------------------------------------------------------------------
# targets


def _find(cfg: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((v for v in cfg["variants"] if v["name"] == name), None)


def _target(cfg: dict[str, Any], layer: str, title: str, against: str, bound: float,
            interleave: str) -> Target | None:
    v = _find(cfg, layer + ("" if interleave == INTERLEAVES[0] else f"_{interleave}"))
    if v is None:
        return None
    shape = f"{cfg['in_channels']}->{cfg['out_channels']} @{cfg['size']}"
    sid = f"{cfg['in_channels']}x{cfg['out_channels']}x{cfg['size']}"
    stem = v["name"].replace(f"_k{v['k']}", "")  # e.g. pixel_dcl_concat
    what = f"{title} (efficient" + ("" if interleave == INTERLEAVES[0] else
                                    f", {interleave} interleave") + ")"
    if against == "plain_conv":
        frac = v.get("fraction_of_plain_conv")
        return Target(f"{stem}_plain_conv_fraction_b1_{sid}",
                      f"{what} useful GFLOP/s vs plain 3x3 Conv, b1, {shape}",
                      None if frac is None else 100 * frac["median"], bound, op=">=", unit="%")
    r = v["ratio_to_dcl_k6"] if against == BASELINE else cfg["pairs"].get(f"{v['name']}/{against}")
    base = _find(cfg, against)
    note = ""
    if base is not None:
        flops = v["useful_flops"] / base["useful_flops"]
        note = f"useful FLOPs {flops:.3f}x {against}'s: the bound needs {flops / bound:.2f}x its GFLOP/s"
    return Target(f"{stem}_vs_{against}_b1_{sid}",
                  f"{what} / DCL k={against.rsplit('_k', 1)[1]}, b1, {shape}",
                  None if r is None else r["median"], bound, note=note)


def layer_targets(configs: Sequence[dict[str, Any]]) -> list[Target]:
    """The issue's per-layer targets (:data:`LAYER_TARGETS`) on the CPU provider, batch 1."""
    out = [_target(cfg, *target, interleave)
           for cfg in configs if (cfg["provider"], cfg["role"], cfg["batch"]) == ("cpu", "decoder", 1)
           for interleave in INTERLEAVES for target in LAYER_TARGETS]
    return [t for t in out if t is not None]


# ---------------------------------------------------------------------------------------------
# report


def _table(cfgs: list[dict], names: list[str], cell: Callable[[dict], str], first: str = "layer",
           label: Callable[[str], str] = str) -> str:
    """Rows ``names``, one column per configuration, ``cell(variant)`` or ``-`` where absent."""
    rows = [[label(n)] + [(lambda v: "-" if v is None else cell(v))(_find(c, n)) for c in cfgs]
            for n in names]
    return markdown_table([first] + [c["label"] for c in cfgs], rows)


def _ratio_cell(v: dict) -> str:
    return f"{fmt(v['ratio_to_dcl_k6']['median'])} ({fmt(v['times_ms']['median'], 1)} ms)"


def _gflops_cell(v: dict) -> str:
    frac = v.get("fraction_of_plain_conv")
    return (f"{fmt(v['gflops_per_s'], 1)} ({fmt(100 * frac['median'], 0)} %)" if frac
            else fmt(v["gflops_per_s"], 1))


def _mib(nbytes: int | None) -> str:
    return fmt(None if nbytes is None else nbytes / 2**20)


def _cost_cell(v: dict) -> str:
    """``useful (graph) GMAC; largest intermediate / peak live MiB``."""
    m = v.get("memory")
    mem = "-" if not m else f"{_mib(m['largest_bytes'])} / {_mib(m['peak_live_bytes'])} MiB"
    return f"{fmt(v['useful_flops'] / 2e9, 3)} ({fmt(v.get('graph_gmac'), 3)}) GMAC; {mem}"


def _graph_variant_cell(v: dict) -> str:
    core = v.get("ratio_to_core", {"median": 1.0})["median"]
    return (f"{fmt(v['times_ms']['median'], 1)} ms, {fmt(core)}x core, "
            f"{fmt(v['ratio_to_dcl_k6']['median'])}x DCL6")


def _graph_variants_md(provider: str, cfgs: list[dict]) -> list[str]:
    gv = [c for c in cfgs if any(v["role"] == "graph_variant" for v in c["variants"])]
    if not gv:
        return []
    names = [GRAPH_VARIANTS_OF, *dict.fromkeys(
        v["name"] for c in gv for v in c["variants"] if v["role"] == "graph_variant")]
    return [f"## {provider}: PixelDCL (k=3) efficient-form graph variants", "",
            _table(gv, names, _graph_variant_cell, "graph",
                   lambda n: n.split("@")[1] if "@" in n else "core (emitter today)"), "",
            *[f"- `{n.split('@')[1]}`: {_find(gv[0], n)['description']}"  # type: ignore[index]
              for n in names[1:] if _find(gv[0], n)], ""]


def _breakdown_md(provider: str, c: dict) -> list[str]:
    nodes = [v for v in c["variants"] if v["role"] == "node"]
    lines: list[str] = []
    for whole in dict.fromkeys(v["of"] for v in nodes):
        part = [v for v in nodes if v["of"] == whole]
        w = _find(c, whole)["times_ms"]["median"]  # type: ignore[index]
        total = sum(v["times_ms"]["median"] for v in part)
        rows = [[f"{v['index']}: {v['label']}", fmt(v["times_ms"]["median"], 2),
                 f"{fmt(100 * v['ratio_to_whole']['median'], 1)} %"] for v in part]
        rows.append(["**sum of nodes** / whole model", f"{fmt(total, 1)} / {fmt(w, 1)}",
                     f"{fmt(100 * total / w, 0)} %"])
        lines += [f"### {provider}, {c['label']}: {whole} node by node", "",
                  markdown_table(["node", "median ms", "share of whole"], rows), ""]
    return lines


def _has_memory(cfgs: list[dict]) -> bool:
    """Results made before the memory measurement render as they did (no memory columns)."""
    return any(v.get("memory") for c in cfgs for v in c["variants"])


def _details_md(c: dict) -> list[str]:
    rows = []
    memory = _has_memory([c])
    for v in (v for v in c["variants"] if v["role"] != "node"):
        t, frac = v["times_ms"], v.get("fraction_of_plain_conv")
        m = v.get("memory") or {}
        rows.append([v["name"], v["role"], fmt(t["median"], 2), fmt(t["p90"], 2), fmt(t["p99"], 2),
                     t["n"], fmt(v.get("useful_gflop"), 3), fmt(v.get("gflops_per_s"), 1),
                     fmt(v["ratio_to_dcl_k6"]["median"]),
                     "-" if not frac else f"{fmt(100 * frac['median'], 0)} %",
                     *([_mib(m.get("largest_bytes")), _mib(m.get("peak_live_bytes"))] * memory)])
    header = ["variant", "role", "median ms", "p90", "p99", "runs", "useful GFLOP", "GFLOP/s",
              "x DCL k=6", "of plain conv", *(["largest interm. MiB", "peak live MiB"] * memory)]
    return [f"### {c['label']} ({c['rounds_run']} rounds, {c['timed_s']} s)", "",
            markdown_table(header, rows), ""]


def _provider_md(provider: str, cfgs: list[dict]) -> list[str]:
    names = list(dict.fromkeys(v["name"] for c in cfgs for v in c["variants"]
                               if v["role"] == "layer"))
    lines = [f"## {provider}: time relative to DCL k=6 (median time)", "",
             _table(cfgs, names, _ratio_cell), "",
             f"## {provider}: useful GFLOP/s (fraction of a plain 3x3 Conv of the same MACs)", "",
             _table(cfgs, names, _gflops_cell), ""]
    if _has_memory(cfgs):
        lines += [f"## {provider}: MACs and activation memory", "",
                  "Useful GMAC (the registry's count; in brackets every Conv/ConvTranspose MAC of "
                  "the graph, zero taps included); largest intermediate tensor / peak live "
                  "activations in MiB, from ONNX shape inference at the configuration's input "
                  "(weights not counted; a kind whose C follows Cin takes Cin = r x C, see "
                  "`layer_spec`).", "", _table(cfgs, names, _cost_cell), ""]
    lines += _graph_variants_md(provider, cfgs)
    for c in cfgs:
        lines += _breakdown_md(provider, c)
    lines += [f"## {provider}: details", ""]
    for c in cfgs:
        lines += _details_md(c)
    return lines


def layers_markdown(result: Result) -> str:
    """The whole report as Markdown: targets, summary tables, variants, breakdowns, details."""
    s, p = result.settings, result.settings["policy"]
    lines = [
        "# Up-sampling layers in onnxruntime (`pixeldcn bench layers`)", "",
        machine_line(result.machine, ("onnxruntime", "numpy")),
        f"Settings: `{s['command']}`; {s['threads']} intra-op threads, spinning off; up to "
        f"{p['rounds']} rounds ({p['warmup']} warm-up), budget {p['budget_s']} s per "
        f"configuration; dtype {s['dtype']}.",
        "Ratios are medians of per-round paired ratios (same round, same load).", "",
    ]
    if result.get("skipped_providers"):
        lines += ["Providers skipped: " + "; ".join(
            f"{k} ({v})" for k, v in result["skipped_providers"].items()), ""]
    lines += targets_section("Targets (CPU, fp32, batch 1)", result.targets)
    for provider in dict.fromkeys(c["provider"] for c in result["configs"]):
        lines += _provider_md(provider, [c for c in result["configs"] if c["provider"] == provider])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the benchmark


class Layers:
    """``pixeldcn bench layers`` as a :class:`benchmarks.Benchmark`."""

    name = "layers"
    help = "every up-sampling layer kind in onnxruntime (CPU; CUDA/TensorRT if any)"

    def add_arguments(self, p: Any) -> None:
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

    def plan(self, args: Any) -> LayersSettings:
        """The settings of ``args``; raises :class:`BenchmarkUsageError` on a bad flag."""
        from ._ort import parse_providers

        batches = tuple(split_list(args.batches, "--batches", int))
        return LayersSettings(
            command=args.command_line, quick=args.quick,
            threads=args.threads or physical_cores(),
            policy=(QUICK_POLICY if args.quick else POLICY).with_flags(args),
            providers=tuple(parse_providers(args.providers)),
            providers_required=args.providers.strip().lower() not in ("auto", ""),
            variants=tuple(layer_variants(split_list(args.kinds, "--kinds"))),
            configs=tuple(configs(args.quick, batches, vae=not args.no_vae)),
            dtype=args.dtype, seed=args.seed, graph_variants=args.variants,
            breakdown=() if args.no_breakdown else BREAKDOWN,
            trt_fp16=args.trt_fp16, trt_cache=args.trt_cache)

    def run(self, s: LayersSettings, *, progress: bool = True) -> Result:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BenchmarkError("bench layers needs onnxruntime: pip install 'pixeldcn[cpu]'"
                                 ) from exc
        from ._ort import resolve_providers

        machine = machine_info()
        choices, skipped = resolve_providers(
            s.providers, threads=s.threads, fp16=s.trt_fp16, cache_dir=s.trt_cache,
            required=s.providers if s.providers_required else ())
        if not choices:
            raise BenchmarkError("no usable execution provider: " + "; ".join(
                f"{k}: {v}" for k, v in skipped.items()))
        t0 = time.perf_counter()
        cfgs = []
        for choice in choices:
            for cfg in s.configs:
                cfgs.append(run_config(cfg, choice, s, progress=progress))
                print(f"[layers] {choice.name:8s} {cfg.label:22s} {cfgs[-1]['rounds_run']:3d} "
                      f"rounds {cfgs[-1]['timed_s']:6.1f} s", flush=True)
        records = {"skipped_providers": skipped, "configs": cfgs,
                   "total_s": round(time.perf_counter() - t0, 1)}
        return Result(self.name, machine, s.to_json([c.name for c in choices]), records,
                      tuple(layer_targets(cfgs)))

    markdown = staticmethod(layers_markdown)
    plots = staticmethod(layers_plots)


BENCHMARK = Layers()

