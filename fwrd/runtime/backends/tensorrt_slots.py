"""One TensorRT pass in flight: pinned host and device buffers, an execution context and a CUDA stream.

A slot is made for one optimisation profile and the largest input it will take: tile slots take
batches [B, T, T, 3] on profile 0, region slots one region [1, side, side, 3] on the engine's region
profile (dense scoring). Its buffers are sized from the output shapes TensorRT reports for that largest
input, so every output of the engine is bound (enqueueV3 needs an address for each I/O tensor), and a
smaller input reads back only the shapes TensorRT reports for it.

The context is created with `ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE` when the engine has
more than one profile: the default (STATIC) sizes every context's activation memory for the largest of
all profiles (NvInferRuntime.h v10.8.0 l.2976-2981: "kSTATIC ... maximum size across all profiles";
python/src/infer/pyCore.cpp v10.0.0 l.1169-1171: `create_execution_context(strategy=...)`), so a tile
context would hold a whole region's worth. A region context selects its profile with
`set_optimization_profile_async(index, stream)` before any input shape is set (NvInferRuntime.h v10.8.0
l.4327-4365; pyCore.cpp v10.0.0 l.340-346 raises RuntimeError when it fails).

Tested against the fakes in tests/fakes only, not on a real GPU or TensorRT.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from fwrd.config import INPUT_NAME
from fwrd.errors import ModelError
from fwrd.runtime.cuda_memory import (
    CudaError,
    CudaStream,
    DeviceBuffer,
    PinnedHostBuffer,
    copy_to_device,
    copy_to_host,
)

FLOAT_BYTES = 4


class Slot:
    """One pass in flight on `profile`: input [rows, height, width, 3] at most, every output bound."""

    def __init__(self, trt: Any, engine: Any, outputs: list[str], *, profile: int, rows: int, height: int,
                 width: int, min_rows: int = 1) -> None:
        self.rows, self.height, self.width, self.min_rows = rows, height, width, min_rows
        self.profile = profile
        self.names = list(outputs)
        self.count = 0
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._owned: list[Any] = []
        try:
            self.context = _create_context(trt, engine)
            self.stream = self._own(CudaStream())
            if profile:
                try:
                    engine_ok = self.context.set_optimization_profile_async(profile, self.stream.handle)
                except RuntimeError as exc:
                    raise ModelError(f"TensorRT could not select optimisation profile {profile} ({exc})") from None
                if not engine_ok:
                    raise ModelError(f"TensorRT could not select optimisation profile {profile}")
                self.stream.synchronize()
            in_bytes = rows * height * width * 3
            self.host_in = self._own(PinnedHostBuffer(in_bytes))
            self.dev_in = self._own(DeviceBuffer(in_bytes))
            self.pixels = self.host_in.view(np.uint8, (rows, height, width, 3))
            self._set_input((rows, height, width, 3))
            self.max_shapes = {name: tuple(int(d) for d in self.context.get_tensor_shape(name)) for name in outputs}
            self.host_out, self.dev_out = {}, {}
            for name, shape in self.max_shapes.items():
                if min(shape, default=1) < 0:
                    raise ModelError(f"TensorRT reports no size for output {name!r} ({shape})")
                size = int(np.prod(shape)) * FLOAT_BYTES
                self.host_out[name] = self._own(PinnedHostBuffer(size))
                self.dev_out[name] = self._own(DeviceBuffer(size))
            for name, buf in ((INPUT_NAME, self.dev_in), *self.dev_out.items()):
                if not self.context.set_tensor_address(name, buf.ptr):
                    raise ModelError(f"TensorRT refused the address of tensor {name!r}")
        except BaseException:
            with contextlib.suppress(CudaError):  # keep the original error
                self.free()
            raise

    def _own(self, resource: Any) -> Any:
        self._owned.append(resource)
        return resource

    def _set_input(self, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(INPUT_NAME, shape):
            raise ModelError(f"the TensorRT engine refused input shape {shape} (profile {self.profile})")

    def _set_batch(self, rows: int) -> None:
        self._set_input((rows, self.height, self.width, 3))

    def submit(self, pixels: np.ndarray) -> None:
        """Copy [n, h, w, 3] into pinned memory and queue copy-in, inference and copy-out on the stream."""
        n, h, w = pixels.shape[:3]
        self.count = 0
        if n == 0:
            return
        rows = max(n, self.min_rows)  # a partial batch below the profile minimum is zero-padded
        staged = self.host_in.view(np.uint8, (rows, h, w, 3))
        staged[:n] = pixels
        if rows > n:
            staged[n:rows] = 0
        self._set_input((rows, h, w, 3))
        self._shapes = {name: tuple(int(d) for d in self.context.get_tensor_shape(name)) for name in self.names}
        try:
            copy_to_device(self.dev_in, self.host_in, rows * h * w * 3, self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise ModelError("TensorRT could not enqueue the batch")
            for name, shape in self._shapes.items():
                copy_to_host(self.host_out[name], self.dev_out[name], int(np.prod(shape)) * FLOAT_BYTES, self.stream)
        except BaseException:
            self.drain()  # leave nothing queued that still reads or writes this slot's buffers
            raise
        self.count = n

    def collect(self) -> dict[str, np.ndarray]:
        """Wait for this slot's pass and return copies of its outputs, first `count` rows (buffers get reused)."""
        n, self.count = self.count, 0
        if n:
            self.stream.synchronize()
        shapes = self._shapes if n else {name: (0, *shape[1:]) for name, shape in self.max_shapes.items()}
        return {name: self.host_out[name].view(np.float32, shape)[:n].copy() for name, shape in shapes.items()}

    def drain(self) -> None:
        """Wait for queued work without reading it (a consumer stopped early)."""
        self.count = 0
        try:
            self.stream.synchronize()
        except (CudaError, ValueError):
            pass

    def free(self) -> None:
        """Wait for queued work, then release the context and every buffer (safe twice)."""
        if self._owned and not self._owned[0].closed:
            self.drain()
        self.context = None
        self.pixels = None  # type: ignore[assignment]
        errors = []
        while self._owned:
            try:
                self._owned.pop().free()
            except CudaError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def _create_context(trt: Any, engine: Any) -> Any:
    strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
    if strategy is not None and engine.num_optimization_profiles > 1:
        context = engine.create_execution_context(strategy.ON_PROFILE_CHANGE)
    else:
        context = engine.create_execution_context()
    if context is None:
        raise ModelError("TensorRT could not create an execution context (out of GPU memory?)")
    return context
