"""``pixeldcn bench quality``: up-sampling quality on real photographs, per layer kind.

x2 and x4 super-resolution and an x4 autoencoder decoder (also trained 4x longer, to see whether
the rankings hold), trained with every registered layer kind (with each of its inits), scored by
PSNR/SSIM and the checkerboard index on held-out photographs, beside plain bicubic and bilinear
interpolation and ONNX latency. The experiment of Odena et al. (Distill 2016) and of the PixelDCL
paper (Gao et al., Fig. 1 and 9) on scikit-image's PNG photographs (:mod:`benchmarks._images`;
no JPEG anywhere). The same small network (width, depth, steps, batches, seeds) is trained for
every variant (:mod:`benchmarks._training`); super-resolution learns the residual over bicubic
(VDSR), so a trained model starts at the interpolation floor and must beat it. Luminance only.

Budgets: ``--quick`` (what the tests run, seconds), ``--medium`` (the recorded CPU run, tens of
minutes) and the default full one. Results are data (``quality.json``); Markdown, with the
headline table "which up-sampler should I use" (:mod:`benchmarks._quality_report`), and PNGs are
views of it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import checkerboard_index, get_kind

from ._errors import BenchmarkError, BenchmarkUsageError
from ._images import HELD_OUT, PHOTOS, TRAIN, crop_box, encode_crop, eval_images, training_pool
from ._machine import machine_info, physical_cores
from ._plots import quality_plots
from ._protocol import Result
from ._quality_report import quality_markdown
from ._report import split_list
from ._training import (
    FLOOR_METHODS,
    TASKS,
    TrainingSetup,
    Variant,
    all_variants,
    floor_output,
    floors,
    loss_curve,
    onnx_latency_ms,
    save_model,
    stats,
    train,
)

__all__ = ["BENCHMARK", "BUDGETS", "Quality", "QualitySettings"]

#: The photograph whose zoomed crop the crop grid shows (the most detailed window).
CROP_PHOTO = HELD_OUT[0]
#: Budget name -> defaults of the settings it changes (flags given explicitly win).
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 1, "steps": 12, "long_steps": 48, "width": 8, "patch": 32,
              "eval_side": 64, "latency_runs": 3, "pool_size": 64},
    "medium": {"seeds": 3, "steps": 150, "long_steps": 600, "width": 16, "patch": 48,
               "eval_side": 128, "latency_runs": 10, "pool_size": 512},
    "full": {"seeds": 3, "steps": 300, "long_steps": 1200, "width": 16, "patch": 48,
             "eval_side": 256, "latency_runs": 20, "pool_size": 1024},
}


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """The plan of one run (validated on construction)."""

    tasks: tuple[str, ...]
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    steps: int
    long_steps: int = 1200
    width: int = 16
    depth: int = 2
    batch: int = 8
    patch: int = 48
    lr: float = 2e-3
    eval_side: int = 256
    threads: int = 1
    latency_runs: int = 20
    latency: bool = True
    jobs: int = 1
    pool_size: int = 1024
    budget: str = "full"
    save_models: str | None = None
    command: str = ""

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise BenchmarkUsageError(
                f"--tasks: got {', '.join(self.tasks) or 'nothing'}, expected some of "
                f"{', '.join(TASKS)}")
        for name in ("steps", "long_steps", "width", "depth", "batch", "threads", "latency_runs", "jobs",
                     "pool_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchmarkUsageError(f"--{name.replace('_', '-')} must be a positive int, "
                                          f"got {value!r}")
        if self.patch < 16 or self.patch % 4:
            raise BenchmarkUsageError(f"--patch must be a multiple of 4 >= 16, got {self.patch}")
        if self.eval_side < 32 or self.eval_side % 4:
            raise BenchmarkUsageError(
                f"--eval-side must be a multiple of 4 >= 32, got {self.eval_side}")
        if not self.seeds:
            raise BenchmarkUsageError("--seeds: expected at least one seed")
        if not self.variants:
            raise BenchmarkUsageError("--kinds: expected at least one layer kind")
        if not (0 < self.lr < 1):
            raise BenchmarkUsageError(f"--lr must be in (0, 1), got {self.lr}")

    @property
    def quick(self) -> bool:
        return self.budget == "quick"

    def steps_of(self, task: str) -> int:
        return self.long_steps if TASKS[task].long else self.steps

    def setup(self, task: str) -> TrainingSetup:
        return TrainingSetup(self.steps_of(task), self.width, self.depth, self.batch, self.lr)

    def variants_of(self, task: str) -> tuple[Variant, ...]:
        """Every variant; for a long task each kind's default (its first variant)."""
        if not TASKS[task].long:
            return self.variants
        first = {v.kind: v for v in reversed(self.variants)}  # each kind's first variant
        defaults = {v.kind: v for v in self.variants
                    if (v.kernel_size, v.init) == (get_kind(v.kind).default_kernel,
                                                   get_kind(v.kind).inits[0])}
        return tuple(defaults.get(v.kind, v) for v in self.variants if first[v.kind] is v)

    def latency_wanted(self, task: str, v: Variant, seed: int) -> bool:
        """Every seed-0 model; in --quick only the first (export takes seconds per model)."""
        if not self.latency or seed != self.seeds[0]:
            return False
        return not self.quick or (task == self.tasks[0] and v == self.variants[0])

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "quick": self.quick,
                "variants": [v.key for v in self.variants]}


