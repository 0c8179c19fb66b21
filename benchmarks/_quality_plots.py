"""PNG views of a ``bench quality`` result: loss curves, index vs PSNR, overlap maps, crop grids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["crop_grid", "quality_plots"]

_DPI = 90
_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#d62728")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _color(kind: str) -> str:
    from pixeldcn_core import layer_kinds

    kinds = layer_kinds()
    return _COLORS[kinds.index(kind) % len(_COLORS)] if kind in kinds else _COLORS[5]


def _style(row: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Colour per (kind, kernel) in the order of ``rows``; solid/circle for the kind's default
    init, dashed/square for the other."""
    from pixeldcn_core import get_kind

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
    fig.tight_layout()
    path = out_dir / "quality_loss.png"
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    path = out_dir / "quality_index_vs_psnr.png"
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def overlap_plot(out_dir: Path) -> Path:
    from .quality import overlap_maps

    plt = _pyplot()
    maps = overlap_maps(size=6)
    fig, axes = plt.subplots(1, len(maps), figsize=(2.2 * len(maps), 2.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps.items(), strict=True):
        inner = m[2:-2, 2:-2]
        ax.imshow(inner / inner.max(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{name}\nmin/max {inner.min() / inner.max():.2f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("overlap maps: all-one weights on a constant input (border cut)", fontsize=9)
    fig.tight_layout()
    path = out_dir / "quality_overlap.png"
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def crop_grid(result: Any, task: str, path: Path) -> Path:
    """The same zoomed crop from every variant beside the truth and the interpolation floors."""
    from .quality import decode_crop

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
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path
