"""The Markdown of a ``bench quality`` result: the headline "which up-sampler should I use" table,
then one table per task with the plain-interpolation rows first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._report import fmt, machine_line, markdown_table

__all__ = ["HEADLINE_PAIR", "headline", "quality_markdown"]

#: The comparison the headline spells out: the paper's layer against plain bilinear-then-conv.
HEADLINE_PAIR = ("pixel_dcl", "bilinear_conv")  # per-kind data, not a branch


def _pm(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def best_per_kind(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each kind's best variant (kernel, init) by mean PSNR, best kind first."""
    best: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        if r.get("psnr") is not None and (r["kind"] not in best
                                          or r["psnr"] > best[r["kind"]]["psnr"]):
            best[r["kind"]] = r
    return sorted(best.values(), key=lambda r: -r["psnr"])


def _pair_cell(by_kind: Mapping[str, Mapping[str, Any]]) -> str:
    a, b = (by_kind.get(k) for k in HEADLINE_PAIR)
    if a is None or b is None:
        missing = [k for k in HEADLINE_PAIR if k not in by_kind]
        return f"- ({', '.join(missing)} not in this run)"
    diff = a["psnr"] - b["psnr"]
    noise = 2 * max(a.get("psnr_std") or 0.0, b.get("psnr_std") or 0.0)
    if min(len(a.get("seeds", ())), len(b.get("seeds", ()))) < 2:
        verdict = "one seed: no noise estimate"
    else:
        verdict = "within seed noise" if abs(diff) <= noise else ("better" if diff > 0 else "worse")
    return f"{diff:+.2f} dB ({verdict}; index {a['index']:.4f} vs {b['index']:.4f})"


def _rank_agreement(result: Any) -> list[str]:
    """How the kinds' order (each at its default, as the long task trains them) changes from the
    short to the long x4 decoder run: Spearman's rank correlation over the kinds of both."""
    long = [t for t, info in result["tasks"].items() if "long" in t]
    lines = []
    for lt in long:
        short = lt.rsplit("_long", 1)[0]
        if short not in result["tasks"]:
            continue
        keys = {r["key"] for r in result["rows"] if r["task"] == lt}
        order = {t: [r["key"] for r in sorted(
            (r for r in result["rows"] if r["task"] == t and r["key"] in keys),
            key=lambda r: -r["psnr"])] for t in (short, lt)}
        common = [k for k in order[short] if k in order[lt]]
        n = len(common)
        if n < 3:
            continue
        d2 = sum((order[short].index(k) - order[lt].index(k)) ** 2 for k in common)
        rho = 1 - 6 * d2 / (n * (n * n - 1))
        steps = (result["tasks"][short].get("steps"), result["tasks"][lt].get("steps"))
        lines += [f"Rankings, {short} ({steps[0]} steps) against {lt} ({steps[1]} steps), the "
                  f"{n} kinds at their default: Spearman rho **{rho:.2f}**; best "
                  f"`{order[short][0]}` -> `{order[lt][0]}`, worst `{order[short][-1]}` -> "
                  f"`{order[lt][-1]}`.", ""]
    return lines


def headline(result: Any) -> list[str]:
    """Per task: the kinds ranked by their best variant, the spread between best and worst, seed
    noise, how far the best is from bicubic, and where PixelDCL stands against bilinear_conv."""
    table = []
    for task in result["tasks"]:
        ranked = best_per_kind([r for r in result["rows"] if r["task"] == task])
        if not ranked:
            continue
        floor = {f["method"]: f for f in result["floors"] if f["task"] == task}
        noise = max((r.get("psnr_std") or 0.0) for r in ranked)
        top, last = ranked[0], ranked[-1]
        ranking = " > ".join(f"{r['label']} {r['psnr']:.2f}" for r in ranked)
        table.append([
            task, f"**{top['label']}** {_pm(top['psnr'], top.get('psnr_std'))}", ranking,
            f"{top['psnr'] - last['psnr']:.2f}", f"{noise:.2f}",
            "-" if "bicubic" not in floor else f"{top['psnr'] - floor['bicubic']['psnr']:+.2f}",
            _pair_cell({r["kind"]: r for r in ranked})])
    return ["## Which up-sampler should I use?", "",
            "Each kind at its best kernel and init (PSNR dB on the held-out photographs, mean ± "
            "standard deviation over seeds). *Spread*: best kind minus worst kind; *seed noise*: "
            "the largest standard deviation over seeds among them: a difference under about twice "
            "that does not rank two kinds.", "",
            markdown_table(["task", "best", "ranking (PSNR dB)", "spread dB", "seed noise dB",
                            "best - bicubic dB", " - ".join(HEADLINE_PAIR)], table), "",
            *_rank_agreement(result)]


