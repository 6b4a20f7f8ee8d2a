"""A fake of cuda-python's runtime module (`cuda.bindings.runtime` / `cuda.cudart`) for CPU tests.

Like the real one, every call returns a tuple whose first element is a `cudaError_t`, streams are
`cudaStream_t` objects that convert with `int()`, and device properties carry `name` as null-padded
bytes. "Device" and "pinned" memory are numpy byte arrays keyed by their (real) addresses, so a
ctypes view of a pinned pointer works as it does on a GPU machine.

Streams are truly asynchronous here: `cudaMemcpyAsync` and TensorRT's `execute_async_v3` only queue
work, which runs at `cudaStreamSynchronize` (or `cudaStreamDestroy`, `cudaDeviceSynchronize`). Code that
reads a result before synchronising, or overwrites a pinned buffer still queued for copying, gets wrong
numbers, as it would on a GPU. The fake is stricter than CUDA in one way: copies must be between memory
it allocated (the runtime must only copy from pinned buffers).

Rules taken from cuda-bindings 12.6.2, 12.9.10 and 13.5.0 (introspected on a machine without a driver):
- every call returns a tuple `(cudaError_t, payload...)`; on failure the payload is None (12.9+).
- `cudaStream_t(handle)`: `int(stream)` (and `__index__`) is the handle; `getPtr()` is the address of
  the storage holding it, NOT the handle (passing it to TensorRT names no stream).
- the default stream (0) is asynchronous to the host like any other: work queued on it runs only when
  something synchronises (CUDA Runtime API, "Stream synchronization behavior").
- no driver: 12.9 / 13.x return cudaErrorInsufficientDriver from every call; 12.6 raises
  `RuntimeError("Failed to dlopen libcuda.so.1")` on the first call and
  `RuntimeError('Function "cuInit" not found')` on later ones (`FakeGPU(present=False, failure="dlopen")`).
- `cudaGetErrorName(err)` -> `(cudaSuccess, b"cudaErrorName")`, with or without a driver.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevicePointer = 17
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalAddress = 700


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStream_t:
    """Like cuda-python's: wraps the raw handle, `int()` gives it."""

    def __init__(self, handle: int = 0) -> None:
        self._handle = int(handle)

    def __int__(self) -> int:
        return self._handle

    def getPtr(self) -> int:
        """Like cuda-bindings: the address of the storage holding the handle, not the handle."""
        return id(self) + 16

    def __repr__(self) -> str:
        return f"<cudaStream_t 0x{self._handle:x}>"


@dataclass
class cudaDeviceProp:
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int = 80 * 2**30
    multiProcessorCount: int = 132


@dataclass
class Allocation:
    kind: str  # "pinned" | "device"
    data: np.ndarray
    freed: bool = False

    @property
    def ptr(self) -> int:
        return int(self.data.ctypes.data)


@dataclass
class Call:
    name: str
    stream: int | None = None
    kind: str = ""  # memcpy direction
    nbytes: int = 0
    in_flight: int = 0  # TensorRT executions queued and not yet run when this call was made


