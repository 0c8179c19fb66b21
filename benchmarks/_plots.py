"""PNG plots of every benchmark's results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import get_kind, layer_kinds

from ._images import decode_crop
from ._training import overlap_maps

__all__ = ["crop_grid", "layers_plots", "network_plots", "quality_plots", "serve_plots"]

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
    kinds = layer_kinds()
    return _COLORS[kinds.index(kind) % len(_COLORS)] if kind in kinds else _COLORS[5]


def _save(plt: Any, fig: Any, path: Path, dpi: int = _DPI) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
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


def network_plots(result: Any, out_dir: Path, titles: Mapping[str, str] | None = None
                  ) -> list[Path]:
    """Per network, bars of its time with each kind relative to its DCL k=6 version, per
    runtime, with the paper's; ``titles``: network -> its name in the titles."""
    titles = titles or {}
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
        title = titles.get(net, net)
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


# -- bench quality -------------------------------------------------------------------------------
def _style(row: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Colour per (kind, kernel) in the order of ``rows``; solid/circle for the kind's default
    init, dashed/square for the other."""
    default = row["init"] == get_kind(row["kind"]).inits[0]
    if rows:
        pairs = list(dict.fromkeys((r["kind"], r["kernel_size"]) for r in rows))
        color = _COLORS[pairs.index((row["kind"], row["kernel_size"])) % len(_COLORS)]
    else:
        color = _color(row["kind"])
    return {"color": color, "linestyle": "-" if default else "--",
            "marker": "o" if default else "s"}


def quality_plots(result: Any, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [loss_plot(result, out_dir), scatter_plot(result, out_dir), overlap_plot(out_dir)]
    for task in result["tasks"]:
        paths.append(crop_grid(result, task, out_dir / f"quality_crops_{task}.png"))
    return paths


def loss_plot(result: Any, out_dir: Path) -> Path:
    plt = _pyplot()
    tasks = list(result["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in result["rows"] if r["task"] == task):
            st = _style(r, result["rows"])
            ax.plot(np.linspace(0, 1, len(r["curve"])) * result.settings["steps"], r["curve"],
                    color=st["color"], linestyle=st["linestyle"], label=r["label"], lw=1.2)
        ax.set_yscale("log")
        ax.set_title(f"{task}: training loss (MSE)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    return _save(plt, fig, out_dir / "quality_loss.png")


def scatter_plot(result: Any, out_dir: Path) -> Path:
    plt = _pyplot()
    tasks = list(result["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    truth = result["truth_index"]["mean"]
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in result["rows"] if r["task"] == task):
            st = _style(r, result["rows"])
            ax.errorbar(r["index"], r["psnr"], xerr=r["index_std"] or 0, yerr=r["psnr_std"] or 0,
                        color=st["color"], marker=st["marker"], ms=6, capsize=2,
                        label=r["label"], linestyle="none")
        for fr in (f for f in result["floors"] if f["task"] == task):
            ax.scatter([fr["index"]], [fr["psnr"]], marker="x", color="black", s=50)
            ax.annotate(fr["method"], (fr["index"], fr["psnr"]), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        ax.axvline(truth, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("checkerboard index of the output (log; dotted: ground truth)")
        ax.set_ylabel("PSNR (dB), held-out")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    return _save(plt, fig, out_dir / "quality_index_vs_psnr.png")


def overlap_plot(out_dir: Path) -> Path:
    plt = _pyplot()
    maps = overlap_maps(size=6)
    fig, axes = plt.subplots(1, len(maps), figsize=(2.2 * len(maps), 2.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps.items(), strict=True):
        inner = m[2:-2, 2:-2]
        ax.imshow(inner / inner.max(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{name}\nmin/max {inner.min() / inner.max():.2f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("overlap maps: all-one weights on a constant input (border cut)", fontsize=9)
    return _save(plt, fig, out_dir / "quality_overlap.png")


def crop_grid(result: Any, task: str, path: Path) -> Path:
    """The same zoomed crop from every variant beside the truth and the interpolation floors."""
    plt = _pyplot()
    crops = result["crop"]["images"][task]
    rows_by_key = {r["key"]: r for r in result["rows"] if r["task"] == task}
    floors = {f["method"]: f for f in result["floors"] if f["task"] == task}
    panels = [("ground truth", crops["truth"])]
    panels += [(f"{m}\n{floors[m]['psnr']:.2f} dB, idx {floors[m]['index']:.3f}", crops[m])
               for m in ("bicubic", "bilinear") if m in crops and m in floors]
    for key, r in rows_by_key.items():
        if key in crops:
            panels.append((f"{r['label']}\n{r['psnr']:.2f} dB, idx {r['index']:.3f}", crops[key]))
    cols = min(6, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(2.3 * cols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img) in zip(axes.flat, panels, strict=False):
        ax.imshow(decode_crop(img), cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title, fontsize=7)
    c = result["crop"]
    fig.suptitle(f"{task}: {result['tasks'][task]['title']} - `{c['photo']}` (held out), "
                 f"{c['side']}x{c['side']} crop at ({c['top']}, {c['left']}); "
                 "PSNR and index are of the whole held-out set", fontsize=8)
    return _save(plt, fig, path)
