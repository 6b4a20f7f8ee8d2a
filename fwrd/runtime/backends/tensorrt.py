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
`set_input_shape`, `set_tensor_address`, `execute_async_v3`, `set_optimization_profile_async`) and
cuda-python. Two slots (tensorrt_slots.py), each with pinned host buffers, device buffers, its own
execution context and its own non-default stream, let `run_batches` copy batch k+1 in while batch k
computes:

    with TensorRTBackend.from_plan("rd.plan", batch_size=32) as backend:
        for tag, score, amap in backend.run_batches(batches):
            ...

Engines built from a graph with dynamic height and width have a second profile for regions (batch 1,
one tile up to the side it was built for, `manifest["region_profile"]`); `from_plan(..., dense=True)`
makes its slots on that profile instead, for `run_regions` (dense scoring).

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

from fwrd.config import INPUT_NAME, OUTPUT_AMAP, OUTPUT_MAPS, OUTPUT_SCORE, FWRDConfig
from fwrd.errors import DependencyMissing, FwrdError, InputNotFound, ModelError
from fwrd.runtime.backends.base import Backend, RegionMaps, check_region, check_tiles, dense_unsupported
from fwrd.runtime.backends.tensorrt_slots import Slot
from fwrd.runtime.cuda_memory import INSTALL_HINT, CudaError, device_properties

MANIFEST_FORMAT = "fwrd-tensorrt-plan-v1"
MIN_TENSORRT_MAJOR = 10
SLOTS = 2  # batches in flight: one copying in/out while the other computes
REGION_PROFILE = 1  # the engine's optimisation profile for regions (profile 0: tile batches)
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


def region_range(manifest: dict[str, Any]) -> tuple[int, int] | None:
    """(smallest, largest) region side of the plan's region profile; None when it has none."""
    profile = manifest.get("region_profile")
    if not profile:
        return None
    try:
        return min(int(v) for v in profile["min"][1:3]), min(int(v) for v in profile["max"][1:3])
    except (KeyError, IndexError, TypeError, ValueError):
        raise ModelError(f"the plan manifest has no valid region profile: {REBUILD_HINT}") from None


def _region_side(path_name: str, manifest: dict[str, Any], region: int | None) -> int:
    """The region side a dense run uses with this plan: `region`, else the largest its profile takes."""
    problem = dense_unsupported(path_name, str(manifest.get("precision")), region_range(manifest) is not None)
    if problem:
        raise ModelError(problem.replace("export it again", "build it again from a new export"))
    low, high = region_range(manifest)  # type: ignore[misc]
    side = high if region is None else region
    if not low <= side <= high:
        raise ModelError(f"{path_name} takes regions of {low} to {high} px a side, not {side}: use --region {high} "
                         f"or rebuild it with fwrd-export --engine --region {side}")
    return side


