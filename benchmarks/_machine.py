"""What a result was measured on: CPU, cores, OS, library versions, and when."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import sys
from importlib import metadata
from typing import Any

__all__ = ["machine_info", "physical_cores"]

_PACKAGES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tritonclient",
             "nvidia-pytriton", "pixeldcn")


def _cpuinfo() -> list[dict[str, str]]:
    """The blocks of ``/proc/cpuinfo`` (one per logical CPU); empty off Linux."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def logical_cpus() -> int:
    """CPUs this process may run on (its affinity), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may use: distinct (package, core) pairs among its CPUs."""
    allowed = logical_cpus()
    blocks = _cpuinfo()
    pairs = {(b.get("physical id", "0"), b.get("core id")) for b in blocks if "core id" in b}
    if not pairs:
        return allowed
    threads_per_core = max(1, len(blocks) // len(pairs))
    return max(1, allowed // threads_per_core)


def cpu_model() -> str:
    for block in _cpuinfo():
        if block.get("model name"):
            return block["model name"]
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def gpu_info() -> list[str]:
    """Names of the NVIDIA GPUs that ``nvidia-smi`` lists; empty when there is none."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python and library versions, GPUs, and a UTC timestamp."""
    mem_gib = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(v, 2) for v in os.getloadavg()]
    return {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": logical_cpus(),
        "memory_gib": mem_gib,
        "load_average_at_start": load,
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {p: v for p in _PACKAGES if (v := _version(p)) is not None},
        "gpus": gpu_info(),
    }