@dataclass
class FakeGPU:
    """The state behind one fake cuda-python module (and the fake TensorRT that runs on it)."""

    name: str = "NVIDIA H100 80GB HBM3"
    major: int = 9
    minor: int = 0
    present: bool = True  # False: no driver, every call fails like cuda-bindings on a CPU machine
    failure: str = "code"  # without a driver: "code" (12.9+: cudaErrorInsufficientDriver) | "dlopen" (12.6)
    allocations: dict[int, Allocation] = field(default_factory=dict)
    # stream handle -> queued work; 0 is the (legacy) default stream, asynchronous to the host too
    streams: dict[int, list[tuple[str, Callable[[], int]]]] = field(default_factory=lambda: {0: []})
    dlopen_tried: bool = False
    calls: list[Call] = field(default_factory=list)
    queued_executions: int = 0
    max_in_flight: int = 0
    _next_stream: int = 0x1000

    # --- memory -----------------------------------------------------------------------------------
    def allocate(self, kind: str, nbytes: int) -> int:
        alloc = Allocation(kind, np.zeros(max(int(nbytes), 1), np.uint8))
        self.allocations[alloc.ptr] = alloc
        return alloc.ptr

    def find(self, ptr: int, nbytes: int) -> tuple[Allocation, int] | None:
        """The live allocation holding [ptr, ptr + nbytes), and the offset into it."""
        for base, alloc in self.allocations.items():
            if not alloc.freed and base <= ptr and ptr + nbytes <= base + alloc.data.size:
                return alloc, ptr - base
        return None

    def bytes_at(self, ptr: int, nbytes: int, kind: str) -> np.ndarray | None:
        found = self.find(ptr, nbytes)
        if found is None or found[0].kind != kind:
            return None
        alloc, offset = found
        return alloc.data[offset : offset + nbytes]

    def user_streams(self) -> list[int]:
        """Streams created with cudaStreamCreate and not destroyed (the default stream excluded)."""
        return [h for h in self.streams if h != 0]

    def live(self, kind: str) -> int:
        return sum(1 for a in self.allocations.values() if a.kind == kind and not a.freed)

    # --- streams ----------------------------------------------------------------------------------
    def enqueue(self, stream: int, label: str, op: Callable[[], int]) -> int:
        """Queue `op` on a stream (the default stream 0 included: it runs when someone synchronises)."""
        if stream not in self.streams:
            return cudaError_t.cudaErrorInvalidResourceHandle
        if label == "execute":
            self.queued_executions += 1
            self.max_in_flight = max(self.max_in_flight, self.queued_executions)
        self.streams[stream].append((label, op))
        return cudaError_t.cudaSuccess

    def drain(self, stream: int) -> int:
        status = int(cudaError_t.cudaSuccess)
        queue = self.streams.get(stream, [])
        while queue:
            label, op = queue.pop(0)
            if label == "execute":
                self.queued_executions -= 1
            result = int(op())
            if result and not status:
                status = result
        return status

    def record(self, name: str, stream: Any = None, kind: str = "", nbytes: int = 0) -> None:
        handle = None if stream is None else int(stream)
        self.calls.append(Call(name, handle, kind, int(nbytes), self.queued_executions))

    def calls_named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


