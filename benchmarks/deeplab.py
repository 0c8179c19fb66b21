"""DeepLab-ResNet in the benchmarks: how to build it per up-sampling kind, and where its MACs are.

The paper's second network (Table 1: DeepLab-ResNet + DCL / iPixelDCL / PixelDCL) is
``exporters.pytorch.DeepLabResNet``: a dilated ResNet-101 (output stride 8), DeepLabV3's ASPP and
three decoder blocks (x2 up-sampling layer + 3x3 conv). :func:`mac_breakdown` counts its
multiply-accumulates per part (backbone, ASPP, decoder: up-sampling layers and decoder convs) by
running it once with hooks, so the report can say how much of the network the decoder is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FULL", "QUICK", "build", "decoder_input_shape", "decoder_share", "mac_breakdown", "main"]

#: The paper's setting (ResNet-101, 21 PASCAL VOC classes) at 512 x 512, and a --quick one.
FULL = {"size": 512, "depth": 101, "base_width": 64, "classes": 21}
QUICK = {"size": 256, "depth": 101, "base_width": 64, "classes": 21}
#: H and W must be multiples of the backbone's output stride.
SIZE_MULTIPLE = 8


def build(kind: str, k: int | None, dims: Mapping[str, int]) -> Any:
    """``DeepLabResNet`` with up-sampling kind ``kind`` (kernel ``k``) and ``dims``; eval mode."""
    from exporters.pytorch import DeepLabResNet

    return DeepLabResNet(3, dims["classes"], dims["depth"], kind, up_kernel_size=k,
                         base_width=dims.get("base_width", 64)).eval()


def decoder_input_shape(model: Any, batch: int, size: int) -> tuple[int, int, int, int]:
    """The shape the decoder sees: the ASPP output at 1/8 of the input."""
    c = model.decoder[0].up[0].in_channels
    return (batch, c, size // SIZE_MULTIPLE, size // SIZE_MULTIPLE)


def mac_breakdown(model: Any, shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates of one forward pass at ``shape``, per part of a DeepLabResNet.

    Keys: ``backbone``, ``aspp``, ``decoder_up`` (the three up-sampling layers: their kind's
    useful MACs, ``LayerSpec.macs_per_input_pixel`` x input pixels), ``decoder_conv`` (the
    decoder's convs), ``total``. Convolutions count ``out elements x in/groups x kh x kw``;
    BatchNorm, ReLU and pooling are not counted (they fold or are negligible).
    """
    import torch
    from torch import nn

    from exporters.pytorch import UpsampleLayer

    counts = {"backbone": 0, "aspp": 0, "decoder_up": 0, "decoder_conv": 0}
    hooks = []

    def part_of(name: str) -> str:
        top = name.split(".", 1)[0]
        return "decoder_conv" if top == "decoder" else top

    for name, module in model.named_modules():
        if isinstance(module, UpsampleLayer):
            def up_hook(m: Any, inputs: Any, output: Any) -> None:
                x = inputs[0]
                counts["decoder_up"] += (m.spec.macs_per_input_pixel() * x.shape[0] * x.shape[2]
                                         * x.shape[3])
            hooks.append(module.register_forward_hook(up_hook))
        elif isinstance(module, nn.Conv2d):
            part = part_of(name)

            def conv_hook(m: Any, inputs: Any, output: Any, part: str = part) -> None:
                kh, kw = m.kernel_size
                counts[part] += output.numel() * (m.in_channels // m.groups) * kh * kw
            hooks.append(module.register_forward_hook(conv_hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    finally:
        for h in hooks:
            h.remove()
    counts["total"] = sum(counts.values())
    return counts


# -- the decoder's share of MACs and time ------------------------------------------------------
def decoder_share(kinds: list[tuple[str, int | None]], dims: Mapping[str, int], *,
                  rounds: int = 5, warmup: int = 1, threads: int | None = None, seed: int = 0,
                  progress: bool = True, whole_ms: Mapping[str, float] | None = None
                  ) -> list[dict[str, Any]]:
    """For each (kind, k): MACs per part (:func:`mac_breakdown`), and onnxruntime (CPU) time of
    the whole network and of its decoder alone (the three blocks exported on their own, fed the
    ASPP output's shape), every model interleaved per round. The time share is the median over
    rounds of decoder time / whole-network time (same round).

    ``whole_ms`` (variant name -> median ms of the whole network, e.g. from a ``bench network``
    result) skips exporting and timing the whole networks: the share is then the decoder's
    median over that median, from two runs (less exact; the report says which)."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn

    from exporters.pytorch import ExportOptions, export_onnx

    from ._machine import physical_cores
    from ._ort import ProviderChoice, make_runner, make_session
    from ._stats import paired_ratio, summarize
    from ._timing import RoundPolicy, run_interleaved

    threads = threads or physical_cores()
    torch.set_num_threads(threads)
    choice = ProviderChoice("cpu", threads)
    size = dims["size"]
    shape = (1, 3, size, size)
    runners: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="pixeldcn-deeplab-") as tmp:
        for kind, k in kinds:
            torch.manual_seed(seed)
            model = build(kind, k, dims)
            name = f"{kind}_k{k if k is not None else model.decoder[0].up[0].kernel_size}"
            macs = mac_breakdown(model, shape)
            if progress:
                print(f"[deeplab] export {name} (whole network and decoder alone)", flush=True)
            dshape = decoder_input_shape(model, 1, size)
            dec = export_onnx(nn.Sequential(*model.decoder).eval(), Path(tmp) / f"{name}_dec.onnx",
                              dshape, options=ExportOptions(verify=False))
            parts = [("decoder", dec, dshape)]
            if whole_ms is None:
                whole = export_onnx(model, Path(tmp) / f"{name}.onnx", shape,
                                    options=ExportOptions(verify=False))
                parts.append(("whole", whole, shape))
            elif name not in whole_ms:
                raise ValueError(f"no whole-network time for {name}; given: {sorted(whole_ms)}")
            for part, path, x_shape in parts:
                sess = make_session(Path(path).read_bytes(), choice)
                x = rng.standard_normal(x_shape).astype(np.float32)
                runners[f"{name}|{part}"] = make_runner(sess, {sess.get_inputs()[0].name: x},
                                                        choice)
            rows[name] = {"variant": name, "kind": kind, "gmacs": {
                p: v / 1e9 for p, v in macs.items()}}
        times = run_interleaved(runners, RoundPolicy(rounds, warmup, None, rounds), seed=seed,
                                desc="deeplab rounds", progress=progress)
    for name, row in rows.items():
        dec_t = times[f"{name}|decoder"]
        if whole_ms is None:
            whole_t = times[f"{name}|whole"]
            share = paired_ratio(dec_t, whole_t)
            whole = summarize(whole_t)
        else:
            whole = {"median": whole_ms[name]}
            share = {"median": summarize(dec_t)["median"] / whole_ms[name]}
        g = row["gmacs"]
        row.update({
            "whole_ms": whole, "decoder_ms": summarize(dec_t), "paired": whole_ms is None,
            "decoder_time_share": share,
            "decoder_mac_share": (g["decoder_up"] + g["decoder_conv"]) / g["total"],
            "up_mac_share": g["decoder_up"] / g["total"],
        })
    return list(rows.values())


def decoder_markdown(rows: list[dict[str, Any]], dims: Mapping[str, int], command: str) -> str:
    """The table of :func:`decoder_share`."""
    from ._report import fmt, markdown_table

    size = dims["size"]
    table = [[r["variant"], fmt(r["gmacs"]["total"], 1), fmt(r["gmacs"]["decoder_up"], 2),
              fmt(r["gmacs"]["decoder_conv"], 2), f"{100 * r['decoder_mac_share']:.1f} %",
              f"{100 * r['up_mac_share']:.1f} %", fmt(r["whole_ms"]["median"], 0),
              fmt(r["decoder_ms"]["median"], 0),
              f"{100 * r['decoder_time_share']['median']:.1f} %"] for r in rows]
    return "\n".join([
        f"DeepLab-ResNet-{dims['depth']} at 1x3x{size}x{size}, onnxruntime CPU; `{command}`", "",
        markdown_table(["up-sampling", "GMAC total", "GMAC up-sampling layers",
                        "GMAC decoder convs", "decoder MAC share", "up-sampling MAC share",
                        "whole ms (median)", "decoder alone ms", "decoder time share"], table),
        "", "Decoder: the three blocks (up-sampling layer + BN + ReLU, 3x3 conv). Time share: "
        + ("median over rounds of (decoder alone) / (whole network) timed in the same round."
           if all(r["paired"] for r in rows) else
           "median time of the decoder alone / the whole network's median from the `bench "
           "network` result given with --whole-from (two runs: indicative)."), ""])


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.deeplab``: the decoder's share of DeepLab-ResNet's MACs and time."""
    import argparse
    import json
    import shlex
    import sys
    from pathlib import Path

    p = argparse.ArgumentParser(prog="python -m benchmarks.deeplab", description=main.__doc__)
    p.add_argument("--size", type=int, default=None, help="input H = W (default 512; quick 256)")
    p.add_argument("--depth", type=int, default=101, choices=(50, 101))
    p.add_argument("--kinds", default=None, help="comma-separated x2 kinds (default: all); "
                   "the baseline, DCL k=6, is always included")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; quick 3)")
    p.add_argument("--quick", action="store_true", help="256 x 256, 3 rounds")
    p.add_argument("--out", type=Path, default=None, help="folder for deeplab.json and .md")
    p.add_argument("--whole-from", type=Path, default=None,
                   help="a bench network result (network.json) holding these DeepLab variants: "
                        "take the whole networks' onnxruntime-cpu medians from it")
    args = p.parse_args(argv)
    dims = {**(QUICK if args.quick else FULL), "depth": args.depth}
    if args.size:
        dims["size"] = args.size
    if dims["size"] % SIZE_MULTIPLE:
        print(f"--size must be a multiple of {SIZE_MULTIPLE}, got {dims['size']}", file=sys.stderr)
        return 2
    from pixeldcn_core import INTERLEAVES

    from .network import network_variants

    # the same variants as bench network --quick: the baseline (DCL k=6) and each kind's default
    kinds = [(v.kind, v.k) for v in network_variants(args.kinds.split(",") if args.kinds else None,
                                                      quick=True)
             if v.interleave == INTERLEAVES[0]]
    whole = None
    if args.whole_from:
        res = json.loads(args.whole_from.read_text())
        records = res.get("records", res)
        whole = {r["variant"]: r["times_ms"]["median"] for r in records["rows"]
                 if r["network"] == "deeplab" and r["runtime"] == "onnxruntime-cpu"}
    rounds = args.rounds or (3 if args.quick else 5)
    rows = decoder_share(kinds, dims, rounds=rounds, whole_ms=whole)
    command = "python -m benchmarks.deeplab " + shlex.join(argv if argv is not None
                                                           else sys.argv[1:])
    md = decoder_markdown(rows, dims, command.strip())
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "deeplab.json").write_text(json.dumps(
            {"format": 1, "command": command, "dims": dims, "rows": rows}, indent=1))
        (args.out / "deeplab.md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
