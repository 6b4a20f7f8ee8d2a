"""A stand-in TensorRT module whose engine runs the fused scorer with PyTorch, for the GPU kit.

TensorRT cannot be installed on the project's GPU machine, but fwrd's TensorRT backend
(`fwrd/runtime/backends/tensorrt.py`) is mostly CUDA plumbing: pinned host buffers, device buffers,
non-default streams, two batches in flight. This module lets that plumbing run on a real GPU with the real
cuda-python: `Runtime.deserialize_cuda_engine` returns an engine that implements the calls the backend
makes (the TensorRT 10/11 names and signatures: `num_io_tensors`, `get_tensor_name/mode/dtype/shape`,
`get_tensor_profile_shape`, `create_execution_context`, `set_tensor_address`, `set_input_shape`,
`get_tensor_shape`, `execute_async_v3(stream_handle: int)`), and whose `execute_async_v3` runs
`FusedScorer` on the given CUDA stream, reading and writing the device pointers the backend bound.
What it proves: the backend's buffers, copies, streams and ordering give the right numbers on a GPU.
What it does not: anything about TensorRT itself (parsing, building, its kernels).
"""

from __future__ import annotations

import enum
import types
from typing import Any

import torch

from fwrd.config import INPUT_NAME, OUTPUT_AMAP, OUTPUT_SCORE


class _DeviceArray:
    """`__cuda_array_interface__` (v2: no stream, so PyTorch adds no synchronisation) over a raw pointer."""

    def __init__(self, pointer: int, shape: tuple[int, ...], typestr: str) -> None:
        self.__cuda_array_interface__ = {"shape": tuple(int(v) for v in shape), "typestr": typestr,
                                         "data": (int(pointer), False), "version": 2, "strides": None}


def device_tensor(pointer: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A PyTorch view of device memory that cuda-python allocated (no copy, no ownership)."""
    typestr = {torch.uint8: "|u1", torch.float32: "<f4"}[dtype]
    try:
        return torch.as_tensor(_DeviceArray(pointer, shape, typestr), device="cuda")
    except (TypeError, RuntimeError, ValueError):  # a PyTorch without __cuda_array_interface__ import: CuPy
        import cupy

        size = int(torch.tensor(shape).prod()) * torch.empty((), dtype=dtype).element_size()
        memory = cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(int(pointer), size, None), 0)
        array = cupy.ndarray(tuple(shape), dtype={torch.uint8: "uint8", torch.float32: "float32"}[dtype],
                             memptr=memory)
        return torch.from_dlpack(array)


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity

    def __init__(self) -> None:
        pass

    def log(self, severity: Any, msg: str) -> None:  # pragma: no cover - overridden by the backend
        pass


class Logger(ILogger):
    def __init__(self, min_severity: Any = _Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity


class StandInContext:
    """An execution context: bound addresses and the current input shape, run on a caller's stream."""

    def __init__(self, engine: "StandInEngine") -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.rows = engine.max_batch

    def set_tensor_address(self, name: str, pointer: int) -> bool:
        if name not in self.engine.names or not isinstance(pointer, int) or pointer == 0:
            return False
        self.addresses[name] = pointer
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(v) for v in shape)
        t = self.engine.tile
        if name != INPUT_NAME or shape[1:] != (t, t, 3) or not 1 <= shape[0] <= self.engine.max_batch:
            return False
        self.rows = shape[0]
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        a = self.engine.tile // 4
        return {INPUT_NAME: (self.rows, self.engine.tile, self.engine.tile, 3), OUTPUT_SCORE: (self.rows,),
                OUTPUT_AMAP: (self.rows, a, a)}[name]

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Queue the scorer on `stream_handle` (an int, as TensorRT's binding takes it) and return at once."""
        if not isinstance(stream_handle, int) or set(self.addresses) != set(self.engine.names):
            return False
        n, t, a = self.rows, self.engine.tile, self.engine.tile // 4
        stream = torch.cuda.ExternalStream(stream_handle)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode(), torch.cuda.stream(stream):
            start.record(stream)
            tiles = device_tensor(self.addresses[INPUT_NAME], (n, t, t, 3), torch.uint8)
            score, amap = self.engine.scorer(tiles)[:2]  # a tile-only engine: the per-scale maps are not bound
            device_tensor(self.addresses[OUTPUT_SCORE], (n,), torch.float32).copy_(score)
            device_tensor(self.addresses[OUTPUT_AMAP], (n, a, a), torch.float32).copy_(amap)
            end.record(stream)
        self.engine.launches.append((stream_handle, start, end))
        return True


class StandInEngine:
    """The engine interface of fwrd's plans: tiles uint8 [-1, T, T, 3] -> score, amap float32."""

    def __init__(self, scorer: torch.nn.Module, tile: int, max_batch: int) -> None:
        self.scorer, self.tile, self.max_batch = scorer, tile, max_batch
        self.names = (INPUT_NAME, OUTPUT_SCORE, OUTPUT_AMAP)
        self.contexts: list[StandInContext] = []
        self.launches: list[tuple[int, torch.cuda.Event, torch.cuda.Event]] = []  # (stream, start, end), in order

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == INPUT_NAME else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.UINT8 if name == INPUT_NAME else DataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        a = self.tile // 4
        return {INPUT_NAME: (-1, self.tile, self.tile, 3), OUTPUT_SCORE: (-1,), OUTPUT_AMAP: (-1, a, a)}[name]

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        t = self.tile
        return (1, t, t, 3), (self.max_batch, t, t, 3), (self.max_batch, t, t, 3)

    def create_execution_context(self) -> StandInContext:
        context = StandInContext(self)
        self.contexts.append(context)
        return context


def make_module(engine: StandInEngine, version: str = "10.13.3") -> types.ModuleType:
    """A `tensorrt`-shaped module whose Runtime hands out `engine` for any plan bytes."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes) -> StandInEngine:
            return engine

    trt.Runtime = Runtime
    trt.ILogger, trt.Logger = ILogger, Logger
    trt.TensorIOMode, trt.DataType = TensorIOMode, DataType
    return trt
