"""What each export target's forms cost in onnxruntime: one layer per kind, CPU, one thread.

    python docs/scripts/target_forms.py [--channels 64] [--size 64] [--rounds 41]

Prints a Markdown table: median ms per form and the median of the per-round ratios to the
default form (with their interquartile range). Rounds interleave the forms, so drift on a busy
machine hits all of them alike. Kinds come from the registry.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

import pixeldcn_core as pc


def _session(model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=41)
    args = ap.parse_args()
    c, s = args.channels, args.size
    x = np.random.default_rng(0).standard_normal((1, c, s, s)).astype(np.float32)
    print("| kind (k) | form | ms | vs default |\n| --- | --- | --- | --- |")
    for kind in pc.layer_kinds():
        info = pc.get_kind(kind)
        for k in sorted({info.default_kernel, max(3, info.min_kernel) | 1}):
            w = pc.LayerSpec(kind, c, c, k).random_weights(0)
            forms = {"default (onnxruntime)": {}, "target any": {"target": "any"}}
            if info.interleaves:
                forms["target any + depth_to_space (CRD)"] = {"target": "any",
                                                              "interleave": "depth_to_space"}
            sessions = {name: _session(pc.build_layer_model(kind, w, **kw)) for name, kw in forms.items()}
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for sess in sessions.values():
                for _ in range(3):
                    sess.run(None, {"x": x})
            for _ in range(args.rounds):
                for name, sess in sessions.items():
                    t0 = time.perf_counter()
                    sess.run(None, {"x": x})
                    times[name].append(time.perf_counter() - t0)
            base = np.array(times["default (onnxruntime)"])
            for name, t in times.items():
                ratio = np.array(t) / base
                lo, hi = np.percentile(ratio, [25, 75])
                print(f"| {kind} ({k}) | {name} | {np.median(t) * 1e3:.1f} | "
                      f"{np.median(ratio):.2f} ({lo:.2f}-{hi:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
