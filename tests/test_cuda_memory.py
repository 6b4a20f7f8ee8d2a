"""cuda_memory against the fake cuda-python: error tuples, ownership, async copies on real streams."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fakes import fake_cuda, install_cuda  # noqa: F401  (fixtures)
from fakes.fake_cuda import FakeGPU

from fwrd.errors import DependencyMissing
from fwrd.runtime.cuda_memory import (
    CudaError, CudaStream, DeviceBuffer, PinnedHostBuffer, copy_to_device, copy_to_host, cuda_call,
    device_properties, load_cudart,
)


def test_cuda_call_unpacks_results_and_names_errors(fake_cuda):
    cudart = fake_cuda.cudart
    ok = cudart.cudaError_t.cudaSuccess
    assert cuda_call((ok,)) is None
    assert cuda_call((ok, 7)) == 7
    assert cuda_call((ok, 7, 8)) == (7, 8)
    with pytest.raises(CudaError, match=r"cudaErrorMemoryAllocation \(2\) in cudaMalloc") as info:
        cuda_call((cudart.cudaError_t.cudaErrorMemoryAllocation, 0), "cudaMalloc", cudart)
    assert info.value.code == 2 and info.value.name == "cudaErrorMemoryAllocation"
    with pytest.raises(CudaError, match="cudaErrorInvalidValue"):  # name without cudaGetErrorName
        cuda_call((cudart.cudaError_t.cudaErrorInvalidValue,))


def test_round_trip_through_device_is_asynchronous_until_synchronize(fake_cuda):
    data = np.arange(256, dtype=np.uint8)
    with CudaStream() as stream, PinnedHostBuffer(256) as src, PinnedHostBuffer(256) as dst, \
            DeviceBuffer(256) as dev:
        src.array[:] = data
        copy_to_device(dev, src, 256, stream)
        copy_to_host(dst, dev, 256, stream)
        assert not dst.array.any()  # queued, not done: reading now would be a bug
        stream.synchronize()
        np.testing.assert_array_equal(dst.array, data)
        handle = stream.handle
    copies = fake_cuda.gpu.calls_named("cudaMemcpyAsync")
    assert [c.kind for c in copies] == ["cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"]
    assert {c.stream for c in copies} == {handle} and handle != 0


def test_typed_views_and_bounds(fake_cuda):
    with PinnedHostBuffer(64) as buf:
        view = buf.view(np.float32, (4, 4))
        view[:] = 1.5
        assert buf.view(np.float32, (16,)).sum() == 24.0
        with pytest.raises(ValueError, match="does not fit"):
            buf.view(np.float32, (17,))
        with CudaStream() as stream, DeviceBuffer(32) as dev:
            with pytest.raises(ValueError, match="cannot copy 64 bytes"):
                copy_to_device(dev, buf, 64, stream)
    with pytest.raises(ValueError, match="positive"):
        DeviceBuffer(0)


def test_free_releases_once_and_blocks_reuse(fake_cuda):
    gpu = fake_cuda.gpu
    host, dev, stream = PinnedHostBuffer(16), DeviceBuffer(16), CudaStream()
    assert gpu.live("pinned") == 1 and gpu.live("device") == 1 and len(gpu.user_streams()) == 1
    for resource in (host, dev, stream):
        resource.free()
        resource.free()  # second free is a no-op, not a double free
    assert gpu.live("pinned") == 0 and gpu.live("device") == 0 and not gpu.user_streams()
    assert len(gpu.calls_named("cudaFreeHost")) == 1 and len(gpu.calls_named("cudaFree")) == 1
    with pytest.raises(ValueError, match="freed"):
        host.array
    with pytest.raises(ValueError, match="freed"):
        stream.synchronize()


def test_context_manager_frees_on_error(fake_cuda):
    with pytest.raises(RuntimeError):
        with PinnedHostBuffer(8), DeviceBuffer(8):
            raise RuntimeError("boom")
    assert fake_cuda.gpu.live("pinned") == 0 and fake_cuda.gpu.live("device") == 0


def test_device_properties_decodes_padded_name(fake_cuda):
    props = device_properties()
    assert props == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


@pytest.mark.parametrize("failure, reason", [
    ("code", "cudaErrorInsufficientDriver in cudaGetDevice"),  # cuda-bindings 12.9 / 13.x
    ("dlopen", "Failed to dlopen libcuda.so.1 in cudaGetDevice"),  # cuda-bindings 12.6 raises RuntimeError
])
def test_no_driver_is_one_line_missing_dependency(monkeypatch, failure, reason):
    install_cuda(monkeypatch, FakeGPU(present=False, failure=failure))
    with pytest.raises(DependencyMissing) as info:
        device_properties()
    assert str(info.value) == f"no usable NVIDIA GPU ({reason}): pip install fwrd[gpu] on a machine with an NVIDIA GPU"
    for make in (lambda: PinnedHostBuffer(8), lambda: DeviceBuffer(8), CudaStream):  # later calls too
        with pytest.raises(DependencyMissing, match=r"^no usable NVIDIA GPU \(.+ in cuda\w+\): pip install"):
            make()


def test_stream_handle_is_the_value_not_getptr(fake_cuda):
    with CudaStream() as stream:
        raw = stream.stream
        assert stream.handle == int(raw) != 0 and isinstance(stream.handle, int)
        assert raw.getPtr() != stream.handle  # cuda-python: getPtr() is where the handle is stored


def test_default_stream_is_asynchronous_too(fake_cuda):
    """The fake keeps CUDA's rule: work on stream 0 is not done until someone synchronises."""
    cudart = fake_cuda.cudart
    data = np.arange(8, dtype=np.uint8)
    with PinnedHostBuffer(8) as src, PinnedHostBuffer(8) as dst, DeviceBuffer(8) as dev:
        src.array[:] = data
        kind = cudart.cudaMemcpyKind
        cuda_call(cudart.cudaMemcpyAsync(dev.ptr, src.ptr, 8, kind.cudaMemcpyHostToDevice, 0))
        cuda_call(cudart.cudaMemcpyAsync(dst.ptr, dev.ptr, 8, kind.cudaMemcpyDeviceToHost, 0))
        assert not dst.array.any()
        cuda_call(cudart.cudaStreamSynchronize(0))
        np.testing.assert_array_equal(dst.array, data)


def test_missing_cuda_python(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DependencyMissing, match=r"cuda-python is not installed .*pip install fwrd\[gpu\]"):
        load_cudart()


def test_old_cuda_python_layout(monkeypatch):
    env = install_cuda(monkeypatch, layout="cudart")
    assert load_cudart() is env.cudart
    with PinnedHostBuffer(4) as buf:
        assert buf.array.shape == (4,)