# ---------------------------------------------------------------------------------------------
# one (task, variant, seed)


_Job = tuple[str, Variant, int, QualitySettings, tuple[int, int, int]]


def _job(job: _Job) -> dict[str, Any]:
    """Train and score one (task, variant, seed): a plain dict (runs in a worker process too)."""
    import torch

    task, v, seed, s, box = job
    torch.set_num_threads(s.threads)
    images = eval_images(s.eval_side)
    r = train(task, v, seed, s.setup(task), training_pool(s.patch, s.pool_size, 0), images)
    latency, note = None, "not measured"
    if s.latency_wanted(task, v, seed):
        latency, note = onnx_latency_ms(r["model"], task, s.latency_runs, s.eval_side)
    if s.save_models and seed == s.seeds[0]:
        recorded = {k: val for k, val in s.to_json().items() if k != "variants"}
        save_model(r["model"], task, v, recorded, r["after"]["mean"], Path(s.save_models))
    return {
        "seed": seed, "init": r["init"], **r["after"]["mean"],
        "per_image": r["after"]["per_image"], "latency_ms": latency, "latency_note": note,
        "train_s": r["train_s"], "steps": r["steps"],
        "final_loss": float(np.mean(r["losses"][-max(1, r["steps"] // 10):])),
        "curve": loss_curve(r["losses"]),
        "params": int(sum(p.numel() for p in r["model"].parameters())),
        "crop": encode_crop(r["after"]["outputs"][CROP_PHOTO], box),
    }


def _aggregate(task: str, v: Variant, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task, "kind": v.kind, "kernel_size": v.kernel_size,
                           "init": v.init, "label": v.label, "key": v.key,
                           "steps": per_seed[0]["steps"]}
    for k in ("psnr", "ssim", "index", "error_index", "index_s4", "residual_index",
              "final_loss", "train_s"):
        if k in per_seed[0]:
            row[k], row[f"{k}_std"] = stats([p[k] for p in per_seed])
    row["index_init"], row["index_init_std"] = stats([p["init"]["index"] for p in per_seed])
    if "residual_index" in per_seed[0]["init"]:
        row["residual_index_init"], row["residual_index_init_std"] = stats(
            [p["init"]["residual_index"] for p in per_seed])
    row["psnr_init"], _ = stats([p["init"]["psnr"] for p in per_seed])
    for k in ("params", "latency_ms", "latency_note"):
        row[k] = per_seed[0][k]
    row["curve"] = np.mean([p["curve"] for p in per_seed], axis=0).tolist()
    row["seeds"] = per_seed
    return row


class _Progress:
    """One line per finished model (``[quality] 3/40 sr2 dcl (default) seed 0: 31.2 dB``), and
    a tqdm bar when asked: a log of a background run shows where it is."""

    def __init__(self, total: int, bar: bool) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()
        self.bar: Any = None
        if bar:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is in the bench extra
                tqdm = None
            self.bar = tqdm and tqdm(total=total, desc="quality", dynamic_ncols=True, leave=False)

    def done(self, job: _Job, out: dict[str, Any]) -> None:
        self.n += 1
        minutes = (time.perf_counter() - self.t0) / 60
        print(f"[quality] {self.n}/{self.total} {job[0]} {job[1].label} seed {job[2]}: "
              f"{out['psnr']:.2f} dB, index {out['index']:.4f} ({minutes:.1f} min)", flush=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_jobs(jobs: list[_Job], n_workers: int, progress: bool
              ) -> dict[tuple[str, str, int], dict[str, Any]]:
    done: dict[tuple[str, str, int], dict[str, Any]] = {}
    report = _Progress(len(jobs), progress)
    if n_workers == 1:
        for job in jobs:
            done[(job[0], job[1].key, job[2])] = out = _job(job)
            report.done(job, out)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")  # torch is not fork-safe
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            futures = {pool.submit(_job, job): job for job in jobs}
            for fut in as_completed(futures):
                job = futures[fut]
                done[(job[0], job[1].key, job[2])] = out = fut.result()
                report.done(job, out)
    report.close()
    return done


# ---------------------------------------------------------------------------------------------
# the benchmark


class Quality:
    name = "quality"
    help = "up-sampling quality: SR x2/x4 and an x4 decoder per layer kind, PSNR/SSIM/index"

    def add_arguments(self, p: Any) -> None:
        g = p.add_argument_group("quality")
        g.add_argument("--tasks", default=",".join(TASKS),
                       help=f"comma-separated tasks: {', '.join(TASKS)} (default all)")
        g.add_argument("--kinds", default=None,
                       help="comma-separated layer kinds (default: every kind with a module)")
        g.add_argument("--medium", action="store_true",
                       help="the medium budget: " + _budget_help("medium"))
        g.add_argument("--seeds", type=int, default=None,
                       help="number of seeds (default 3; --medium 3; --quick 1)")
        g.add_argument("--steps", type=int, default=None,
                       help="training steps per model (default 300; --medium 150; --quick 12)")
        g.add_argument("--long-steps", type=int, default=None,
                       help="training steps of the long task ae4_long (4x the budget's steps: "
                            "default 1200; --medium 600; --quick 48)")
        g.add_argument("--width", type=int, default=None, help="feature channels (default 16)")
        g.add_argument("--batch", type=int, default=8, help="patches per step")
        g.add_argument("--patch", type=int, default=None, help="training patch side (default 48)")
        g.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay)")
        g.add_argument("--eval-side", type=int, default=None,
                       help="side of the held-out centre crops (default 256; --medium 128; "
                            "--quick 64)")
        g.add_argument("--no-latency", action="store_true", help="skip the ONNX export/latency")
        g.add_argument("--jobs", type=int, default=None,
                       help="worker processes, one torch thread each (default: physical cores; "
                            "--quick 1)")
        g.add_argument("--save-models", default=None,
                       help="folder for the seed-0 SR models (safetensors + JSON card)")

    def plan(self, args: Any) -> QualitySettings:
        if args.quick and args.medium:
            raise BenchmarkUsageError("--quick and --medium: expected one budget at most")
        budget = "quick" if args.quick else "medium" if args.medium else "full"
        d = BUDGETS[budget]
        kinds = [get_kind(k).name for k in split_list(args.kinds, "--kinds")] or None
        n_seeds = args.seeds if args.seeds is not None else d["seeds"]
        if isinstance(n_seeds, int) and n_seeds < 1:
            raise BenchmarkUsageError(f"--seeds must be a positive int, got {n_seeds}")

        def pick(flag: str) -> Any:
            value = getattr(args, flag)
            return d[flag] if value is None else value

        return QualitySettings(
            tasks=tuple(split_list(args.tasks, "--tasks")), variants=all_variants(kinds),
            seeds=tuple(range(args.seed, args.seed + n_seeds)), steps=pick("steps"),
            long_steps=pick("long_steps"),
            width=pick("width"), batch=args.batch, patch=pick("patch"), lr=args.lr,
            eval_side=pick("eval_side"), threads=args.threads or 1,
            latency_runs=args.rounds or d["latency_runs"], latency=not args.no_latency,
            jobs=args.jobs if args.jobs is not None else (1 if args.quick else _cores()),
            pool_size=d["pool_size"], budget=budget, save_models=args.save_models,
            command=getattr(args, "command_line", ""))

    def run(self, s: QualitySettings, *, progress: bool = True) -> Result:
        try:
            import torch
        except ImportError as err:  # pragma: no cover - the torch extra is missing
            raise BenchmarkError(f"bench quality needs torch: {err}") from None
        torch.set_num_threads(s.threads)
        t_start = time.perf_counter()
        images = eval_images(s.eval_side)
        side = min(48, s.eval_side // 2)
        box = (*crop_box(images[CROP_PHOTO], side), side)
        floor_rows: list[dict[str, Any]] = []
        crops: dict[str, dict[str, Any]] = {}
        for task in s.tasks:
            floor_rows += floors(task, images)
            crops[task] = {"truth": encode_crop(images[CROP_PHOTO], box)} | {
                m: encode_crop(floor_output(task, images[CROP_PHOTO], m), box)
                for m in FLOOR_METHODS}
        jobs = [(task, v, seed, s, box) for task in s.tasks for v in s.variants_of(task)
                for seed in s.seeds]
        done = _run_jobs(jobs, s.jobs, progress)
        rows = []
        for task in s.tasks:
            for v in s.variants_of(task):
                per_seed = [done[(task, v.key, seed)] for seed in s.seeds]
                crops[task][v.key] = per_seed[0].pop("crop")
                for p in per_seed[1:]:
                    p.pop("crop")
                rows.append(_aggregate(task, v, per_seed))
        truth = {n: checkerboard_index(im) for n, im in images.items()}
        records = {
            "tasks": {t: {"title": TASKS[t].title, "scale": TASKS[t].scale,
                          "kind": TASKS[t].kind, "steps": s.steps_of(t)}
                      for t in s.tasks},
            "photos": {"train": {n: PHOTOS[n] for n in TRAIN},
                       "held_out": {n: PHOTOS[n] for n in HELD_OUT},
                       "eval_shapes": {n: list(im.shape) for n, im in images.items()}},
            "truth_index": {"mean": float(np.mean(list(truth.values()))), "per_image": truth},
            "floors": floor_rows,
            "rows": rows,
            "crop": {"photo": CROP_PHOTO, "top": box[0], "left": box[1], "side": box[2],
                     "images": crops},
            "wall_s": time.perf_counter() - t_start,
        }
        return Result("quality", machine_info(), s.to_json(), records)

    markdown = staticmethod(quality_markdown)
    plots = staticmethod(quality_plots)

    def failure(self, result: Result) -> str | None:
        bad = [f"{r['task']} {r['label']}" for r in result["rows"]
               if not all(r.get(k) is not None and math.isfinite(r[k])
                          for k in ("psnr", "ssim", "index"))]
        return f"non-finite quality figures for {', '.join(bad)}" if bad else None


def _budget_help(name: str) -> str:
    d = BUDGETS[name]
    return (f"{d['seeds']} seeds, {d['steps']} steps, {d['eval_side']} px held-out crops, "
            f"pool of {d['pool_size']} patches")


def _cores() -> int:
    return max(1, physical_cores())


BENCHMARK = Quality()
