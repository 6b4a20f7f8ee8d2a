"""TensorRT backend: a serialised engine (`rd.plan`) run torch-free with two batches in flight.

A plan only runs on the TensorRT version and GPU compute capability that built it (what TensorRT's own
deserialiser checks), so `fwrd-export --engine` writes `rd.plan.json` beside it (TensorRT version, GPU
name and compute capability, ONNX and plan sha256, batch range, precision, the engine's accuracy gate,
fwrd config). `from_plan` reads that manifest and refuses a plan built by another TensorRT or for another
compute capability, for a batch size outside its range, or modified since, before deserialising anything
(never deserialise a plan you cannot vouch for); a plan from another GPU model of the same compute
capability loads with a note in `backend.notes`, as TensorRT itself only warns then.
`plan_matches_device` lets the runtime decide between rebuilding and refusing.

TensorRT keeps one logger per process while any builder or runtime lives (a second one passed to
`trt.Builder`/`trt.Runtime` is ignored), so every builder and runtime here shares `process_logger(trt)`.

Execution uses only the TensorRT 10/11 API (`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`,
`set_input_shape`, `set_tensor_address`, `execute_async_v3`) and cuda-python. Two slots, each with
pinned host buffers, device buffers, its own execution context and its own non-default stream, let
`run_batches` copy batch k+1 in while batch k computes:

    with TensorRTBackend.from_plan("rd.plan", batch_size=32) as backend:
        for tag, score, amap in backend.run_batches(batches):
            ...

This code has been tested against the fakes in tests/fakes only, not on a real GPU or TensorRT.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fwrd.config import INPUT_NAME, OUTPUT_AMAP, OUTPUT_SCORE, FWRDConfig
from fwrd.errors import DependencyMissing, FwrdError, InputNotFound, ModelError
from fwrd.runtime.backends.base import Backend, check_tiles
from fwrd.runtime.cuda_memory import (
    INSTALL_HINT,
    CudaError,
    CudaStream,
    DeviceBuffer,
    PinnedHostBuffer,
    copy_to_device,
    copy_to_host,
    device_properties,
)

MANIFEST_FORMAT = "fwrd-tensorrt-plan-v1"
MIN_TENSORRT_MAJOR = 10
SLOTS = 2  # batches in flight: one copying in/out while the other computes
REBUILD_HINT = "rebuild it here with fwrd-export --engine"


def load_tensorrt() -> ModuleType:
    """Import TensorRT (>= 10) lazily, or raise `DependencyMissing` saying how to get it."""
    try:
        trt = importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libnvinfer is not
        raise DependencyMissing(f"TensorRT is not installed ({exc}): {INSTALL_HINT}") from None
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT_MAJOR:
        raise DependencyMissing(f"TensorRT {version} is too old, fwrd needs TensorRT 10 or newer: {INSTALL_HINT}")
    return trt


_PROCESS_LOGGERS: dict[int, Any] = {}  # id(tensorrt module) -> its logger; one module per process in use


def process_logger(trt: ModuleType) -> Any:
    """The one TensorRT logger of this process: keeps error messages and passes warnings to the sink
    routed in with `logger.routed(sink)`.

    TensorRT keeps a single logger pointer while any builder, runtime or refitter lives and ignores a
    different one passed later ("The logger passed into createInferRuntime differs from one already
    provided ..."), so a second logger would never see the errors it is asked about.
    """
    logger = _PROCESS_LOGGERS.get(id(trt))
    if logger is None or logger.trt is not trt:
        logger = _make_logger(trt)
        _PROCESS_LOGGERS[id(trt)] = logger
    return logger


def _make_logger(trt: ModuleType) -> Any:
    severity = trt.ILogger.Severity

    class _Logger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.trt = trt
            self.errors: deque[tuple[int, str]] = deque(maxlen=100)
            self.count = 0  # messages seen so far: `mark()` for "errors since"
            self._sinks: list[Callable[[str], Any]] = []

        def log(self, level: Any, msg: str) -> None:
            self.count += 1
            if int(level) <= int(severity.ERROR):
                self.errors.append((self.count, " ".join(str(msg).split())))
            if self._sinks and int(level) <= int(severity.WARNING):
                try:
                    self._sinks[-1](f"TensorRT {getattr(level, 'name', level)}: {msg}".rstrip())
                except Exception:  # never let a print failure unwind into TensorRT's C++ frames
                    pass

        def mark(self) -> int:
            return self.count

        def last_error(self, default: str, since: int = 0) -> str:
            recent = [text for n, text in self.errors if n > since]
            return recent[-1] if recent else default

        @contextlib.contextmanager
        def routed(self, sink: Callable[[str], Any]) -> Iterator[None]:
            """Send warnings and errors to `sink` while the block runs."""
            self._sinks.append(sink)
            try:
                yield
            finally:
                self._sinks.remove(sink)

    return _Logger()


def manifest_path(plan_path: str | Path) -> Path:
    """`rd.plan` -> `rd.plan.json`."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + ".json")


def read_manifest(plan_path: str | Path) -> dict[str, Any]:
    """The JSON manifest beside a plan, checked for the keys the runtime relies on."""
    path = manifest_path(plan_path)
    if not path.is_file():
        raise ModelError(f"{Path(plan_path).name} has no manifest {path.name} beside it: {REBUILD_HINT}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path.name} is not valid JSON ({exc}): {REBUILD_HINT}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelError(f"{path.name} is not an fwrd TensorRT plan manifest: {REBUILD_HINT}")
    missing = [k for k in ("tensorrt_version", "gpu", "profile", "precision", "config", "plan_sha256")
               if k not in manifest]
    if missing:
        raise ModelError(f"{path.name} lacks {', '.join(missing)}: {REBUILD_HINT}")
    return manifest


def _mismatch(manifest: dict[str, Any], trt_version: str, gpu: dict[str, Any]) -> tuple[str, str]:
    """(reason, note): a reason when this TensorRT or this GPU's compute capability cannot run the plan;
    else a note when only the GPU model differs (TensorRT loads such a plan and warns)."""
    built_gpu = manifest.get("gpu") or {}
    built = f"{built_gpu.get('name', '?')} (compute capability {built_gpu.get('compute_capability', '?')})"
    here = f"{gpu['name']} (compute capability {gpu['compute_capability']})"
    same_cc = built_gpu.get("compute_capability") == gpu["compute_capability"]
    same_trt = manifest.get("tensorrt_version") == trt_version
    if not (same_cc and same_trt):
        return (f"plan built for {built} with TensorRT {manifest.get('tensorrt_version', '?')}; "
                f"this machine has {here} with TensorRT {trt_version}"), ""
    if built_gpu.get("name") != gpu["name"]:
        return "", (f"plan built on {built}, running on {here}: same compute capability, so TensorRT loads it, "
                    f"but its tactics were timed on the other GPU ({REBUILD_HINT} for full speed)")
    return "", ""


def plan_matches_device(manifest: dict[str, Any]) -> tuple[bool, str]:
    """Whether this machine's TensorRT and GPU can run the plan; the reason when not.

    The runtime rebuilds from the ONNX model when it has one and (False, reason) comes back, and
    refuses otherwise. A missing TensorRT or GPU is also (False, reason).
    """
    try:
        trt = load_tensorrt()
        gpu = device_properties()
    except DependencyMissing as exc:
        return False, str(exc)
    reason, _ = _mismatch(manifest, str(trt.__version__), gpu)
    return not reason, reason


def tensorrt_status() -> tuple[bool, str]:
    """(True, "TensorRT 10.13.0 on NVIDIA H100 ...") when engines can run here, else (False, why)."""
    try:
        trt = load_tensorrt()
        gpu = device_properties()
    except DependencyMissing as exc:
        return False, str(exc)
    except Exception as exc:  # a broken driver must not crash `--backend auto`
        return False, f"TensorRT unusable: {' '.join(str(exc).split())}"
    return True, (f"TensorRT {trt.__version__} on {gpu['name']} "
                  f"(compute capability {gpu['compute_capability']})")


def _batch_range(manifest: dict[str, Any]) -> tuple[int, int]:
    try:
        return int(manifest["profile"]["min"][0]), int(manifest["profile"]["max"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        raise ModelError(f"the plan manifest has no valid batch range: {REBUILD_HINT}") from None


class _Slot:
    """One batch in flight: pinned input/outputs, device input/outputs, a context and a stream."""

    def __init__(self, engine: Any, batch_size: int, tile_size: int, min_batch: int) -> None:
        self.batch_size, self.tile_size, self.min_batch = batch_size, tile_size, min_batch
        self.amap_side = tile_size // 4
        self.count = 0
        self._owned: list[Any] = []
        try:
            self.context = engine.create_execution_context()
            if self.context is None:
                raise ModelError("TensorRT could not create an execution context (out of GPU memory?)")
            self.stream = self._own(CudaStream())
            tile_bytes = tile_size * tile_size * 3
            amap_bytes = self.amap_side * self.amap_side * 4
            self.host_in = self._own(PinnedHostBuffer(batch_size * tile_bytes))
            self.dev_in = self._own(DeviceBuffer(batch_size * tile_bytes))
            self.host_score = self._own(PinnedHostBuffer(batch_size * 4))
            self.dev_score = self._own(DeviceBuffer(batch_size * 4))
            self.host_amap = self._own(PinnedHostBuffer(batch_size * amap_bytes))
            self.dev_amap = self._own(DeviceBuffer(batch_size * amap_bytes))
            self.tiles = self.host_in.view(np.uint8, (batch_size, tile_size, tile_size, 3))
            self.score = self.host_score.view(np.float32, (batch_size,))
            self.amap = self.host_amap.view(np.float32, (batch_size, self.amap_side, self.amap_side))
            for name, buf in ((INPUT_NAME, self.dev_in), (OUTPUT_SCORE, self.dev_score),
                              (OUTPUT_AMAP, self.dev_amap)):
                if not self.context.set_tensor_address(name, buf.ptr):
                    raise ModelError(f"TensorRT refused the address of tensor {name!r}")
            self._check_output_shapes()
        except BaseException:
            with contextlib.suppress(CudaError):  # keep the original error
                self.free()
            raise

    def _own(self, resource: Any) -> Any:
        self._owned.append(resource)
        return resource

    def _set_batch(self, rows: int) -> None:
        shape = (rows, self.tile_size, self.tile_size, 3)
        if not self.context.set_input_shape(INPUT_NAME, shape):
            raise ModelError(f"the TensorRT engine refused input shape {shape}")

    def _check_output_shapes(self) -> None:
        self._set_batch(self.batch_size)
        a, b = self.batch_size, self.amap_side
        got = {name: tuple(self.context.get_tensor_shape(name)) for name in (OUTPUT_SCORE, OUTPUT_AMAP)}
        if got != {OUTPUT_SCORE: (a,), OUTPUT_AMAP: (a, b, b)}:
            raise ModelError(f"the TensorRT engine's outputs are {got}, "
                             f"expected score ({a},) and amap ({a}, {b}, {b})")

    def submit(self, tiles: np.ndarray) -> None:
        """Copy a batch into pinned memory and queue copy-in, inference and copy-out on the stream."""
        n = len(tiles)
        self.count = 0
        if n == 0:
            return
        rows = max(n, self.min_batch)  # a partial batch below the profile minimum is zero-padded
        self.tiles[:n] = tiles
        if rows > n:
            self.tiles[n:rows] = 0
        self._set_batch(rows)
        tile_bytes = self.tile_size * self.tile_size * 3
        try:
            copy_to_device(self.dev_in, self.host_in, rows * tile_bytes, self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise ModelError("TensorRT could not enqueue the batch")
            copy_to_host(self.host_score, self.dev_score, rows * 4, self.stream)
            copy_to_host(self.host_amap, self.dev_amap, rows * self.amap_side**2 * 4, self.stream)
        except BaseException:
            self.drain()  # leave nothing queued that still reads or writes this slot's buffers
            raise
        self.count = n

    def collect(self) -> tuple[np.ndarray, np.ndarray]:
        """Wait for this slot's batch and return copies of its results (the buffers get reused)."""
        n, self.count = self.count, 0
        if n:
            self.stream.synchronize()
        return self.score[:n].copy(), self.amap[:n].copy()

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
        self.tiles = self.score = self.amap = None  # type: ignore[assignment]
        errors = []
        while self._owned:
            try:
                self._owned.pop().free()
            except CudaError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


class TensorRTBackend(Backend):
    """A TensorRT engine on one GPU: uint8 tiles -> (score, amap), two batches in flight.

    Not thread-safe: one consumer drives `infer` or `run_batches` at a time.
    Tested against the fake TensorRT/cuda-python in tests/fakes only, not on real hardware.
    """

    name = "tensorrt"

    def __init__(self, trt: ModuleType, plan: bytes, manifest: dict[str, Any], config: FWRDConfig,
                 batch_size: int, gpu: dict[str, Any]) -> None:
        super().__init__(config, dict(manifest.get("onnx_metadata") or {}), str(manifest["precision"]))
        self.manifest = manifest
        self.batch_size = int(batch_size)
        self.device = f"cuda:{gpu['index']} ({gpu['name']})"
        self.tensorrt_version = str(trt.__version__)
        self._min_batch, _ = _batch_range(manifest)
        self._slots: list[_Slot] = []
        self._streaming = False  # a run_batches generator holds the slots
        self._logger = process_logger(trt)
        mark = self._logger.mark()
        warnings: list[str] = []
        with self._logger.routed(warnings.append):
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ModelError(f"TensorRT could not load the plan: {self._logger.last_error('unknown error', mark)}")
        self.notes.extend(w for w in warnings if "WARNING" in w)
        try:
            self._check_engine(trt)
            self._slots = [_Slot(self._engine, self.batch_size, config.tile_size, self._min_batch)
                           for _ in range(SLOTS)]
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_plan(cls, path: str | Path, batch_size: int) -> "TensorRTBackend":
        """Load `path` after checking its manifest against this machine and `batch_size`."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"TensorRT plan not found: {path}")
        manifest = read_manifest(path)
        try:
            config = FWRDConfig.from_dict(manifest["config"])
        except (FwrdError, TypeError) as exc:
            raise ModelError(f"{manifest_path(path).name} holds no valid fwrd config ({exc})") from None
        low, high = _batch_range(manifest)
        if not low <= batch_size <= high:
            raise ModelError(f"{path.name} was built for batches of {low} to {high} tiles, not {batch_size}: "
                             f"use --batch-size {high} or rebuild with --max-batch {batch_size}")
        trt = load_tensorrt()
        gpu = device_properties()
        reason, note = _mismatch(manifest, str(trt.__version__), gpu)
        if reason:
            raise ModelError(f"{path.name}: {reason}: {REBUILD_HINT}")
        plan = path.read_bytes()
        if hashlib.sha256(plan).hexdigest() != manifest["plan_sha256"]:
            raise ModelError(f"{path.name} does not match the sha256 in its manifest (changed since it was "
                             f"built): {REBUILD_HINT}")
        backend = cls(trt, plan, manifest, config, batch_size, gpu)
        if note:
            backend.notes.append(f"{path.name}: {note}")
        return backend

    def _check_engine(self, trt: ModuleType) -> None:
        """The engine must have exactly fwrd's I/O; its profile must cover our batch size."""
        engine = self._engine
        tensors = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            tensors[name] = (engine.get_tensor_mode(name), engine.get_tensor_dtype(name),
                             tuple(engine.get_tensor_shape(name)))
        t = self.config.tile_size
        expected = {
            INPUT_NAME: (trt.TensorIOMode.INPUT, trt.DataType.UINT8, (-1, t, t, 3)),
            OUTPUT_SCORE: (trt.TensorIOMode.OUTPUT, trt.DataType.FLOAT, None),
            OUTPUT_AMAP: (trt.TensorIOMode.OUTPUT, trt.DataType.FLOAT, None),
        }
        if set(tensors) != set(expected) or any(
            tensors[n][:2] != e[:2] or (e[2] is not None and tensors[n][2] != e[2]) for n, e in expected.items()
        ):
            found = ", ".join(f"{n} {getattr(d, 'name', d)} {s}" for n, (_, d, s) in tensors.items())
            raise ModelError(f"the TensorRT engine's tensors are not fwrd's ({found}): {REBUILD_HINT}")
        low, _, high = (tuple(s) for s in engine.get_tensor_profile_shape(INPUT_NAME, 0))
        if not low[0] <= self.batch_size <= high[0]:
            raise ModelError(f"the engine takes batches of {low[0]} to {high[0]} tiles, not {self.batch_size}")

    @property
    def max_batch(self) -> int:
        return self.batch_size

    def _check(self, tiles: np.ndarray) -> np.ndarray:
        if not self._slots:
            raise ValueError("the TensorRT backend is closed")
        tiles = check_tiles(tiles, self.tile_size)
        if len(tiles) > self.batch_size:
            raise ValueError(f"a batch of {len(tiles)} tiles exceeds the backend's batch size {self.batch_size}")
        return tiles

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batch, synchronously; batches larger than the batch size run in chunks."""
        if not self._slots:
            raise ValueError("the TensorRT backend is closed")
        if self._streaming:
            raise ValueError("infer() called while run_batches() still has batches in flight")
        tiles = check_tiles(tiles, self.tile_size)
        slot = self._slots[0]
        scores, amaps = [], []
        for start in range(0, max(len(tiles), 1), self.batch_size):
            slot.submit(tiles[start:start + self.batch_size])
            score, amap = slot.collect()
            scores.append(score)
            amaps.append(amap)
        return np.concatenate(scores), np.concatenate(amaps)

    def run_batches(
        self, batches: Iterable[tuple[Any, np.ndarray]]
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """Yield (tag, score, amap) in input order while the next batch is already on the GPU.

        Each batch is copied into a slot's pinned buffer at once, so the producer may reuse its array.
        """
        if self._streaming:
            raise ValueError("run_batches() is already running on this backend")
        free = deque(self._slots)
        pending: deque[tuple[Any, _Slot]] = deque()
        self._streaming = True
        try:
            for tag, tiles in batches:
                tiles = self._check(tiles)
                if not free:  # both slots busy: finish the oldest batch while the other computes
                    done_tag, slot = pending.popleft()
                    score, amap = slot.collect()
                    free.append(slot)
                    yield done_tag, score, amap
                slot = free.popleft()
                slot.submit(tiles)
                pending.append((tag, slot))
            while pending:
                done_tag, slot = pending.popleft()
                score, amap = slot.collect()
                yield done_tag, score, amap
        finally:
            for _, slot in pending:  # stopped early or failed: leave no work queued on our buffers
                slot.drain()
            self._streaming = False

    def close(self) -> None:
        """Wait for queued work, free every buffer, stream and context, then the engine."""
        slots, self._slots = self._slots, []
        errors = []
        for slot in slots:
            try:
                slot.free()
            except CudaError as exc:
                errors.append(exc)
        self._engine = None
        self._runtime = None
        if errors:
            raise errors[0]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(tensorrt=self.tensorrt_version, batch_size=self.batch_size,
                    plan_precision=self.manifest.get("precision_mode"))
        return info
