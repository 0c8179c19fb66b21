"""``pixeldcn bench decoder``: how much of DeepLab-ResNet its decoder is, in MACs and in time.

The paper's second network (``bench network --networks deeplab``; Table 1: DeepLab-ResNet + DCL /
iPixelDCL / PixelDCL) is a dilated ResNet (output stride 8), DeepLabV3's ASPP and three decoder
blocks (x2 up-sampling layer + 3x3 conv). For the baseline (DCL k=6) and each x2 kind at its
default, this counts the multiply-accumulates per part (:func:`mac_breakdown`: backbone, ASPP,
decoder up-sampling layers, decoder convs) and times, in onnxruntime on the CPU, the whole network
and its decoder alone (exported on its own, fed the ASPP output's shape), every model interleaved
per round: the decoder's time share is the median over rounds of decoder / whole network. With
``--whole-from network.json`` the whole networks' times come from a ``bench network`` result
instead (two runs: indicative).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pixeldcn_core import INTERLEAVES

from ._errors import BenchmarkError, BenchmarkUsageError
from ._machine import machine_info, physical_cores
from ._protocol import Result, load_result
from ._report import fmt, machine_line, markdown_table, split_list
from ._stats import paired_ratio, summarize
from ._timing import RoundPolicy, run_interleaved
from .network import DEEPLAB_FULL, DEEPLAB_QUICK, NETWORKS, network_variants

__all__ = ["BENCHMARK", "DecoderSettings", "decoder_input_shape", "mac_breakdown"]

POLICY = RoundPolicy(5, 1, budget_s=None, min_rounds=5)
QUICK_POLICY = RoundPolicy(3, 1, budget_s=None, min_rounds=3)


def decoder_input_shape(model: Any, batch: int, size: int) -> tuple[int, int, int, int]:
    """The shape the decoder of a ``DeepLabResNet`` sees: the ASPP output at 1/8 of the input."""
    c = model.decoder[0].up[0].in_channels
    m = NETWORKS["deeplab"].size_multiple(DEEPLAB_FULL)
    return (batch, c, size // m, size // m)


def mac_breakdown(model: Any, shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates of one forward pass at ``shape``, per part of a ``DeepLabResNet``.

    Keys: ``backbone``, ``aspp``, ``decoder_up`` (the three up-sampling layers: their kind's
    useful MACs, ``LayerSpec.macs_per_input_pixel`` x input pixels), ``decoder_conv`` (the
    decoder's convs), ``total``. Convolutions count ``out elements x in/groups x kh x kw``;
    BatchNorm, ReLU and pooling are not counted (they fold or are negligible).
    """
    import torch
    from torch import nn

    from exporters.pytorch import UpsampleLayer

    counts = {"backbone": 0, "aspp": 0, "decoder_up": 0, "decoder_conv": 0}

    def up_hook(m: Any, inputs: Any, output: Any) -> None:
        x = inputs[0]
        counts["decoder_up"] += m.spec.macs_per_input_pixel() * x.shape[0] * x.shape[2] * x.shape[3]

    def conv_hook(part: str) -> Any:
        def hook(m: Any, inputs: Any, output: Any) -> None:
            kh, kw = m.kernel_size
            counts[part] += output.numel() * (m.in_channels // m.groups) * kh * kw
        return hook

    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, UpsampleLayer):
            hooks.append(module.register_forward_hook(up_hook))
        elif isinstance(module, nn.Conv2d):
            top = name.split(".", 1)[0]
            hooks.append(module.register_forward_hook(
                conv_hook("decoder_conv" if top == "decoder" else top)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    finally:
        for h in hooks:
            h.remove()
    counts["total"] = sum(counts.values())
    return counts


@dataclasses.dataclass(frozen=True)
class DecoderSettings:
    """The plan of ``pixeldcn bench decoder``."""

    command: str
    quick: bool
    dims: Mapping[str, int]
    variants: tuple[tuple[str, int, str], ...]  # (kind, k, name)
    policy: RoundPolicy
    threads: int
    seed: int = 0
    whole_ms: Mapping[str, float] | None = None  # variant -> whole network's median (--whole-from)
    whole_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "quick": self.quick, "dims": dict(self.dims),
                "variants": [name for _, _, name in self.variants],
                "policy": self.policy.as_dict(), "threads": self.threads, "seed": self.seed,
                "whole_from": self.whole_from}


def _whole_times(path: str) -> dict[str, float]:
    """variant -> median ms of the DeepLab networks' onnxruntime-cpu rows of a network result."""
    result = load_result(path)
    if result.benchmark != "network":
        raise BenchmarkUsageError(f"--whole-from {path}: a {result.benchmark} result, expected a "
                                  "bench network result")
    return {r["variant"]: r["times_ms"]["median"] for r in result["rows"]
            if r["network"] == "deeplab" and r["runtime"] == "onnxruntime-cpu"}


def _export_parts(model: Any, name: str, size: int, tmp: Path, whole: bool
                  ) -> list[tuple[str, Path, tuple[int, ...]]]:
    from torch import nn

    from exporters.pytorch import ExportOptions, export_onnx

    no_check = ExportOptions(verify=False)  # timed only; bench network verifies these networks
    dshape = decoder_input_shape(model, 1, size)
    parts = [("decoder", export_onnx(nn.Sequential(*model.decoder).eval(),
                                     tmp / f"{name}_dec.onnx", dshape, options=no_check), dshape)]
    if whole:
        shape = (1, 3, size, size)
        parts.append(("whole", export_onnx(model, tmp / f"{name}.onnx", shape, options=no_check),
                      shape))
    return parts


def _row(name: str, row: dict[str, Any], times: Mapping[str, list[float]],
         whole_ms: Mapping[str, float] | None) -> dict[str, Any]:
    dec_t = times[f"{name}|decoder"]
    if whole_ms is None:
        whole_t = times[f"{name}|whole"]
        whole, share = summarize(whole_t), paired_ratio(dec_t, whole_t)
    else:
        whole = {"median": whole_ms[name]}
        share = {"median": summarize(dec_t)["median"] / whole_ms[name]}
    g = row["gmacs"]
    return {**row, "whole_ms": whole, "decoder_ms": summarize(dec_t), "paired": whole_ms is None,
            "decoder_time_share": share,
            "decoder_mac_share": (g["decoder_up"] + g["decoder_conv"]) / g["total"],
            "up_mac_share": g["decoder_up"] / g["total"]}


def decoder_markdown(result: Result) -> str:
    """The table of the decoder's share, one row per variant."""
    s, rows = result.settings, result["rows"]
    dims = s["dims"]
    size = dims["size"]
    table = [[r["variant"], fmt(r["gmacs"]["total"], 1), fmt(r["gmacs"]["decoder_up"], 2),
              fmt(r["gmacs"]["decoder_conv"], 2), f"{100 * r['decoder_mac_share']:.1f} %",
              f"{100 * r['up_mac_share']:.1f} %", fmt(r["whole_ms"]["median"], 0),
              fmt(r["decoder_ms"]["median"], 0),
              f"{100 * r['decoder_time_share']['median']:.1f} %"] for r in rows]
    machine = [machine_line(result.machine, ("onnxruntime", "torch")), ""] if result.machine else []
    return "\n".join([
        "# DeepLab-ResNet's decoder: its share of MACs and time (`pixeldcn bench decoder`)", "",
        *machine,
        f"DeepLab-ResNet-{dims['depth']} at 1x3x{size}x{size}, onnxruntime CPU; "
        f"`{s['command']}`", "",
        markdown_table(["up-sampling", "GMAC total", "GMAC up-sampling layers",
                        "GMAC decoder convs", "decoder MAC share", "up-sampling MAC share",
                        "whole ms (median)", "decoder alone ms", "decoder time share"], table),
        "", "Decoder: the three blocks (up-sampling layer + BN + ReLU, 3x3 conv). Time share: "
        + ("median over rounds of (decoder alone) / (whole network) timed in the same round."
           if all(r["paired"] for r in rows) else
           "median time of the decoder alone / the whole network's median from the `bench "
           "network` result given with --whole-from (two runs: indicative).")])


class Decoder:
    """``pixeldcn bench decoder`` as a :class:`benchmarks.Benchmark`."""

    name = "decoder"
    help = "DeepLab-ResNet's decoder: its share of the network's MACs and time, per kind"

    def add_arguments(self, p: Any) -> None:
        p.add_argument("--size", type=int, default=None,
                       help=f"input H = W (default {DEEPLAB_FULL['size']}; quick "
                            f"{DEEPLAB_QUICK['size']})")
        p.add_argument("--depth", type=int, default=101, choices=(50, 101), help="ResNet depth")
        p.add_argument("--kinds", default=None, help="comma-separated x2 kinds (default: all); "
                       "the baseline, DCL k=6, is always included")
        p.add_argument("--whole-from", default=None,
                       help="a bench network result (network.json) holding these DeepLab "
                            "variants: take the whole networks' onnxruntime-cpu medians from it")

    def plan(self, args: Any) -> DecoderSettings:
        dims = {**(DEEPLAB_QUICK if args.quick else DEEPLAB_FULL), "depth": args.depth}
        if args.size:
            dims["size"] = args.size
        m = NETWORKS["deeplab"].size_multiple(dims)
        if dims["size"] < 1 or dims["size"] % m:
            raise BenchmarkUsageError(f"--size must be a multiple of {m}, got {dims['size']}")
        # the variants of bench network --quick: the baseline (DCL k=6) and each kind's default
        variants = tuple((v.kind, v.k, v.name) for v in network_variants(
            split_list(args.kinds, "--kinds") or None, quick=True)
            if v.interleave == INTERLEAVES[0])
        whole = _whole_times(args.whole_from) if args.whole_from else None
        missing = [n for _, _, n in variants if whole is not None and n not in whole]
        if missing:
            raise BenchmarkUsageError(f"--whole-from {args.whole_from}: no whole-network time for "
                                      f"{', '.join(missing)}; given: {', '.join(sorted(whole))}")
        return DecoderSettings(args.command_line, args.quick, dims, variants,
                               (QUICK_POLICY if args.quick else POLICY).with_flags(args),
                               args.threads or physical_cores(), args.seed, whole,
                               args.whole_from)

    def run(self, s: DecoderSettings, *, progress: bool = True) -> Result:
        try:
            import torch
        except ImportError as exc:
            raise BenchmarkError(f"bench decoder needs torch and the exporters: pip install "
                                 f"'pixeldcn[cpu,torch]' ({exc})") from exc
        from ._ort import ProviderChoice, make_runner, make_session

        machine = machine_info()
        torch.set_num_threads(s.threads)
        choice = ProviderChoice("cpu", s.threads)
        size, rng = s.dims["size"], np.random.default_rng(s.seed)
        runners: dict[str, Any] = {}
        rows: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="pixeldcn-decoder-") as tmp:
            for kind, k, name in s.variants:
                torch.manual_seed(s.seed)
                model = NETWORKS["deeplab"].build(kind, k, s.dims)
                if progress:
                    print(f"[decoder] export {name} (decoder alone"
                          f"{'' if s.whole_ms else ' and whole network'})", flush=True)
                for part, path, x_shape in _export_parts(model, name, size, Path(tmp),
                                                         s.whole_ms is None):
                    sess = make_session(Path(path).read_bytes(), choice)
                    x = rng.standard_normal(x_shape).astype(np.float32)
                    runners[f"{name}|{part}"] = make_runner(
                        sess, {sess.get_inputs()[0].name: x}, choice)
                macs = mac_breakdown(model, (1, 3, size, size))
                rows[name] = {"variant": name, "kind": kind,
                              "gmacs": {p: v / 1e9 for p, v in macs.items()}}
            times = run_interleaved(runners, s.policy, seed=s.seed, desc="decoder rounds",
                                    progress=progress)
        records = {"rows": [_row(n, r, times, s.whole_ms) for n, r in rows.items()],
                   "rounds_run": len(next(iter(times.values())))}
        return Result(self.name, machine, s.to_json(), records)

    markdown = staticmethod(decoder_markdown)

    def plots(self, result: Result, out_dir: Path) -> list[Path]:
        return []


BENCHMARK = Decoder()
