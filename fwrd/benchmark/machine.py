"""What the numbers were measured on: CPU model and cores, memory, GPUs, package versions.

Throughput means nothing without the machine, so every benchmark result carries this record. Nothing
here imports torch or onnxruntime: versions come from the installed distributions' metadata.

    info = describe_machine()
    info["cpu"], info["physical_cores"], info["gpus"], info["versions"]["onnxruntime"]
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fwrd import __version__
from fwrd.runtime.backends.onnxruntime import physical_cores

# distributions whose versions matter for a throughput figure (first found of each alias group)
PACKAGES = (
    ("numpy",),
    ("onnxruntime", "onnxruntime-gpu"),
    ("onnx",),
    ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
    ("cuda-python", "cuda-bindings"),
    ("torch",),
    ("openslide-python",),
    ("openslide-bin",),
    ("tifffile",),
    ("imagecodecs",),
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")  # what int8/fp16 kernels use
NVIDIA_SMI_QUERY = "name,memory.total,driver_version,compute_cap"


def describe_machine() -> dict[str, Any]:
    """Host, OS, CPU model and flags, logical/usable/physical cores, memory, GPUs and versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count() or 1,
        "usable_cpus": usable,
        "physical_cores": physical_cores(),
        "memory_gib": memory_gib(),
        "gpus": nvidia_gpus(),
        "versions": package_versions(),
    }


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name ("AMD EPYC 9654 96-Core Processor"), or the best the platform says."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """Which of the vector extensions in CPU_FLAGS the CPU reports."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            have = set(value.split())
            return [flag for flag in CPU_FLAGS if flag in have]
    return []


def memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return round(pages * size / 2**30, 1)


def parse_nvidia_smi(text: str) -> list[dict[str, str]]:
    """Rows of `nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader`."""
    keys = ("name", "memory", "driver", "compute_capability")
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if not fields[0]:
            continue
        gpus.append({k: v for k, v in zip(keys, fields) if v and v != "[N/A]"})
    return gpus


def nvidia_gpus(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[dict[str, str]]:
    """The GPUs nvidia-smi lists; empty when there is no nvidia-smi or it fails (no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = run([exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader"],
                   capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else []


def package_versions() -> dict[str, str]:
    """fwrd, Python, libopenslide and each installed distribution of PACKAGES."""
    out = {"fwrd": __version__, "python": platform.python_version()}
    for aliases in PACKAGES:
        for name in aliases:
            try:
                out[name] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    openslide = sys.modules.get("openslide")
    library = getattr(openslide, "__library_version__", None) if openslide is not None else None
    if library:
        out["libopenslide"] = str(library)
    return out
