"""Training and scoring of the quality benchmark's networks: tasks, variants, one model's run.

Every network comes from the architecture registry (``exporters.pytorch.build_network``: ``sr``
for super-resolution, ``autoencoder`` for the x4 decoder); every kind with a PyTorch module that
up-samples x2 is a variant, with each of its inits, read from the registries, so a new kind is
trained with no change here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pixeldcn_core import checkerboard_index, get_kind, layer_kinds, overlap_map

from ._errors import BenchmarkUsageError
from ._images import degrade, indices, interpolate, psnr_ssim

__all__ = [
    "EXTRA_KERNELS",
    "FLOOR_METHODS",
    "TASKS",
    "Task",
    "TrainingSetup",
    "Variant",
    "all_variants",
    "build_model",
    "evaluate",
    "floors",
    "init_indices",
    "loss_curve",
    "onnx_latency_ms",
    "overlap_maps",
    "save_model",
    "train",
]


class Task(NamedTuple):
    """A quality task: ``title``, up-sampling ``scale`` of the network, ``kind`` (``"sr"``:
    super-resolution, ``"ae"``: autoencoder), ``long`` (trained for the run's ``long_steps``, each
    kind at its default kernel and init only)."""

    title: str
    scale: int
    kind: str
    long: bool = False


#: Task name -> :class:`Task`.
TASKS: dict[str, Task] = {
    "sr2": Task("super-resolution x2", 2, "sr"),
    "sr4": Task("super-resolution x4 (two stacked x2 layers)", 4, "sr"),
    "ae4": Task("autoencoder, decoder up-samples x4 from a 4-channel bottleneck", 4, "ae"),
    "ae4_long": Task("the same autoencoder trained longer, each kind at its default kernel and "
                     "init (do the rankings hold?)", 4, "ae", long=True),
}
#: Kernel sizes per kind beyond the kind's default (the paper compares DCL at k = 3, 4 and 6).
EXTRA_KERNELS: dict[str, tuple[int, ...]] = {"dcl": (3, 4, 6)}
#: Plain interpolation rows of every table (torch ``F.interpolate`` modes).
FLOOR_METHODS = ("bicubic", "bilinear")


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


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """What one model's training needs besides its task, variant and seed."""

    steps: int
    width: int = 16
    depth: int = 2
    batch: int = 8
    lr: float = 2e-3


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
                f"{', '.join(dict.fromkeys(v.kind for v in all_variants()))}")
        for k in EXTRA_KERNELS.get(info.name, (info.default_kernel,)):
            for init in info.inits:
                out.append(Variant(info.name, k, init))
    return tuple(out)


def build_model(task: str, variant: Variant, width: int, depth: int = 2) -> Any:
    """The network of ``task`` with ``variant``'s up-sampling layers (torch ``nn.Module``)."""
    from exporters.pytorch import build_network

    t = TASKS[task]
    if t.kind == "sr":
        return build_network("sr", variant.kind, up_kernel_size=variant.kernel_size,
                             init=variant.init, scale=t.scale, channels=1, base_channels=width,
                             depth=depth)
    return build_network("autoencoder", variant.kind, up_kernel_size=variant.kernel_size,
                         init=variant.init, channels=1, base_channels=width, bottleneck=4)


def _inputs(task: str, hr: Any) -> Any:
    t = TASKS[task]
    return degrade(hr, t.scale) if t.kind == "sr" else hr


