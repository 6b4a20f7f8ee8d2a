"""The GPU extras resolve to a stack that works together (pip alone would not pick one).

Facts behind the pins (checked 2026-11): cuda-python 13.x is built for the CUDA 13 runtime and fails every
call on an R535-R570 driver; onnxruntime-gpu 1.22-1.26 are CUDA 12 builds whose TensorRT EP takes TensorRT
10, 1.27+ are CUDA 13 builds for TensorRT 11; onnxruntime and onnxruntime-gpu install the same module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
requirements = pytest.importorskip("packaging.requirements")

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, dict[str, object]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    return {name: {r.name: r.specifier for r in map(requirements.Requirement, reqs)} for name, reqs in extras.items()}


def _allows(spec, version: str) -> bool:
    return spec.contains(version, prereleases=True)


def test_gpu_extra_is_the_cuda_12_stack():
    gpu = _extras()["gpu"]
    assert _allows(gpu["cuda-python"], "12.6.2") and _allows(gpu["cuda-python"], "12.9.10")
    assert not _allows(gpu["cuda-python"], "13.0.0") and not _allows(gpu["cuda-python"], "12.5.0")
    trt = gpu["tensorrt-cu12"]  # one major, the one onnxruntime-gpu's CUDA 12 TensorRT EP takes
    assert _allows(trt, "10.16.1.11") and not _allows(trt, "11.0.0.114") and not _allows(trt, "9.3.0")
    ort = gpu["onnxruntime-gpu"]
    assert _allows(ort, "1.24.1") and _allows(ort, "1.26.0") and not _allows(ort, "1.27.0")


def test_gpu_cu13_extra_is_the_cuda_13_stack():
    gpu = _extras()["gpu-cu13"]
    assert _allows(gpu["cuda-python"], "13.4.4") and not _allows(gpu["cuda-python"], "12.9.10")
    assert _allows(gpu["tensorrt-cu13"], "11.4.0.106") and not _allows(gpu["tensorrt-cu13"], "12.0.0")
    assert _allows(gpu["onnxruntime-gpu"], "1.31.1") and not _allows(gpu["onnxruntime-gpu"], "1.26.0")


def test_no_extra_needs_both_onnxruntime_builds():
    for name, reqs in _extras().items():
        assert not {"onnxruntime", "onnxruntime-gpu"} <= set(reqs), name
    assert "setup(" in (ROOT / "setup.py").read_text() and "extras_require" not in (ROOT / "setup.py").read_text()
