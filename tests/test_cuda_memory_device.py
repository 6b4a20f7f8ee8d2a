"""cuda_memory on a real GPU with the real cuda-python: the checks tests/fakes/fake_cuda.py stands in for.

Skipped where cuda-python or a GPU is missing (CI); `benchmarks/gpu/run.sh` runs them on a GPU machine
and records the outcome in benchmarks/results/gpu-*.md.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fwrd.errors import DependencyMissing


def _gpu_or_skip() -> dict:
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python is not installed")
    from fwrd.runtime.cuda_memory import device_properties

    try:
        return device_properties()
    except DependencyMissing as exc:
        pytest.skip(f"no usable GPU: {exc}")


@pytest.fixture(scope="module")
def gpu() -> dict:
    return _gpu_or_skip()


def test_device_properties_name_the_card(gpu):
    assert gpu["name"] and "\0" not in gpu["name"]
    major, minor = (int(v) for v in gpu["compute_capability"].split("."))
    assert major >= 5 and minor >= 0


def test_pinned_device_round_trip_is_exact(gpu):
    from fwrd.runtime.cuda_memory import CudaStream, DeviceBuffer, PinnedHostBuffer, copy_to_device, copy_to_host

    n = 3 << 20
    data = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)
    with CudaStream() as stream, PinnedHostBuffer(n) as src, PinnedHostBuffer(n) as dst, DeviceBuffer(n) as dev:
        src.array[:] = data
        dst.array[:] = 0
        copy_to_device(dev, src, n, stream)
        copy_to_host(dst, dev, n, stream)
        stream.synchronize()
        np.testing.assert_array_equal(dst.array, data)
        assert stream.handle != 0  # a non-default stream


def test_async_copy_is_not_complete_before_synchronize(gpu):
    """A large copy queued behind another returns at once; the stream reports work pending until it is
    synchronised (cudaStreamQuery == cudaErrorNotReady), and the data is only right afterwards."""
    from fwrd.runtime.cuda_memory import (
        CudaStream, DeviceBuffer, PinnedHostBuffer, copy_to_device, copy_to_host, load_cudart,
    )

    cudart = load_cudart()
    n = 512 << 20
    with CudaStream() as stream, PinnedHostBuffer(n) as src, PinnedHostBuffer(n) as dst, DeviceBuffer(n) as dev:
        src.array[::4096] = 7
        dst.array[::4096] = 0
        copy_to_device(dev, src, n, stream)
        copy_to_host(dst, dev, n, stream)
        (status,) = cudart.cudaStreamQuery(stream.stream)
        assert int(getattr(status, "value", status)) == int(cudart.cudaError_t.cudaErrorNotReady)
        stream.synchronize()
        (status,) = cudart.cudaStreamQuery(stream.stream)
        assert int(getattr(status, "value", status)) == 0
        assert (dst.array[::4096] == 7).all()


def test_oversized_allocation_becomes_a_cuda_error(gpu):
    from fwrd.runtime.cuda_memory import CudaError, DeviceBuffer

    with pytest.raises(CudaError, match="cudaErrorMemoryAllocation"):
        DeviceBuffer(1 << 50)  # 1 PiB


def test_free_twice_is_harmless_and_a_raw_double_free_is_reported(gpu):
    from fwrd.runtime.cuda_memory import CudaError, DeviceBuffer, PinnedHostBuffer, cuda_call, load_cudart

    cudart = load_cudart()
    buffer = DeviceBuffer(1 << 20)
    pointer = buffer.ptr
    buffer.free()
    buffer.free()  # owned once: the second free is a no-op
    assert buffer.closed
    with pytest.raises(ValueError, match="freed"):
        _ = buffer.ptr
    with pytest.raises(CudaError):  # what the ownership rule prevents: CUDA refuses the second cudaFree
        cuda_call(cudart.cudaFree(pointer), "cudaFree", cudart)
    pinned = PinnedHostBuffer(4096)
    pinned.free()
    pinned.free()
    with pytest.raises(ValueError, match="freed"):
        _ = pinned.array