def evaluate(model: Any, task: str, images: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """PSNR/SSIM/indices of ``model`` on the held-out images; outputs clamped to [0, 1]."""
    import torch

    t = TASKS[task]
    shave = t.scale if t.kind == "sr" else 0
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
            per[name] = {"psnr": psnr, "ssim": ssim, **indices(out, truth, t.scale)}
            if t.kind == "sr":  # the learned part alone: output minus the bicubic it is added to
                resid = (raw - interpolate(x, t.scale, "bicubic"))[0, 0].numpy()
                per[name]["residual_index"] = checkerboard_index(resid)
            outputs[name] = out
    model.train()
    mean = {k: float(np.mean([p[k] for p in per.values()])) for k in next(iter(per.values()))}
    return {"mean": mean, "per_image": per, "outputs": outputs}


def floor_output(task: str, truth: np.ndarray, method: str) -> np.ndarray:
    """Plain interpolation for ``task``: the image down-sampled ``scale`` times (as the
    super-resolution input) and up-sampled back by ``method``; no network, no weights. For the
    autoencoder, whose code holds 4 channels at 1/4 resolution, it is a reference, not a floor:
    the interpolation sees a quarter of the numbers the decoder does."""
    import torch

    scale = TASKS[task].scale
    hr = torch.from_numpy(truth)[None, None]
    return interpolate(degrade(hr, scale), scale, method).clamp(0, 1)[0, 0].numpy()


def floors(task: str, images: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """A row per :data:`FLOOR_METHODS` (see :func:`floor_output`), every task."""
    t = TASKS[task]
    rows = []
    for method in FLOOR_METHODS:
        per = {}
        for name, truth in images.items():
            out = floor_output(task, truth, method)
            psnr, ssim = psnr_ssim(out, truth, t.scale if t.kind == "sr" else 0)
            per[name] = {"psnr": psnr, "ssim": ssim, **indices(out, truth, t.scale)}
        mean = {k: float(np.mean([p[k] for p in per.values()])) for k in next(iter(per.values()))}
        rows.append({"task": task, "method": method, **mean, "per_image": per})
    return rows


def train(task: str, variant: Variant, seed: int, setup: TrainingSetup, pool: np.ndarray,
          images: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Train one network for ``setup.steps``; its metrics at init and after training, loss
    curve, model."""
    import torch

    steps = setup.steps
    torch.manual_seed(seed)
    model = build_model(task, variant, setup.width, setup.depth)
    at_init = evaluate(model, task, images)["mean"]
    opt = torch.optim.Adam(model.parameters(), lr=setup.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=setup.lr / 20)
    rng = np.random.default_rng(seed)  # the same batches for every variant of a seed
    hr_all = torch.from_numpy(pool)
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        hr = hr_all[rng.integers(0, len(pool), setup.batch)]
        loss = torch.mean((model(_inputs(task, hr)) - hr) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0
    after = evaluate(model, task, images)
    return {"init": at_init, "after": after, "losses": losses, "train_s": train_s, "model": model,
            "steps": steps}


def loss_curve(losses: Sequence[float], points: int = 60) -> list[float]:
    """``losses`` averaged in at most ``points`` chunks."""
    chunks = np.array_split(np.asarray(losses, dtype=np.float64), min(points, len(losses)))
    return [float(c.mean()) for c in chunks]


def onnx_latency_ms(model: Any, task: str, runs: int, side: int) -> tuple[float | None, str]:
    """Median latency of the model exported by ``export_onnx``, in onnxruntime (one thread)."""
    import onnxruntime as ort

    from exporters.pytorch import ExportOptions, export_onnx

    t = TASKS[task]
    in_side = side // t.scale if t.kind == "sr" else side
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


def save_model(model: Any, task: str, variant: Variant, settings: Mapping[str, Any],
               metrics: Mapping[str, Any], folder: Path) -> None:
    """A super-resolution model: safetensors + a JSON card (what ``ship_pretrained`` reads)."""
    from safetensors.torch import save_file

    t = TASKS[task]
    if t.kind != "sr":
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = f"sr-x{t.scale}-{variant.key}"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(
        {"name": name, "config": model.config(), "metrics": dict(metrics),
         "settings": dict(settings)}, indent=1) + "\n")


def overlap_maps(size: int = 6) -> dict[str, np.ndarray]:
    """The core's overlap map of every (kind, kernel) this benchmark trains."""
    return {f"{v.kind} k={v.kernel_size}": overlap_map(v.kind, v.kernel_size, size=size)
            for v in all_variants() if v.init == get_kind(v.kind).inits[0]}


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

    from exporters.pytorch import make_layer

    im = resize(data.astronaut().astype(np.float64) / 255.0, (side, side), anti_aliasing=True)
    x = torch.from_numpy(im.transpose(2, 0, 1)[None].astype(np.float32))  # (1, 3, side, side)
    rows = [{"variant": "photograph", "index": checkerboard_index(x.numpy()), "std": 0.0}]
    for v in variants or all_variants():
        values = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            first, last = torch.nn.Conv2d(3, width, 1), torch.nn.Conv2d(width, 3, 1)
            layer = make_layer(v.kind, width, width, v.kernel_size, init=v.init)
            with torch.no_grad():
                values.append(checkerboard_index(last(layer(first(x))).numpy()))
        rows.append({"variant": v.label, "key": v.key, "index": float(np.mean(values)),
                     "std": float(np.std(values))})
    return rows


def stats(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard deviation of the finite ``values`` (``None, None`` without any)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v)) if len(v) > 1 else 0.0
