"""PNG plots of the results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["layers_plots", "network_plots", "serve_plots"]

#: Bar colours, by the kind's place in the registry (the baseline, registered first, is grey).
_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#d62728")
_DPI = 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _color(kind: str) -> str:
    from pixeldcn_core import layer_kinds

    kinds = layer_kinds()
    return _COLORS[kinds.index(kind) % len(_COLORS)] if kind in kinds else _COLORS[5]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _ratio_panel(ax: Any, cfg: dict[str, Any], layers: list[dict[str, Any]]) -> None:
    ratios = [v["ratio_to_dcl_k6"]["median"] for v in layers]
    lo = [r - v["ratio_to_dcl_k6"]["p25"] for r, v in zip(ratios, layers, strict=True)]
    hi = [v["ratio_to_dcl_k6"]["p75"] - r for r, v in zip(ratios, layers, strict=True)]
    bars = ax.barh(range(len(layers)), ratios, xerr=[lo, hi],
                   color=[_color(v["kind"]) for v in layers], capsize=2)
    for bar, v in zip(bars, layers, strict=True):
        if v["form"] != "efficient":
            bar.set_hatch("//")
    ax.axvline(1.0, color="k", lw=1, ls="--")
    ax.set_title(f"{cfg['label']} ({cfg['rounds_run']} rounds)", fontsize=9)
    ax.set_xlabel("time / DCL k=6 (median of paired ratios)", fontsize=7)


def _gflops_panel(ax: Any, cfg: dict[str, Any], layers: list[dict[str, Any]]) -> None:
    conv = {v["name"]: v for v in cfg["variants"] if v["role"] == "plain_conv"}
    y = range(len(layers))
    ax.barh(y, [v["gflops_per_s"] for v in layers], color=[_color(v["kind"]) for v in layers])
    ax.scatter([conv[v["plain_conv"]]["gflops_per_s"] for v in layers], y, marker="|",
               s=120, color="k", zorder=3, label="plain 3x3 Conv, same MACs")
    ax.set_title(cfg["label"], fontsize=9)
    ax.set_xlabel("useful GFLOP/s", fontsize=7)


def _panels(cfgs: list[dict[str, Any]], draw: Any, title: str, path: Path) -> Path:
    """One panel per configuration (3 a row), each a bar per layer drawn by ``draw``."""
    plt = _pyplot()
    cols = min(len(cfgs), 3)
    rows = (len(cfgs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    for ax, cfg in zip(axes.flat, cfgs, strict=False):
        layers = [v for v in cfg["variants"] if v["role"] == "layer"]
        draw(ax, cfg, layers)
        ax.set_yticks(range(len(layers)), [v["name"] for v in layers], fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
    if draw is _gflops_panel:
        axes.flat[0].legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(cfgs):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def layers_plots(result: Any, out_dir: Path) -> list[Path]:
    """Per provider: bars of each layer's time as a ratio to DCL k=6 (the line at 1), one panel
    per configuration; and useful GFLOP/s against the plain Conv's."""
    paths: list[Path] = []
    for provider in dict.fromkeys(c["provider"] for c in result["configs"]):
        cfgs = [c for c in result["configs"] if c["provider"] == provider]
        paths.append(_panels(cfgs, _ratio_panel, f"Up-sampling layers, onnxruntime {provider}: "
                             "time relative to DCL k=6 (dashed line); hatched = faithful form",
                             out_dir / f"layers_ratio_{provider}.png"))
        paths.append(_panels(cfgs, _gflops_panel, f"Useful GFLOP/s, onnxruntime {provider} "
                             "(| = plain Conv of the same MACs)",
                             out_dir / f"layers_gflops_{provider}.png"))
    return paths


def network_plots(result: Any, out_dir: Path) -> list[Path]:
    """Per network, bars of its time with each kind relative to its DCL k=6 version, per
    runtime, with the paper's."""
    from .network import NETWORKS

    plt = _pyplot()
    nets = result.settings["networks"]
    fig, axes = plt.subplots(1, len(nets), figsize=(7.5 * len(nets), 3.6), squeeze=False)
    for ax, (net, dims) in zip(axes.flat, nets.items(), strict=True):
        rows = [r for r in result["rows"] if r["network"] == net]
        kinds = list(dict.fromkeys(r["variant"] for r in rows))
        runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
        width = 0.8 / (len(runtimes) + 1)
        for i, rt in enumerate(runtimes):
            vals = []
            for kind in kinds:
                row = next((r for r in rows if r["variant"] == kind and r["runtime"] == rt), None)
                vals.append(row["ratio_to_dcl_k6"]["median"] if row else float("nan"))
            ax.bar([j + i * width for j in range(len(kinds))], vals, width, label=rt)
        paper = result.get("paper", {}).get(net, {})
        kind_of = {r["variant"]: r["kind"] for r in rows}
        pv = [paper.get(kind_of[v], float("nan")) for v in kinds]
        ax.bar([j + len(runtimes) * width for j in range(len(kinds))], pv, width,
               label="paper (K40, TF)", color="#d62728", alpha=0.6)
        ax.axhline(1.0, color="k", lw=1, ls="--")
        ax.set_xticks([j + width * len(runtimes) / 2 for j in range(len(kinds))], kinds,
                      fontsize=8, rotation=15)
        ax.set_ylabel("prediction time / DCL k=6 version", fontsize=8)
        title = NETWORKS[net].title if net in NETWORKS else net
        ax.set_title(f"{title} {dims['size']}x{dims['size']}: time / DCL k=6", fontsize=9)
        ax.legend(fontsize=7)
    return [_save(plt, fig, out_dir / "network_ratio.png")]


def serve_plots(result: Any, out_dir: Path) -> list[Path]:
    """p50/p99 latency and throughput against concurrency, one line per protocol and batch."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in result["rows"]:
        series.setdefault((r["protocol"], r["batch"]), []).append(r)
    for (protocol, batch), rs in series.items():
        rs = sorted(rs, key=lambda r: r["concurrency"])
        c = [r["concurrency"] for r in rs]
        (line,) = ax1.plot(c, [r["latency_ms"]["p50"] for r in rs], marker="o",
                           label=f"{protocol} b{batch} p50")
        ax1.plot(c, [r["latency_ms"]["p99"] for r in rs], marker="x", ls=":",
                 color=line.get_color(), label=f"{protocol} b{batch} p99")
        ax2.plot(c, [r["throughput_per_s"] for r in rs], marker="o", color=line.get_color(),
                 label=f"{protocol} b{batch}")
    ort_ms = result.get("in_process", {}).get("median_ms")
    if ort_ms:
        ax1.axhline(ort_ms, color="k", ls="--", lw=1, label="in-process onnxruntime (b1)")
    ax1.set_yscale("log")
    ax2.set_ylim(bottom=0)
    for ax, ylabel in ((ax1, "latency (ms)"), (ax2, "throughput (inferences/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency (requests in flight)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    s = result.settings
    fig.suptitle(f"Triton ({s['server']}), model {s['model']}", fontsize=9)
    return [_save(plt, fig, out_dir / "serve_latency_throughput.png")]
