"""Fakes of TensorRT and cuda-python for CPU tests, installed through `sys.modules`.

`install(monkeypatch, version)` puts a fake `tensorrt` of that version and a fake cuda-python
(`cuda.bindings.runtime`, and the old `cuda.cudart` layout when asked) in `sys.modules`, sharing one
fake GPU. Test modules import the fixtures they need from here:

    from fakes import fake_trt, fake_cuda  # noqa: F401  (pytest fixtures)

The code under test imports both lazily, so it picks the fakes up. Tests that pass against them show
the code uses the TensorRT 10/11 API as documented; they do not show it runs on a real GPU.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .fake_cuda import FakeGPU, make_cudart
from .fake_tensorrt import FakeTRT, make_tensorrt

TRT_VERSIONS = ("10.8.0", "10.13.3", "11.4.0")


@dataclass
class FakeEnv:
    gpu: FakeGPU
    cudart: types.ModuleType
    trt: types.ModuleType | None = None

    @property
    def state(self) -> FakeTRT:
        assert self.trt is not None
        return self.trt._fake


def install_cuda(monkeypatch: pytest.MonkeyPatch, gpu: FakeGPU | None = None, layout: str = "bindings") -> FakeEnv:
    """Fake cuda-python: `cuda.bindings.runtime` (>= 12.6) or only `cuda.cudart` (older releases)."""
    gpu = gpu or FakeGPU()
    cudart = make_cudart(gpu)
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []  # a package, so submodule imports resolve through sys.modules
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    if layout == "bindings":
        bindings = types.ModuleType("cuda.bindings")
        bindings.__path__ = []
        bindings.runtime = cudart
        cuda.bindings = bindings
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    else:
        cuda.cudart = cudart
        monkeypatch.setitem(sys.modules, "cuda.cudart", cudart)
        monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # import fails, like an old release
    return FakeEnv(gpu, cudart)


def install(monkeypatch: pytest.MonkeyPatch, version: str, gpu: FakeGPU | None = None) -> FakeEnv:
    """Fake TensorRT `version` plus fake cuda-python on one fake GPU."""
    env = install_cuda(monkeypatch, gpu)
    env.trt = make_tensorrt(version, env.gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", env.trt)
    return env


@pytest.fixture(params=TRT_VERSIONS)
def fake_trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEnv]:
    """Fake TensorRT in each flavour (10.8 and 10.13: STRONGLY_TYPED = bit 1 and the FP16 builder flag still
    there; 11: strongly typed only, STRONGLY_TYPED = bit 0).

    After the test it fails if anything touched an API that TensorRT 10/11 removed.
    """
    env = install(monkeypatch, request.param)
    yield env
    assert env.state.removed_accessed == [], f"removed TensorRT API used: {env.state.removed_accessed}"


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeEnv:
    """Fake cuda-python alone (no TensorRT)."""
    return install_cuda(monkeypatch)
