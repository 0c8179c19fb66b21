"""Up-sampling quality on real photographs: x2 and x4 super-resolution and an x4 autoencoder decoder,
trained with every layer kind (with and without its artifact-free init), scored by PSNR/SSIM and the
checkerboard index on held-out photographs, beside bicubic/bilinear interpolation and ONNX latency.

The experiment of Odena et al. (Distill 2016) and of the PixelDCL paper (Gao et al., Fig. 1 and 9),
on scikit-image's photographs (:data:`PHOTOS`, each cited; :data:`HELD_OUT` never trained on). The
same small network (width, depth, steps, batches, seeds) is trained for every variant; super-
resolution learns the residual over bicubic (VDSR), so a trained model starts at the interpolation
floor and must beat it. The autoencoder's decoder up-samples x4 from a 4-channel bottleneck at 1/4
resolution: nothing can be copied from the input, which is where artifacts show most (the paper's
VAE setting). Luminance only (``skimage.color.rgb2gray``), as VDSR evaluates.

Per variant and task: PSNR and SSIM (``skimage.metrics``, ``data_range=1``, ``scale`` pixels
shaved at the border for super-resolution), the checkerboard index (stride 2, and stride 4 with
radius 1/16 for the x4 tasks) of the outputs at init and after training, of the truth, and of the
error (output minus truth), the loss curve, parameters, and the ONNX latency of the trained model
(exported through ``exporters.pytorch.export_onnx``, timed in onnxruntime on one thread). Mean and
standard deviation over seeds. Results are data (``quality.json``); Markdown and PNGs are views.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import checkerboard_index, get_kind, layer_kinds, overlap_map

from ._machine import machine_info
from ._protocol import BenchmarkError, BenchmarkUsageError, Result
from ._report import fmt, machine_line, markdown_table

__all__ = [
    "BENCHMARK",
    "HELD_OUT",
    "PHOTOS",
    "TASKS",
    "Quality",
    "QualitySettings",
    "Variant",
    "degrade",
    "eval_images",
    "psnr_ssim",
]

#: scikit-image photographs used, with their source and licence (from ``skimage.data``'s notes).
PHOTOS: dict[str, str] = {
    "astronaut": "Eileen Collins, NASA (NASA Great Images database), public domain",
    "coffee": "coffee cup, photograph by Rachel Michetti, CC0",
    "rocket": "launch of DSCOVR on Falcon 9, SpaceX, released into the public domain",
    "camera": "'camera', photograph by Lav Varshney, CC0",
    "chelsea": "Chelsea the cat, photograph by Stefan van der Walt, CC0",
    "coins": "Greek coins from Pompeii, Brooklyn Museum collection, no known copyright restrictions",
    "brick": "brick wall, CC0Textures 'Bricks25', CC0",
    "gravel": "gravel, CC0Textures 'Gravel04', CC0",
    "grass": "grass, DeviantArt 'Grass-01' by linolafett, CC0",
    "hubble_deep_field": "Hubble eXtreme Deep Field, NASA, public domain",
}
#: Photographs used for evaluation only, never trained on.
HELD_OUT = ("astronaut", "coffee", "rocket")
#: Task name -> (title, up-sampling factor of the network, kind of task).
TASKS: dict[str, tuple[str, int, str]] = {
    "sr2": ("super-resolution x2", 2, "sr"),
    "sr4": ("super-resolution x4 (two stacked x2 layers)", 4, "sr"),
    "ae4": ("autoencoder, decoder up-samples x4 from a 4-channel bottleneck", 4, "ae"),
}
#: Kernel sizes per kind beyond the kind's default (the paper compares DCL at k = 3, 4 and 6).
EXTRA_KERNELS: dict[str, tuple[int, ...]] = {"dcl": (3, 4, 6)}
#: The photograph whose zoomed crop the crop grid shows (the most detailed window, see
#: :func:`crop_box`).
CROP_PHOTO = "astronaut"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One up-sampling layer configuration: kind, kernel size, initialisation."""

    kind: str
    kernel_size: int
    init: str

    @property
    def label(self) -> str:
        k = f" k={self.kernel_size}" if len(EXTRA_KERNELS.get(self.kind, ())) > 1 else ""
        return f"{self.kind}{k} ({self.init})"

    @property
    def key(self) -> str:
        return f"{self.kind}-k{self.kernel_size}-{self.init}"


