"""CUDA memory and streams through cuda-python, one resource per object, for the TensorRT runtime.

Why not pycuda: it has no wheels and its autoinit context breaks beside other CUDA users. cuda-python
(`cuda.bindings.runtime`, or `cuda.cudart` in releases before 12.6) returns a tuple from every call
whose first element is a `cudaError_t`; `cuda_call` turns a failure into a `CudaError` naming the
error, so no code path forgets to check. Each class below owns exactly one allocation, frees it in
`free()` (safe twice) and works as a context manager, after NVIDIA's TensorRT samples:

    with CudaStream() as stream, PinnedHostBuffer(n) as host, DeviceBuffer(n) as dev:
        host.array[:] = data
        copy_to_device(dev, host, n, stream); stream.synchronize()

A machine without a usable driver is a missing dependency, whatever cuda-python version says so:
cuda-bindings 12.6 raises `RuntimeError("Failed to dlopen libcuda.so.1")` on the first call (then
`RuntimeError('Function "cuInit" not found')`), 12.9 and 13.x return cudaErrorInsufficientDriver (too old a
driver, or none) or cudaErrorNoDevice. All of these become one-line `DependencyMissing` errors.

cuda-python is imported lazily, so importing this module costs nothing without a GPU.
Tested against the fake cuda-python in tests/fakes (and its rules checked against cuda-bindings 12.6.2,
12.9.10 and 13.5.0 without a GPU).
"""

from __future__ import annotations

import ctypes
import importlib
from types import ModuleType
from typing import Any

import numpy as np

from fwrd.errors import DependencyMissing, FwrdError

INSTALL_HINT = "pip install fwrd[gpu] on a machine with an NVIDIA GPU"
# cudaErrorStubLibrary, cudaErrorInsufficientDriver, cudaErrorNoDevice: no usable driver or GPU here.
NO_DRIVER_CODES = {34, 35, 100}


class CudaError(FwrdError):
    """A CUDA runtime call failed (out of memory, invalid value, lost device, ...)."""

    def __init__(self, code: int, name: str, call: str = "") -> None:
        self.code = code
        self.name = name
        where = f" in {call}" if call else ""
        super().__init__(f"CUDA error {name} ({code}){where}")


def load_cudart() -> ModuleType:
    """Import the CUDA runtime bindings of cuda-python, new layout first, or say how to get them."""
    errors = []
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError as exc:  # also covers a broken install whose shared libraries are missing
            errors.append(str(exc))
    raise DependencyMissing(f"cuda-python is not installed ({errors[0]}): {INSTALL_HINT}")


def _error_name(cudart: ModuleType | None, err: Any) -> str:
    if cudart is not None and hasattr(cudart, "cudaGetErrorName"):
        try:
            _, name = cudart.cudaGetErrorName(err)
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # the name is only decoration for the message
            pass
    return getattr(err, "name", None) or str(err)


def cuda_call(result: tuple, call: str = "", cudart: ModuleType | None = None) -> Any:
    """Check a cuda-python result tuple: raise `CudaError` on failure (`DependencyMissing` when the
    error says there is no usable driver or GPU), else return the payload.

    `(err,)` -> None, `(err, x)` -> x, `(err, x, y)` -> (x, y).
    """
    if not isinstance(result, tuple) or not result:
        raise TypeError(f"expected a cuda-python result tuple, got {result!r}")
    err, *values = result
    code = int(getattr(err, "value", err))
    if code in NO_DRIVER_CODES:
        where = f" in {call}" if call else ""
        raise DependencyMissing(f"no usable NVIDIA GPU ({_error_name(cudart, err)}{where}): {INSTALL_HINT}")
    if code != 0:
        raise CudaError(code, _error_name(cudart, err), call)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def invoke(cudart: ModuleType, call: str, *args: Any) -> Any:
    """`cudart.<call>(*args)`, checked by `cuda_call`; cuda-bindings 12.6's RuntimeError for a driver it
    cannot load becomes `DependencyMissing`."""
    try:
        result = getattr(cudart, call)(*args)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DependencyMissing(f"no usable NVIDIA GPU ({first} in {call}): {INSTALL_HINT}") from None
    return cuda_call(result, call, cudart)


def device_properties(device: int | None = None) -> dict[str, Any]:
    """Index, name and compute capability ("9.0") of the current (or given) GPU.

    No driver or no GPU becomes `DependencyMissing`: that is what a CPU-only machine looks like
    (cuda-python imports there and returns cudaErrorInsufficientDriver / cudaErrorNoDevice).
    """
    cudart = load_cudart()
    try:
        if device is None:
            device = int(invoke(cudart, "cudaGetDevice"))
        props = invoke(cudart, "cudaGetDeviceProperties", device)
    except CudaError as exc:
        raise DependencyMissing(f"no usable NVIDIA GPU ({exc.name}): {INSTALL_HINT}") from None
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return {
        "index": int(device),
        "name": str(name).strip("\0 "),
        "compute_capability": f"{int(props.major)}.{int(props.minor)}",
    }