def make_cudart(gpu: FakeGPU) -> types.ModuleType:
    """A module that behaves like `cuda.bindings.runtime` on the GPU `gpu` describes."""
    mod = types.ModuleType("cuda.bindings.runtime")
    mod.__dict__.update(
        cudaError_t=cudaError_t,
        cudaMemcpyKind=cudaMemcpyKind,
        cudaStream_t=cudaStream_t,
        cudaDeviceProp=cudaDeviceProp,
        _fake_gpu=gpu,
    )
    ok = cudaError_t.cudaSuccess
    nodrv = cudaError_t.cudaErrorInsufficientDriver

    def cudaGetErrorName(err: Any) -> tuple:
        return ok, cudaError_t(int(err)).name.encode()

    def cudaGetDeviceCount() -> tuple:
        gpu.record("cudaGetDeviceCount")
        return (ok, 1) if gpu.present else (nodrv, 0)

    def cudaGetDevice() -> tuple:
        gpu.record("cudaGetDevice")
        return (ok, 0) if gpu.present else (nodrv, None)

    def cudaGetDeviceProperties(device: int) -> tuple:
        gpu.record("cudaGetDeviceProperties")
        if not gpu.present:
            return nodrv, None
        if int(device) != 0:
            return cudaError_t.cudaErrorInvalidDevice, None
        return ok, cudaDeviceProp(gpu.name.encode().ljust(256, b"\0"), gpu.major, gpu.minor)

    def _alloc(kind: str, size: int) -> tuple:
        if not gpu.present:
            return nodrv, None
        if int(size) <= 0:
            return cudaError_t.cudaErrorInvalidValue, None
        if int(size) > cudaDeviceProp.totalGlobalMem:  # more than the card (or any host) has
            return cudaError_t.cudaErrorMemoryAllocation, None
        return ok, gpu.allocate(kind, int(size))

    def _free(kind: str, ptr: int) -> tuple:
        alloc = gpu.allocations.get(int(ptr))
        if alloc is None or alloc.freed or alloc.kind != kind:
            return (cudaError_t.cudaErrorInvalidValue,)
        alloc.freed = True  # the array stays alive so a stale view cannot crash the test process
        return (ok,)

    def cudaMallocHost(size: int) -> tuple:
        gpu.record("cudaMallocHost", nbytes=size)
        return _alloc("pinned", size)

    def cudaFreeHost(ptr: int) -> tuple:
        gpu.record("cudaFreeHost")
        return _free("pinned", ptr)

    def cudaMalloc(size: int) -> tuple:
        gpu.record("cudaMalloc", nbytes=size)
        return _alloc("device", size)

    def cudaFree(ptr: int) -> tuple:
        gpu.record("cudaFree")
        return _free("device", ptr)

    def cudaStreamCreate() -> tuple:
        gpu.record("cudaStreamCreate")
        if not gpu.present:
            return nodrv, None
        handle = gpu._next_stream
        gpu._next_stream += 0x10
        gpu.streams[handle] = []
        return ok, cudaStream_t(handle)

    def cudaStreamSynchronize(stream: Any) -> tuple:
        gpu.record("cudaStreamSynchronize", stream)
        handle = int(stream)
        if handle not in gpu.streams:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        return (cudaError_t(gpu.drain(handle)),)

    def cudaDeviceSynchronize() -> tuple:
        gpu.record("cudaDeviceSynchronize")
        status = cudaError_t.cudaSuccess
        for handle in list(gpu.streams):
            status = status or cudaError_t(gpu.drain(handle))
        return (status,)

    def cudaStreamDestroy(stream: Any) -> tuple:
        gpu.record("cudaStreamDestroy", stream)
        handle = int(stream)
        if handle == 0 or handle not in gpu.streams:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        gpu.drain(handle)  # CUDA finishes queued work before releasing the stream
        del gpu.streams[handle]
        return (ok,)

    directions = {
        cudaMemcpyKind.cudaMemcpyHostToDevice: ("pinned", "device"),
        cudaMemcpyKind.cudaMemcpyDeviceToHost: ("device", "pinned"),
        cudaMemcpyKind.cudaMemcpyDeviceToDevice: ("device", "device"),
        cudaMemcpyKind.cudaMemcpyHostToHost: ("pinned", "pinned"),
    }

    def cudaMemcpyAsync(dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple:
        kind = cudaMemcpyKind(int(kind))
        gpu.record("cudaMemcpyAsync", stream, kind.name, count)
        if kind not in directions:
            return (cudaError_t.cudaErrorInvalidValue,)
        src_kind, dst_kind = directions[kind]
        count = int(count)
        # Validate now (as CUDA does for bad pointers) but copy when the stream runs.
        if gpu.bytes_at(int(src), count, src_kind) is None or gpu.bytes_at(int(dst), count, dst_kind) is None:
            return (cudaError_t.cudaErrorInvalidValue,)

        def run() -> int:
            source = gpu.bytes_at(int(src), count, src_kind)
            target = gpu.bytes_at(int(dst), count, dst_kind)
            if source is None or target is None:  # freed while queued
                return cudaError_t.cudaErrorIllegalAddress
            target[:] = source
            return cudaError_t.cudaSuccess

        return (cudaError_t(gpu.enqueue(int(stream), "memcpy", run)),)

    def no_driver(fn: Callable[..., tuple]) -> Callable[..., tuple]:
        """cuda-bindings 12.6 without a driver: the call raises instead of returning an error code."""
        def call(*args: Any) -> tuple:
            if not gpu.present and gpu.failure == "dlopen":
                first, gpu.dlopen_tried = not gpu.dlopen_tried, True
                raise RuntimeError("Failed to dlopen libcuda.so.1" if first else 'Function "cuInit" not found')
            return fn(*args)
        call.__name__ = fn.__name__
        return call

    mod.cudaGetErrorName = cudaGetErrorName
    for fn in (
        cudaGetDeviceCount, cudaGetDevice, cudaGetDeviceProperties, cudaMallocHost, cudaFreeHost, cudaMalloc,
        cudaFree, cudaStreamCreate, cudaStreamSynchronize, cudaDeviceSynchronize, cudaStreamDestroy,
        cudaMemcpyAsync,
    ):
        setattr(mod, fn.__name__, no_driver(fn))
    return mod
