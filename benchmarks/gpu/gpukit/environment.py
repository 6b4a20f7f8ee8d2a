"""GPU, driver, CUDA, torch, cuda-bindings; whether TensorRT / onnxruntime-gpu exist (absent ones are named,
never fatal): what the other steps' numbers ran on."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from typing import Any

from gpukit.core import ROOT, Kit


def run(kit: Kit) -> dict[str, Any]:
    import torch
    from bench_training import cpu_name

    from fwrd import __version__

    env: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "cpu": cpu_name(), "fwrd": __version__, "fwrd_source_sha256": _source_digest(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "dry_run": kit.dry,
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, compute_capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count)
    env["nvidia_smi"] = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"])
    for dist in ("cuda-bindings", "cuda-python", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "onnxruntime",
                 "onnxruntime-gpu", "onnx", "numpy", "openslide-bin", "tifffile", "imagecodecs", "triton"):
        env[f"pkg:{dist}"] = _dist_version(dist)
    try:
        import tensorrt  # noqa: F401

        env["tensorrt_importable"] = True
    except Exception as exc:
        env["tensorrt_importable"] = f"no ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception as exc:
        env["onnxruntime_providers"] = f"no ({type(exc).__name__})"
    try:
        from fwrd.runtime.cuda_memory import device_properties

        env["fwrd_device_properties"] = device_properties()
    except Exception as exc:
        env["fwrd_device_properties"] = f"{type(exc).__name__}: {exc}"
    return env


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _source_digest() -> str:
    """Which fwrd code ran: a hash over fwrd/**/*.py (the GPU machine gets a copy without .git)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "fwrd").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