def all_variants(kinds: Sequence[str] | None = None) -> tuple[Variant, ...]:
    """Every (kind, kernel, init) of the registered x2 kinds with a PyTorch module, registry order.

    Raises:
        BenchmarkUsageError: a named kind has no PyTorch module or does not up-sample x2.
    """
    from exporters.pytorch import MODULES

    out = []
    for kind in kinds or [k for k in layer_kinds()
                          if k in MODULES and getattr(get_kind(k), "scale", 2) == 2]:
        info = get_kind(kind)
        if info.name not in MODULES or getattr(info, "scale", 2) != 2:
            raise BenchmarkUsageError(
                f"--kinds: {info.name!r} has no x2 PyTorch module; expected some of "
                f"{', '.join(v.kind for v in all_variants())}")
        for k in EXTRA_KERNELS.get(info.name, (info.default_kernel,)):
            for init in MODULES[info.name].inits:
                out.append(Variant(info.name, k, init))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """The plan of one run (validated on construction)."""

    tasks: tuple[str, ...]
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    steps: int
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
    quick: bool = False
    save_models: str | None = None
    command: str = ""

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise BenchmarkUsageError(
                f"--tasks: got {', '.join(self.tasks) or 'nothing'}, expected some of "
                f"{', '.join(TASKS)}")
        for name in ("steps", "width", "depth", "batch", "threads", "latency_runs", "jobs",
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


# ---------------------------------------------------------------------------------------------
# data


@cache
def photo(name: str) -> np.ndarray:
    """A scikit-image photograph as float64 luminance in [0, 1], ``(H, W)``."""
    import skimage.data
    from skimage.color import rgb2gray

    if name not in PHOTOS:
        raise BenchmarkUsageError(f"photo {name!r}: expected one of {', '.join(PHOTOS)}")
    im = getattr(skimage.data, name)()
    g = rgb2gray(im) if im.ndim == 3 else im.astype(np.float64) / 255.0
    return np.ascontiguousarray(g, dtype=np.float64)


def eval_images(side: int) -> dict[str, np.ndarray]:
    """The held-out photographs, centre-cropped to ``side`` x ``side`` (float32 ``(H, W)``)."""
    out = {}
    for name in HELD_OUT:
        g = photo(name)
        s = min(side, g.shape[0] // 4 * 4, g.shape[1] // 4 * 4)
        top, left = (g.shape[0] - s) // 2, (g.shape[1] - s) // 2
        out[name] = g[top : top + s, left : left + s].astype(np.float32)
    return out


def degrade(hr: Any, scale: int) -> Any:
    """The low-resolution input: bicubic down-sampling with anti-aliasing (torch), clamped."""
    import torch.nn.functional as F

    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)


def interpolate(lr: Any, scale: int, mode: str) -> Any:
    import torch.nn.functional as F

    return F.interpolate(lr, scale_factor=scale, mode=mode, align_corners=False)


@lru_cache(maxsize=4)
def training_pool(patch: int, count: int, seed: int) -> np.ndarray:
    """``count`` random ``patch`` x ``patch`` crops (with flips) of the training photographs."""
    rng = np.random.default_rng(10_000 + seed)
    names = [n for n in PHOTOS if n not in HELD_OUT]
    out = np.empty((count, 1, patch, patch), dtype=np.float32)
    for i in range(count):
        g = photo(names[i % len(names)])
        top = rng.integers(0, g.shape[0] - patch + 1)
        left = rng.integers(0, g.shape[1] - patch + 1)
        p = g[top : top + patch, left : left + patch]
        if rng.random() < 0.5:
            p = p[:, ::-1]
        if rng.random() < 0.5:
            p = p.T
        out[i, 0] = p
    return out


def psnr_ssim(out: np.ndarray, truth: np.ndarray, shave: int) -> tuple[float, float]:
    """PSNR (dB) and SSIM of two ``(H, W)`` images in [0, 1], ``shave`` border pixels dropped."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if shave:
        out, truth = out[shave:-shave, shave:-shave], truth[shave:-shave, shave:-shave]
    o, t = out.astype(np.float64), truth.astype(np.float64)
    return (float(peak_signal_noise_ratio(t, o, data_range=1.0)),
            float(structural_similarity(t, o, data_range=1.0)))


def indices(out: np.ndarray, truth: np.ndarray, scale: int) -> dict[str, float]:
    """Checkerboard index of an output and of its error (stride 2; stride 4 for x4 as well)."""
    res = {"index": checkerboard_index(out), "error_index": checkerboard_index(out - truth)}
    if scale >= 4:
        res["index_s4"] = checkerboard_index(out, 4, radius=1 / 16)
    return res


# ---------------------------------------------------------------------------------------------
# models


def build_model(task: str, variant: Variant, s: QualitySettings) -> Any:
    """The network of ``task`` with ``variant``'s up-sampling layers (torch ``nn.Module``)."""
    from torch import nn

    from exporters.pytorch import MODULES, SRNet

    _, scale, what = TASKS[task]
    if what == "sr":
        return SRNet(variant.kind, scale, 1, s.width, s.depth, variant.kernel_size, variant.init)
    w, cls = s.width, MODULES[variant.kind]
    return nn.Sequential(
        nn.Conv2d(1, w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w, 4, 1),  # the bottleneck: 4 channels at 1/4 resolution
        nn.Conv2d(4, w, 3, padding=1), nn.ReLU(),
        cls(w, w, variant.kernel_size, init=variant.init), nn.ReLU(),
        nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
        cls(w, w, variant.kernel_size, init=variant.init), nn.ReLU(),
        nn.Conv2d(w, 1, 3, padding=1),
    )


def _inputs(task: str, hr: Any) -> Any:
    _, scale, what = TASKS[task]
    return degrade(hr, scale) if what == "sr" else hr


def evaluate(model: Any, task: str, images: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """PSNR/SSIM/indices of ``model`` on the held-out images; outputs clamped to [0, 1]."""
    import torch

    _, scale, what = TASKS[task]
    shave = scale if what == "sr" else 0
    per: dict[str, dict[str, float]] = {}
    outputs = {}
    model.eval()
    with torch.no_grad():
        for name, truth in images.items():
            hr = torch.from_numpy(truth)[None, None]
            x = _inputs(task, hr)
            raw = model(x)
            out = raw.clamp(0, 1)[0, 0].numpy()
            psnr, ssim = psnr_ssim(out, truth, shave)
            per[name] = {"psnr": psnr, "ssim": ssim, **indices(out, truth, scale)}
            if what == "sr":  # the learned part alone: output minus the bicubic it is added to
                resid = (raw - interpolate(x, scale, "bicubic"))[0, 0].numpy()
                per[name]["residual_index"] = checkerboard_index(resid)
            outputs[name] = out
    model.train()
    mean = {k: float(np.mean([p[k] for p in per.values()])) for k in next(iter(per.values()))}
    return {"mean": mean, "per_image": per, "outputs": outputs}


def floors(task: str, images: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Bicubic and bilinear interpolation of the same inputs (super-resolution tasks only)."""
    import torch

    _, scale, what = TASKS[task]
    if what != "sr":
        return []
    rows = []
    for mode in ("bicubic", "bilinear"):
        per = {}
        for name, truth in images.items():
            hr = torch.from_numpy(truth)[None, None]
            out = interpolate(degrade(hr, scale), scale, mode).clamp(0, 1)[0, 0].numpy()
            psnr, ssim = psnr_ssim(out, truth, scale)
            per[name] = {"psnr": psnr, "ssim": ssim, **indices(out, truth, scale)}
        mean = {k: float(np.mean([p[k] for p in per.values()])) for k in next(iter(per.values()))}
        rows.append({"task": task, "method": mode, **mean, "per_image": per})
    return rows


def train(task: str, variant: Variant, seed: int, s: QualitySettings, pool: np.ndarray,
          images: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Train one network; its metrics at init and after training, loss curve, model."""
    import torch

    torch.manual_seed(seed)
    model = build_model(task, variant, s)
    at_init = evaluate(model, task, images)["mean"]
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.steps, eta_min=s.lr / 20)
    rng = np.random.default_rng(seed)  # the same batches for every variant of a seed
    hr_all = torch.from_numpy(pool)
    losses = []
    t0 = time.perf_counter()
    for _ in range(s.steps):
        hr = hr_all[rng.integers(0, len(pool), s.batch)]
        loss = torch.mean((model(_inputs(task, hr)) - hr) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0
    after = evaluate(model, task, images)
    return {"init": at_init, "after": after, "losses": losses, "train_s": train_s, "model": model}


def onnx_latency_ms(model: Any, task: str, runs: int, side: int) -> tuple[float | None, str]:
    """Median latency of the model exported by ``export_onnx``, in onnxruntime (one thread)."""
    import onnxruntime as ort

    from exporters.pytorch import ExportOptions, export_onnx

    _, scale, what = TASKS[task]
    in_side = side // scale if what == "sr" else side
    shape = (1, 1, in_side, in_side)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "m.onnx", shape,
                               options=ExportOptions(dynamic=False))
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            name = sess.get_inputs()[0].name
            sess.run(None, {name: x})
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                sess.run(None, {name: x})
                times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1e3), f"input {shape}"
    except Exception as err:  # reported, not fatal: quality is the point of this benchmark
        return None, f"export failed: {type(err).__name__}: {str(err)[:200]}"


def _job(job: tuple[str, Variant, int, QualitySettings, tuple[int, int, int], bool]
         ) -> dict[str, Any]:
    """Train and score one (task, variant, seed): a plain dict (runs in a worker process too)."""
    import torch

    task, v, seed, s, box, latency_wanted = job
    torch.set_num_threads(s.threads)
    images = eval_images(s.eval_side)
    r = train(task, v, seed, s, training_pool(s.patch, s.pool_size, 0), images)
    latency, note = None, "not measured"
    if latency_wanted:
        latency, note = onnx_latency_ms(r["model"], task, s.latency_runs, s.eval_side)
    if s.save_models and seed == s.seeds[0]:
        _save_model(r["model"], task, v, s, r["after"]["mean"], Path(s.save_models))
    return {
        "seed": seed, "init": r["init"], **r["after"]["mean"],
        "per_image": r["after"]["per_image"], "latency_ms": latency, "latency_note": note,
        "train_s": r["train_s"],
        "final_loss": float(np.mean(r["losses"][-max(1, s.steps // 10):])),
        "curve": _curve(r["losses"]),
        "params": int(sum(p.numel() for p in r["model"].parameters())),
        "crop": _crop(r["after"]["outputs"][CROP_PHOTO], box),
    }


def _curve(losses: Sequence[float], points: int = 60) -> list[float]:
    chunks = np.array_split(np.asarray(losses, dtype=np.float64), min(points, len(losses)))
    return [float(c.mean()) for c in chunks]


def crop_box(truth: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left of the ``side`` x ``side`` window (on a side/4 grid) with the most gradient energy
    in ``truth``: where up-sampling has the most to get right."""
    gy, gx = np.gradient(truth.astype(np.float64))
    energy = gy**2 + gx**2
    step = max(1, side // 4)
    best, box = -1.0, (0, 0)
    for top in range(0, truth.shape[0] - side + 1, step):
        for left in range(0, truth.shape[1] - side + 1, step):
            e = float(energy[top : top + side, left : left + side].sum())
            if e > best:
                best, box = e, (top, left)
    return box


def _crop(img: np.ndarray, box: tuple[int, int, int]) -> str:
    """The crop as base64 of its ``uint8`` bytes, row-major ``side x side`` (see
    :func:`decode_crop`): compact in JSON."""
    import base64

    top, left, side = box
    c = np.round(np.clip(img[top : top + side, left : left + side], 0, 1) * 255).astype(np.uint8)
    return base64.b64encode(np.ascontiguousarray(c).tobytes()).decode("ascii")


def decode_crop(data: str | list[list[int]]) -> np.ndarray:
    """A crop stored by :func:`_crop` (or as nested lists) as ``uint8 [side, side]``."""
    import base64

    if isinstance(data, list):
        return np.asarray(data, dtype=np.uint8)
    flat = np.frombuffer(base64.b64decode(data), dtype=np.uint8)
    side = math.isqrt(flat.size)
    return flat.reshape(side, side)


def _stats(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v)) if len(v) > 1 else 0.0


def _save_model(model: Any, task: str, variant: Variant, s: QualitySettings, metrics: Mapping,
                folder: Path) -> None:
    """Seed-0 SR models of every variant: safetensors + a JSON card (for pretrained weights)."""
    from safetensors.torch import save_file

    if TASKS[task][2] != "sr":
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = f"sr-x{TASKS[task][1]}-{variant.key}"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(
        {"name": name, "config": model.config(), "metrics": dict(metrics),
         "settings": {k: v for k, v in dataclasses.asdict(s).items() if k != "variants"}},
        indent=1) + "\n")


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
        g.add_argument("--seeds", type=int, default=None,
                       help="number of seeds (default 3; --quick 1)")
        g.add_argument("--steps", type=int, default=None,
                       help="training steps per model (default 300; --quick 12)")
        g.add_argument("--width", type=int, default=None, help="feature channels (default 16)")
        g.add_argument("--batch", type=int, default=8, help="patches per step")
        g.add_argument("--patch", type=int, default=None, help="training patch side (default 48)")
        g.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay)")
        g.add_argument("--eval-side", type=int, default=None,
                       help="side of the held-out centre crops (default 256; --quick 64)")
        g.add_argument("--no-latency", action="store_true", help="skip the ONNX export/latency")
        g.add_argument("--jobs", type=int, default=None,
                       help="worker processes, one torch thread each (default: physical cores; "
                            "--quick 1)")
        g.add_argument("--save-models", default=None,
                       help="folder for the seed-0 SR models (safetensors + JSON card)")

    def plan(self, args: Any) -> QualitySettings:
        from ._report import split_list

        quick = bool(args.quick)
        kinds = [get_kind(k).name for k in split_list(args.kinds, "--kinds")] or None
        n_seeds = args.seeds if args.seeds is not None else (1 if quick else 3)
        if isinstance(n_seeds, int) and n_seeds < 1:
            raise BenchmarkUsageError(f"--seeds must be a positive int, got {n_seeds}")
        return QualitySettings(
            tasks=tuple(split_list(args.tasks, "--tasks")),
            variants=all_variants(kinds),
            seeds=tuple(range(args.seed, args.seed + n_seeds)),
            steps=args.steps if args.steps is not None else (12 if quick else 300),
            width=args.width if args.width is not None else (8 if quick else 16),
            batch=args.batch,
            patch=args.patch if args.patch is not None else (32 if quick else 48),
            lr=args.lr,
            eval_side=args.eval_side if args.eval_side is not None else (64 if quick else 256),
            threads=args.threads or 1,
            latency_runs=args.rounds or (3 if quick else 20),
            latency=not args.no_latency,
            jobs=args.jobs if args.jobs is not None else (1 if quick else _cores()),
            pool_size=64 if quick else 1024,
            quick=quick,
            save_models=args.save_models,
            command=getattr(args, "command_line", ""),
        )

    def run(self, s: QualitySettings, *, progress: bool = True) -> Result:
        try:
            import torch
        except ImportError as err:  # pragma: no cover - the torch extra is missing
            raise BenchmarkError(f"bench quality needs torch: {err}") from None
        torch.set_num_threads(s.threads)
        t_start = time.perf_counter()
        images = eval_images(s.eval_side)
        truth = {n: checkerboard_index(im) for n, im in images.items()}
        side = min(48, s.eval_side // 2)
        box = (*crop_box(images[CROP_PHOTO], side), side)
        floor_rows: list[dict[str, Any]] = []
        crops: dict[str, dict[str, Any]] = {}
        for task in s.tasks:
            floor_rows += floors(task, images)
            crops[task] = {"truth": _crop(images[CROP_PHOTO], box)}
            scale = TASKS[task][1]
            hr = torch.from_numpy(images[CROP_PHOTO])[None, None]
            for fr in (f for f in floor_rows if f["task"] == task):
                up = interpolate(degrade(hr, scale), scale, fr["method"]).clamp(0, 1)
                crops[task][fr["method"]] = _crop(up[0, 0].numpy(), box)
        jobs = [(task, v, seed, s, box, seed == s.seeds[0] and self._latency_wanted(s, task, v))
                for task in s.tasks for v in s.variants for seed in s.seeds]
        done: dict[tuple[str, str, int], dict[str, Any]] = {}
        bar = _bar(len(jobs), progress)
        if s.jobs == 1:
            for job in jobs:
                bar.set_description(f"{job[0]} {job[1].label} seed {job[2]}")
                done[(job[0], job[1].key, job[2])] = _job(job)
                bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context("spawn")  # torch is not fork-safe
            with ProcessPoolExecutor(s.jobs, mp_context=ctx) as pool:
                futures = {pool.submit(_job, job): job for job in jobs}
                for fut in as_completed(futures):
                    job = futures[fut]
                    done[(job[0], job[1].key, job[2])] = fut.result()
                    bar.set_description(f"{job[0]} {job[1].label} seed {job[2]}")
                    bar.update(1)
        bar.close()
        rows = []
        for task in s.tasks:
            for v in s.variants:
                per_seed = [done[(task, v.key, seed)] for seed in s.seeds]
                crops[task][v.key] = per_seed[0].pop("crop")
                for p in per_seed[1:]:
                    p.pop("crop")
                rows.append(_aggregate(task, v, per_seed))
        records = {
            "tasks": {t: {"title": TASKS[t][0], "scale": TASKS[t][1], "kind": TASKS[t][2]}
                      for t in s.tasks},
            "photos": {"train": {n: c for n, c in PHOTOS.items() if n not in HELD_OUT},
                       "held_out": {n: PHOTOS[n] for n in HELD_OUT},
                       "eval_shapes": {n: list(im.shape) for n, im in images.items()}},
            "truth_index": {"mean": float(np.mean(list(truth.values()))), "per_image": truth},
            "floors": floor_rows,
            "rows": rows,
            "crop": {"photo": CROP_PHOTO, "top": box[0], "left": box[1], "side": box[2],
                     "images": crops},
            "wall_s": time.perf_counter() - t_start,
        }
        settings = {**dataclasses.asdict(s), "variants": [v.key for v in s.variants]}
        return Result("quality", machine_info(), settings, records)

    @staticmethod
    def _latency_wanted(s: QualitySettings, task: str, v: Variant) -> bool:
        """Every seed-0 model; in --quick only the first (export takes seconds per model)."""
        if not s.latency:
            return False
        return not s.quick or (task == s.tasks[0] and v == s.variants[0])

    def markdown(self, result: Result) -> str:
        return quality_markdown(result)

    def plots(self, result: Result, out_dir: Path) -> list[Path]:
        from ._quality_plots import quality_plots

        return quality_plots(result, out_dir)

    def failure(self, result: Result) -> str | None:
        bad = [f"{r['task']} {r['label']}" for r in result["rows"]
               if not all(r.get(k) is not None and math.isfinite(r[k])
                          for k in ("psnr", "ssim", "index"))]
        return f"non-finite quality figures for {', '.join(bad)}" if bad else None


def _aggregate(task: str, v: Variant, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task, "kind": v.kind, "kernel_size": v.kernel_size,
                           "init": v.init, "label": v.label, "key": v.key}
    for k in ("psnr", "ssim", "index", "error_index", "index_s4", "residual_index",
              "final_loss", "train_s"):
        if k in per_seed[0]:
            row[k], row[f"{k}_std"] = _stats([p[k] for p in per_seed])
    row["index_init"], row["index_init_std"] = _stats([p["init"]["index"] for p in per_seed])
    if "residual_index" in per_seed[0]["init"]:
        row["residual_index_init"], row["residual_index_init_std"] = _stats(
            [p["init"]["residual_index"] for p in per_seed])
    row["psnr_init"], _ = _stats([p["init"]["psnr"] for p in per_seed])
    row["params"] = per_seed[0]["params"]
    row["latency_ms"] = per_seed[0]["latency_ms"]
    row["latency_note"] = per_seed[0]["latency_note"]
    row["curve"] = np.mean([p["curve"] for p in per_seed], axis=0).tolist()
    row["seeds"] = per_seed
    return row


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_description(self, text: str) -> None: ...

    def close(self) -> None: ...


def _bar(total: int, progress: bool) -> Any:
    if not progress:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is in the bench extra
        return _NoBar()
    return tqdm(total=total, desc="quality", dynamic_ncols=True, leave=False)


def _pm(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def quality_markdown(result: Result) -> str:
    s = result.settings
    lines = ["# Up-sampling quality (`pixeldcn bench quality`)", ""]
    lines += [f"Command: `{s.get('command') or 'pixeldcn bench quality'}`.", ""]
    lines += [machine_line(result.machine, ["torch", "onnxruntime"]), ""]
    lines += [f"Training: {s['steps']} steps of {s['batch']} patches {s['patch']}x{s['patch']}, "
              f"width {s['width']}, Adam {s['lr']:g} (cosine), seeds {list(s['seeds'])}; "
              f"held out: {', '.join(result['photos']['held_out'])} "
              f"({s['eval_side']}x{s['eval_side']} centre crops, luminance); "
              f"wall time {result['wall_s'] / 60:.1f} min.", ""]
    truth = result["truth_index"]["mean"]
    lines += [f"Checkerboard index of the ground truth: **{truth:.4f}** (mean over the held-out "
              "photographs). Index columns: stride 2, radius 1/8; `s4`: stride 4, radius 1/16. "
              "*Residual index*: of the learned part alone (output minus the bicubic it is "
              "added to). Mean ± standard deviation over seeds.", ""]
    for task, info in result["tasks"].items():
        sr = info["kind"] == "sr"
        lines += [f"## {task}: {info['title']}", ""]
        header = ["layer", "PSNR dB", "SSIM", "index init", "index", "error index"]
        if sr:
            header += ["residual index init", "residual index"]
        if info["scale"] >= 4:
            header.append("index s4")
        header += ["final loss", "params", "ONNX ms"]
        table = []
        for fr in result["floors"]:
            if fr["task"] == task:
                row = [f"*{fr['method']} (floor)*", f"{fr['psnr']:.2f}", f"{fr['ssim']:.4f}", "-",
                       f"{fr['index']:.4f}", f"{fr['error_index']:.4f}"]
                if sr:
                    row += ["-", "-"]
                if info["scale"] >= 4:
                    row.append(f"{fr['index_s4']:.4f}")
                table.append([*row, "-", "-", "-"])
        for r in result["rows"]:
            if r["task"] != task:
                continue
            row = [r["label"], _pm(r["psnr"], r["psnr_std"]), _pm(r["ssim"], r["ssim_std"], 4),
                   _pm(r["index_init"], r["index_init_std"], 3), _pm(r["index"], r["index_std"], 4),
                   _pm(r["error_index"], r["error_index_std"], 4)]
            if sr:
                row += [_pm(r.get("residual_index_init"), r.get("residual_index_init_std"), 3),
                        _pm(r.get("residual_index"), r.get("residual_index_std"), 3)]
            if info["scale"] >= 4:
                row.append(_pm(r.get("index_s4"), r.get("index_s4_std"), 4))
            row += [f"{r['final_loss']:.2e}", str(r["params"]), fmt(r["latency_ms"])]
            table.append(row)
        lines += [markdown_table(header, table), ""]
    lines += ["Photographs (scikit-image `skimage.data`):", ""]
    for part in ("train", "held_out"):
        for n, c in result["photos"][part].items():
            lines.append(f"- `{n}` ({'held out' if part == 'held_out' else 'training'}): {c}")
    lines.append("")
    return "\n".join(lines)


def _cores() -> int:
    from ._machine import physical_cores

    return max(1, physical_cores())


BENCHMARK = Quality()


def overlap_maps(size: int = 6) -> dict[str, np.ndarray]:
    """The core's overlap map of every (kind, kernel) this benchmark trains."""
    return {f"{v.kind} k={v.kernel_size}": overlap_map(v.kind, v.kernel_size, size=size)
            for v in all_variants() if v.init == get_kind(v.kind).inits[0]}


def ship_pretrained(models_dir: str | Path, picks: Mapping[str, str], dest: str | Path,
                    command: str) -> list[Path]:
    """Copy seed-0 SR models saved by ``--save-models`` into ``dest`` under shipped names, each
    with a model card (JSON + Markdown) holding its held-out PSNR/SSIM/index, measured again
    here on the benchmark's held-out crops (what the pretrained test reproduces).

    Args:
        models_dir: the ``--save-models`` folder.
        picks: shipped name -> saved name, e.g. ``{"sr-x2-pixel_dcl": "sr-x2-pixel_dcl-k3-default"}``.
        dest: the package's ``pretrained`` folder.
        command: the ``pixeldcn bench quality`` command that trained them.
    """
    import hashlib
    import shutil

    from exporters.pytorch import SRNet, load_weights

    src, dest = Path(models_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for shipped, saved in picks.items():
        meta = json.loads((src / f"{saved}.json").read_text())
        model = SRNet(**meta["config"])
        load_weights(model, src / f"{saved}.safetensors")
        task = f"sr{meta['config']['scale']}"
        s = meta["settings"]
        images = eval_images(s["eval_side"])
        held = evaluate(model, task, images)
        floor = {f["method"]: {k: f[k] for k in ("psnr", "ssim", "index")}
                 for f in floors(task, images)}
        target = dest / f"{shipped}.safetensors"
        shutil.copyfile(src / f"{saved}.safetensors", target)
        card = {
            "name": shipped, "arch": "sr", "config": meta["config"], "trained_as": saved,
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "task": f"x{meta['config']['scale']} super-resolution of luminance, residual over "
                    "bicubic (VDSR style)",
            "data": {
                "train": {n: c for n, c in PHOTOS.items() if n not in HELD_OUT},
                "held_out": {n: PHOTOS[n] for n in HELD_OUT},
                "evaluation": f"{s['eval_side']}x{s['eval_side']} centre crops of the held-out "
                              "photographs, luminance (skimage rgb2gray); input = bicubic x1/"
                              f"{meta['config']['scale']} with anti-aliasing (torch); PSNR/SSIM "
                              "with data_range 1, border of `scale` pixels shaved",
                "source": "scikit-image skimage.data",
            },
            "recipe": {"steps": s["steps"], "batch": s["batch"], "patch": s["patch"],
                       "optimizer": "Adam", "lr": s["lr"], "schedule": "cosine to lr/20",
                       "loss": "MSE", "seed": s["seeds"][0], "training_pool": s["pool_size"]},
            "command": command,
            "held_out": {k: held["mean"][k] for k in ("psnr", "ssim", "index", "error_index",
                                                      "residual_index")}
                        | {"per_image": held["per_image"]},
            "bicubic": floor.get("bicubic"), "bilinear": floor.get("bilinear"),
            "truth_index": float(np.mean([checkerboard_index(im) for im in images.values()])),
        }
        (dest / f"{shipped}.json").write_text(json.dumps(card, indent=1) + "\n")
        (dest / f"{shipped}.md").write_text(_card_markdown(card))
        written += [target, dest / f"{shipped}.json", dest / f"{shipped}.md"]
    return written


def _card_markdown(card: Mapping[str, Any]) -> str:
    c, h, b = card["config"], card["held_out"], card["bicubic"]
    lines = [
        f"# {card['name']}", "",
        f"{card['task']}. Up-sampling: `{c['up']}` (kernel {c['up_kernel_size']}, init "
        f"`{c['init']}`), width {c['width']}, {c['depth']} convs before the first x2 layer; "
        f"{int(math.log2(c['scale']))} x2 layer(s).", "",
        "| held out | PSNR dB | SSIM | checkerboard index |", "| --- | ---: | ---: | ---: |",
        f"| this model | {h['psnr']:.2f} | {h['ssim']:.4f} | {h['index']:.4f} |",
        f"| bicubic | {b['psnr']:.2f} | {b['ssim']:.4f} | {b['index']:.4f} |",
        f"| ground truth | - | - | {card['truth_index']:.4f} |", "",
        f"Data: {card['data']['source']}; trained on "
        f"{', '.join(card['data']['train'])}; held out (never trained on): "
        f"{', '.join(card['data']['held_out'])}. {card['data']['evaluation']}.", "",
        f"Recipe: {json.dumps(card['recipe'])}.", "",
        f"Made by: `{card['command']}` (seed-0 model `{card['trained_as']}`).", "",
        f"Use: `pixeldcn export --arch sr --pretrained {card['name']} --out {card['name']}.onnx`; "
        f"in Python `exporters.pytorch.load_pretrained({card['name']!r})`.", "",
        f"SHA-256 of the weights: `{card['sha256']}`.", "",
    ]
    return "\n".join(lines)


def init_indices(seeds: int = 5, width: int = 32, side: int = 256,
                 variants: Sequence[Variant] | None = None) -> list[dict[str, Any]]:
    """Checkerboard index at init of each variant as issue 11 measures it: a ``width -> width``
    layer between two fixed random 1x1 convs (3 -> width -> 3), on ``astronaut`` (RGB) down-sampled
    to ``side`` x ``side``; mean and spread over ``seeds``. The photograph's own index is the row
    ``photograph``.
    """
    import torch
    from skimage import data
    from skimage.transform import resize

    from exporters.pytorch import MODULES

    im = resize(data.astronaut().astype(np.float64) / 255.0, (side, side), anti_aliasing=True)
    x = torch.from_numpy(im.transpose(2, 0, 1)[None].astype(np.float32))  # (1, 3, side, side)
    rows = [{"variant": "photograph", "index": checkerboard_index(x.numpy()), "std": 0.0}]
    for v in variants or all_variants():
        values = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            first, last = torch.nn.Conv2d(3, width, 1), torch.nn.Conv2d(width, 3, 1)
            layer = MODULES[v.kind](width, width, v.kernel_size, init=v.init)
            with torch.no_grad():
                values.append(checkerboard_index(last(layer(first(x))).numpy()))
        rows.append({"variant": v.label, "key": v.key, "index": float(np.mean(values)),
                     "std": float(np.std(values))})
    return rows