class TensorRTBackend(Backend):
    """A TensorRT engine on one GPU: uint8 tiles -> (score, amap), two batches in flight; or, opened with
    `dense=True`, regions -> per-scale maps, two regions in flight.

    Not thread-safe: one consumer drives `infer`, `run_batches` or `run_regions` at a time.
    Tested against the fake TensorRT/cuda-python in tests/fakes only, not on real hardware.
    """

    name = "tensorrt"

    def __init__(self, trt: ModuleType, plan: bytes, manifest: dict[str, Any], config: FWRDConfig,
                 batch_size: int, gpu: dict[str, Any], dense: bool = False, region: int | None = None) -> None:
        super().__init__(config, dict(manifest.get("onnx_metadata") or {}), str(manifest["precision"]))
        self.manifest = manifest
        self.batch_size = int(batch_size)
        self.device = f"cuda:{gpu['index']} ({gpu['name']})"
        self.tensorrt_version = str(trt.__version__)
        self._min_batch, _ = _batch_range(manifest)
        if dense:
            self.region = _region_side("the plan", manifest, region)
            self.fixed_regions = True  # TensorRT tuned its kernels for the profile's largest region
        self._slots: list[Slot] = []
        self._streaming = False  # a run_batches / run_regions generator holds the slots
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
            outputs = self._check_engine(trt)
            t = config.tile_size
            if self.region is not None:
                self._slots = [Slot(trt, self._engine, outputs, profile=REGION_PROFILE, rows=1, height=self.region,
                                    width=self.region) for _ in range(SLOTS)]
            else:
                self._slots = [Slot(trt, self._engine, outputs, profile=0, rows=self.batch_size, height=t, width=t,
                                    min_rows=self._min_batch) for _ in range(SLOTS)]
                self._check_output_shapes(self._slots[0])
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_plan(cls, path: str | Path, batch_size: int, dense: bool = False,
                  region: int | None = None) -> "TensorRTBackend":
        """Load `path` after checking its manifest against this machine and `batch_size` (and, for dense
        scoring, the region side against its region profile)."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"TensorRT plan not found: {path}")
        manifest = read_manifest(path)
        try:
            config = FWRDConfig.from_dict(manifest["config"])
        except (FwrdError, TypeError) as exc:
            raise ModelError(f"{manifest_path(path).name} holds no valid fwrd config ({exc})") from None
        low, high = _batch_range(manifest)
        if dense:
            region = _region_side(path.name, manifest, region)
        elif not low <= batch_size <= high:
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
        backend = cls(trt, plan, manifest, config, batch_size, gpu, dense=dense, region=region)
        if note:
            backend.notes.append(f"{path.name}: {note}")
        return backend

    def _check_engine(self, trt: ModuleType) -> list[str]:
        """The engine must have exactly fwrd's I/O (tiles of the config's size, or any height and width
        with the per-scale maps); profile 0 must cover our batch size and, dense, profile 1 our regions.
        Returns the output names."""
        engine = self._engine
        tensors = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            tensors[name] = (engine.get_tensor_mode(name), engine.get_tensor_dtype(name),
                             tuple(engine.get_tensor_shape(name)))
        t = self.config.tile_size
        output = (trt.TensorIOMode.OUTPUT, trt.DataType.FLOAT, None)
        dynamic = tensors.get(INPUT_NAME, (None, None, ()))[2] == (-1, -1, -1, 3)
        expected = {INPUT_NAME: (trt.TensorIOMode.INPUT, trt.DataType.UINT8, (-1, -1, -1, 3) if dynamic else (-1, t, t, 3)),
                    OUTPUT_SCORE: output, OUTPUT_AMAP: output}
        if dynamic:
            expected.update({name: output for name in OUTPUT_MAPS})
        if set(tensors) != set(expected) or any(
            tensors[n][:2] != e[:2] or (e[2] is not None and tensors[n][2] != e[2]) for n, e in expected.items()
        ):
            found = ", ".join(f"{n} {getattr(d, 'name', d)} {s}" for n, (_, d, s) in tensors.items())
            raise ModelError(f"the TensorRT engine's tensors are not fwrd's ({found}): {REBUILD_HINT}")
        low, _, high = (tuple(s) for s in engine.get_tensor_profile_shape(INPUT_NAME, 0))
        if self.region is None and not low[0] <= self.batch_size <= high[0]:
            raise ModelError(f"the engine takes batches of {low[0]} to {high[0]} tiles, not {self.batch_size}")
        if self.region is not None:
            if not dynamic or engine.num_optimization_profiles <= REGION_PROFILE:
                raise ModelError(f"the TensorRT engine has no region profile: {REBUILD_HINT}")
            low, _, high = (tuple(s) for s in engine.get_tensor_profile_shape(INPUT_NAME, REGION_PROFILE))
            if not (low[1] <= self.region <= high[1] and low[2] <= self.region <= high[2]):
                raise ModelError(f"the engine's region profile takes {low[1:3]} to {high[1:3]} px, not {self.region}")
        return [n for n in tensors if n != INPUT_NAME]

    def _check_output_shapes(self, slot: Slot) -> None:
        a, b = self.batch_size, self.tile_size // 4
        got = {name: slot.max_shapes[name] for name in (OUTPUT_SCORE, OUTPUT_AMAP)}
        if got != {OUTPUT_SCORE: (a,), OUTPUT_AMAP: (a, b, b)}:
            raise ModelError(f"the TensorRT engine's outputs are {got}, "
                             f"expected score ({a},) and amap ({a}, {b}, {b})")

    @property
    def max_batch(self) -> int:
        return self.batch_size

    def _check(self, tiles: np.ndarray) -> np.ndarray:
        if not self._slots:
            raise ValueError("the TensorRT backend is closed")
        if self.region is not None:
            raise ValueError("this TensorRT backend was opened for regions (dense=True), not tile batches")
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
        results = list(self.run_batches((k, tiles[k:k + self.batch_size])
                                        for k in range(0, max(len(tiles), 1), self.batch_size)))
        return np.concatenate([r[1] for r in results]), np.concatenate([r[2] for r in results])

    def run_batches(
        self, batches: Iterable[tuple[Any, np.ndarray]]
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """Yield (tag, score, amap) in input order while the next batch is already on the GPU.

        Each batch is copied into a slot's pinned buffer at once, so the producer may reuse its array.
        """
        checked = ((tag, self._check(tiles)) for tag, tiles in batches)
        for tag, out in self._in_flight(checked):
            yield tag, out[OUTPUT_SCORE], out[OUTPUT_AMAP]

    def infer_region(self, region: np.ndarray) -> RegionMaps:
        return next(self.run_regions([(None, region)]))[1]

    def run_regions(self, regions: Iterable[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, RegionMaps]]:
        """Yield (tag, per-scale maps) in input order while the next region is already on the GPU."""
        if self.region is None:
            yield from super().run_regions(regions)  # says the backend was not opened for regions
            return
        checked = ((tag, check_region(region, self.tile_size, self.region)[None]) for tag, region in regions)
        for tag, out in self._in_flight(checked):
            yield tag, tuple(out[name][0] for name in OUTPUT_MAPS)  # type: ignore[misc]

    def _in_flight(self, items: Iterable[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, dict[str, np.ndarray]]]:
        """Submit each input to a free slot; when both are busy, collect the oldest first."""
        if not self._slots:
            raise ValueError("the TensorRT backend is closed")
        if self._streaming:
            raise ValueError("the TensorRT backend is already streaming")
        free = deque(self._slots)
        pending: deque[tuple[Any, Slot]] = deque()
        self._streaming = True
        try:
            for tag, pixels in items:
                if not free:  # both slots busy: finish the oldest while the other computes
                    done_tag, slot = pending.popleft()
                    out = slot.collect()
                    free.append(slot)
                    yield done_tag, out
                slot = free.popleft()
                slot.submit(pixels)
                pending.append((tag, slot))
            while pending:
                done_tag, slot = pending.popleft()
                yield done_tag, slot.collect()
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
