"""onnxruntime sessions for benchmarking: CPU, CUDA and TensorRT execution providers.

Every session is made with thread spinning off. With several sessions in one process, the
default spin-waiting of idle intra-op threads steals the cores from the session that runs and
makes interleaved timings 2-3x slower and meaningless.

GPU providers are optional: a provider is used only when onnxruntime lists it *and* a real
session on a tiny model runs with it first in ``session.get_providers()`` (onnxruntime silently
falls back to the CPU when CUDA or TensorRT libraries are missing). On GPU the inputs and
outputs stay on the device (I/O binding), so a timing is the model's, not the PCIe copies'.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._errors import BenchmarkError, BenchmarkUsageError

__all__ = [
    "PROVIDERS",
    "ProviderChoice",
    "make_runner",
    "make_session",
    "parse_providers",
    "resolve_providers",
]

#: Short names accepted by ``--providers`` -> onnxruntime execution provider.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_ALIASES = {"trt": "tensorrt", "gpu": "cuda"}


@dataclasses.dataclass(frozen=True)
class ProviderChoice:
    """One execution provider to benchmark on.

    Attributes:
        name: short name ("cpu", "cuda", "tensorrt").
        threads: intra-op threads (CPU provider; also the CPU fallback of the GPU ones).
        cache_dir: TensorRT engine and timing cache folder.
        fp16: let TensorRT pick fp16 kernels (the model's own dtype is separate).
    """

    name: str
    threads: int
    cache_dir: str | None = None
    fp16: bool = False

    @property
    def ep(self) -> str:
        return PROVIDERS[self.name]

    @property
    def on_gpu(self) -> bool:
        return self.name != "cpu"

    def providers(self) -> list[Any]:
        """The ``providers=`` list of an InferenceSession, most preferred first."""
        cuda = ("CUDAExecutionProvider", {
            "device_id": 0,
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "cudnn_conv_use_max_workspace": "1",
        })
        if self.name == "cpu":
            return ["CPUExecutionProvider"]
        if self.name == "cuda":
            return [cuda, "CPUExecutionProvider"]
        # Engines found in the cache are deserialised: the folder given (resolve_providers makes
        # a private one per run), never a shared name in the world-writable temp folder.
        cache = self.cache_dir or tempfile.mkdtemp(prefix="pixeldcn-trt-")
        os.makedirs(cache, exist_ok=True)
        trt = ("TensorrtExecutionProvider", {
            "device_id": 0,
            "trt_fp16_enable": self.fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
            "trt_max_workspace_size": 4 * 2**30,
        })
        return [trt, cuda, "CPUExecutionProvider"]


def parse_providers(text: str | Sequence[str]) -> list[str]:
    """``"cpu,cuda"`` -> ``["cpu", "cuda"]``; ``"auto"`` -> every provider (the unusable ones
    are then skipped); raises :class:`BenchmarkUsageError` naming the valid names."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names: list[str] = []
    for raw in items:
        item = raw.strip().lower()
        if not item:
            continue
        if item == "auto":
            names.extend(PROVIDERS)
            continue
        item = _ALIASES.get(item, item)
        if item not in PROVIDERS:
            raise BenchmarkUsageError(
                f"--providers: unknown provider {raw.strip()!r}; expected a comma-separated list "
                f"of {', '.join(PROVIDERS)} (or 'auto')"
            )
        names.append(item)
    return list(dict.fromkeys(names)) or ["cpu"]


def session_options(threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: a provider's fallback warnings are handled here
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def make_session(model: bytes, choice: ProviderChoice) -> Any:
    """An InferenceSession of ``model`` (serialised ModelProto) on ``choice``'s provider.

    Raises:
        BenchmarkError: the session fell back from the requested GPU provider.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(model, session_options(choice.threads),
                                providers=choice.providers())
    if sess.get_providers()[0] != choice.ep:
        raise BenchmarkError(
            f"onnxruntime did not take the {choice.ep}; the session runs on "
            f"{sess.get_providers()} (missing CUDA/cuDNN/TensorRT libraries?)"
        )
    return sess


def make_runner(sess: Any, feeds: Mapping[str, np.ndarray], choice: ProviderChoice
                ) -> Callable[[], None]:
    """A callable that runs ``sess`` once on ``feeds`` and returns when the outputs are ready.

    On CPU it is ``sess.run``. On GPU the inputs are copied to the device once and the outputs
    are left there (I/O binding); ``run_with_iobinding`` synchronises the device at the end of
    every run, so the call returns only when the GPU work is done.
    """
    if not choice.on_gpu:
        feeds = dict(feeds)

        def run_cpu() -> None:
            sess.run(None, feeds)

        return run_cpu
    import onnxruntime as ort

    binding = sess.io_binding()
    device_inputs = []  # kept alive as long as the runner
    for name, arr in feeds.items():
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", 0)
        device_inputs.append(value)
        binding.bind_ortvalue_input(name, value)
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda", 0)

    def run_gpu() -> None:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run_gpu.device_inputs = device_inputs  # type: ignore[attr-defined]
    return run_gpu


def _probe_model() -> bytes:
    from pixeldcn_core import GraphBuilder

    b = GraphBuilder()
    x = b.input("x", "float32", [1, 4, 8, 8])
    w = b.initializer(np.ones((4, 4, 3, 3), np.float32) / 36.0, "w")
    b.output(b.op("Conv", [x, w], {"pads": [1, 1, 1, 1]}), "y", [1, 4, 8, 8])
    return b.to_model("probe").SerializeToString()


def probe(choice: ProviderChoice) -> str | None:
    """``None`` when ``choice`` works (listed, a real session takes it, a run succeeds);
    otherwise why not."""
    import onnxruntime as ort

    if choice.ep not in ort.get_available_providers():
        return f"{choice.ep} is not in this onnxruntime build ({ort.get_device()})"
    try:
        sess = make_session(_probe_model(), choice)
        make_runner(sess, {"x": np.ones((1, 4, 8, 8), np.float32)}, choice)()
    except Exception as err:  # any failure means: not usable here
        return f"{choice.ep} failed on a probe model: {str(err).splitlines()[0][:200]}"
    return None


def resolve_providers(
    names: Sequence[str], *, threads: int, fp16: bool = False, cache_dir: str | None = None,
    required: Sequence[str] = (),
) -> tuple[list[ProviderChoice], dict[str, str]]:
    """The usable providers among ``names``, and why each of the others was skipped.

    Raises:
        BenchmarkError: a provider in ``required`` is not usable.
    """
    usable: list[ProviderChoice] = []
    skipped: dict[str, str] = {}
    if cache_dir is None and "tensorrt" in names:
        cache_dir = tempfile.mkdtemp(prefix="pixeldcn-trt-")  # private (0700), this run only
    for name in names:
        choice = ProviderChoice(name, threads, cache_dir=cache_dir, fp16=fp16)
        reason = probe(choice)
        if reason is None:
            usable.append(choice)
        else:
            skipped[name] = reason
    missing = [n for n in required if n in skipped]
    if missing:
        raise BenchmarkError(
            "requested execution provider(s) not usable here: "
            + "; ".join(f"{n}: {skipped[n]}" for n in missing)
        )
    return usable, skipped