class _CudaResource:
    """Owns one CUDA handle; `free()` releases it once, and `with` frees it on exit."""

    _free_call = ""

    def __init__(self) -> None:
        self._cudart = load_cudart()
        self._handle: Any = None

    @property
    def closed(self) -> bool:
        return self._handle is None

    def free(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        invoke(self._cudart, self._free_call, handle)

    def _check_open(self) -> None:
        if self._handle is None:
            raise ValueError(f"{type(self).__name__} has been freed")

    def __enter__(self) -> "_CudaResource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


class PinnedHostBuffer(_CudaResource):
    """Page-locked host memory (cudaMallocHost): the only host memory copies can overlap compute from.

    `array` is a uint8 numpy view of it and `view(dtype, shape)` a typed one; views must not be used
    after `free()`.
    """

    _free_call = "cudaFreeHost"

    def __init__(self, nbytes: int) -> None:
        super().__init__()
        if nbytes <= 0:
            raise ValueError(f"buffer size must be positive, got {nbytes}")
        self.nbytes = int(nbytes)
        self._handle = int(invoke(self._cudart, "cudaMallocHost", self.nbytes))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self._handle)
        self._array: np.ndarray | None = np.frombuffer(raw, dtype=np.uint8)

    @property
    def ptr(self) -> int:
        self._check_open()
        return self._handle

    @property
    def array(self) -> np.ndarray:
        self._check_open()
        assert self._array is not None
        return self._array

    def view(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A typed view of the first bytes of the buffer."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > self.nbytes:
            raise ValueError(f"{shape} {dtype} does not fit in {self.nbytes} bytes")
        return self.array[: count * dtype.itemsize].view(dtype).reshape(shape)

    def free(self) -> None:
        self._array = None
        super().free()


class DeviceBuffer(_CudaResource):
    """Global memory on the current GPU (cudaMalloc)."""

    _free_call = "cudaFree"

    def __init__(self, nbytes: int) -> None:
        super().__init__()
        if nbytes <= 0:
            raise ValueError(f"buffer size must be positive, got {nbytes}")
        self.nbytes = int(nbytes)
        self._handle = int(invoke(self._cudart, "cudaMalloc", self.nbytes))

    @property
    def ptr(self) -> int:
        self._check_open()
        return self._handle


class CudaStream(_CudaResource):
    """A non-default stream (cudaStreamCreate): work on it overlaps work on other streams."""

    _free_call = "cudaStreamDestroy"

    def __init__(self) -> None:
        super().__init__()
        self._handle = invoke(self._cudart, "cudaStreamCreate")

    @property
    def stream(self) -> Any:
        """The cuda-python stream object, for cudart calls."""
        self._check_open()
        return self._handle

    @property
    def handle(self) -> int:
        """The raw `cudaStream_t` value as an integer, for TensorRT's `execute_async_v3(stream_handle: int)`.

        `int(stream)` is the handle; `stream.getPtr()` is the address where cuda-python stores it, which
        TensorRT would take for a stream and fail (or worse) on.
        """
        self._check_open()
        return int(self._handle)

    def synchronize(self) -> None:
        """Wait for everything queued on this stream."""
        invoke(self._cudart, "cudaStreamSynchronize", self.stream)


def _memcpy_async(dst: int, src: int, nbytes: int, kind_name: str, stream: CudaStream) -> None:
    cudart = stream._cudart
    invoke(cudart, "cudaMemcpyAsync", dst, src, nbytes, getattr(cudart.cudaMemcpyKind, kind_name), stream.stream)


def copy_to_device(dst: DeviceBuffer, src: PinnedHostBuffer, nbytes: int, stream: CudaStream) -> None:
    """Queue a host-to-device copy of the first `nbytes` on `stream` (returns before it is done)."""
    if nbytes > min(dst.nbytes, src.nbytes) or nbytes < 0:
        raise ValueError(f"cannot copy {nbytes} bytes between buffers of {src.nbytes} and {dst.nbytes}")
    _memcpy_async(dst.ptr, src.ptr, nbytes, "cudaMemcpyHostToDevice", stream)


def copy_to_host(dst: PinnedHostBuffer, src: DeviceBuffer, nbytes: int, stream: CudaStream) -> None:
    """Queue a device-to-host copy of the first `nbytes` on `stream`; read `dst` after synchronize."""
    if nbytes > min(dst.nbytes, src.nbytes) or nbytes < 0:
        raise ValueError(f"cannot copy {nbytes} bytes between buffers of {src.nbytes} and {dst.nbytes}")
    _memcpy_async(dst.ptr, src.ptr, nbytes, "cudaMemcpyDeviceToHost", stream)