def _floor_row(fr: Mapping[str, Any], sr: bool, x4: bool) -> list[str]:
    row = [f"*{fr['method']} (floor)*", f"{fr['psnr']:.2f}", f"{fr['ssim']:.4f}", "-",
           f"{fr['index']:.4f}", f"{fr['error_index']:.4f}"]
    if sr:
        row += ["-", "-"]
    if x4:
        row.append(f"{fr['index_s4']:.4f}")
    return [*row, "-", "-", "-"]


def _variant_row(r: Mapping[str, Any], sr: bool, x4: bool) -> list[str]:
    row = [r["label"], _pm(r["psnr"], r["psnr_std"]), _pm(r["ssim"], r["ssim_std"], 4),
           _pm(r["index_init"], r["index_init_std"], 3), _pm(r["index"], r["index_std"], 4),
           _pm(r["error_index"], r["error_index_std"], 4)]
    if sr:
        row += [_pm(r.get("residual_index_init"), r.get("residual_index_init_std"), 3),
                _pm(r.get("residual_index"), r.get("residual_index_std"), 3)]
    if x4:
        row.append(_pm(r.get("index_s4"), r.get("index_s4_std"), 4))
    return [*row, f"{r['final_loss']:.2e}", str(r["params"]), fmt(r["latency_ms"])]


def _task_table(result: Any, task: str, info: Mapping[str, Any]) -> list[str]:
    sr, x4 = info["kind"] == "sr", info["scale"] >= 4
    header = ["layer", "PSNR dB", "SSIM", "index init", "index", "error index"]
    if sr:
        header += ["residual index init", "residual index"]
    if x4:
        header.append("index s4")
    header += ["final loss", "params", "ONNX ms"]
    table = [_floor_row(fr, sr, x4) for fr in result["floors"] if fr["task"] == task]
    table += [_variant_row(r, sr, x4) for r in result["rows"] if r["task"] == task]
    steps = info.get("steps", result.settings["steps"])
    lines = [f"## {task}: {info['title']}", "", f"{steps} training steps.", ""]
    if not sr:
        lines += ["Floor rows: the image down-sampled x4 and interpolated back, no network: a "
                  "reference, not a floor (the decoder's code holds 4 channels at 1/4 resolution, "
                  "four times the numbers the interpolation sees).", ""]
    return [*lines, markdown_table(header, table), ""]


def _budget_line(s: Mapping[str, Any], result: Any) -> str:
    budget = s.get("budget", "quick" if s.get("quick") else "full")
    long = f" ({s['long_steps']} for the long task)" if "long_steps" in s else ""
    return (f"Budget **{budget}**: {s['steps']} steps{long} of {s['batch']} patches "
            f"{s['patch']}x{s['patch']}, width {s['width']}, Adam {s['lr']:g} (cosine), seeds "
            f"{list(s['seeds'])}; held out: {', '.join(result['photos']['held_out'])} "
            f"({s['eval_side']}x{s['eval_side']} centre crops, luminance); "
            f"wall time {result['wall_s'] / 60:.1f} min.")


def quality_markdown(result: Any) -> str:
    s = result.settings
    lines = ["# Up-sampling quality (`pixeldcn bench quality`)", "",
             f"Command: `{s.get('command') or 'pixeldcn bench quality'}`.", "",
             machine_line(result.machine, ["torch", "onnxruntime"]), "", _budget_line(s, result),
             ""]
    truth = result["truth_index"]["mean"]
    lines += [f"Checkerboard index of the ground truth: **{truth:.4f}** (mean over the held-out "
              "photographs). Index columns: stride 2, radius 1/8; `s4`: stride 4, radius 1/16. "
              "*Residual index*: of the learned part alone (output minus the bicubic it is "
              "added to). Mean ± standard deviation over seeds.", ""]
    lines += headline(result)
    for task, info in result["tasks"].items():
        lines += _task_table(result, task, info)
    lines += ["Photographs (scikit-image `skimage.data`, PNG files):", ""]
    for part in ("train", "held_out"):
        for n, c in result["photos"][part].items():
            lines.append(f"- `{n}` ({'held out' if part == 'held_out' else 'training'}): {c}")
    lines.append("")
    return "\n".join(lines)
