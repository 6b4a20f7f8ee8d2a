"""Decode workers: read work units into reusable uint8 buffers while inference runs.

    free buffers --> worker threads (own TileReader each: read a unit's window once, cut its tiles
    into the current buffer) --> ready queue --> consumer (inference) --> buffer back to free

The pool of buffers [batch, T, T, 3] is fixed, so memory stays bounded whatever the slide size and
the ready queue can never hold more than the pool. Threads suffice: libjpeg-turbo (imagecodecs),
`os.pread` and OpenSlide (ctypes) release the GIL while they work. Each worker flushes its last,
partly filled buffer at the end, so every planned tile arrives exactly once.

    with DecodeWorkers(plan, slide_path, batch_size=16, workers=2) as decode:
        for batch in decode.batches():
            ... batch.tiles[:batch.count], batch.coords[:batch.count] ...
            decode.release(batch)

When the plan's reading resamples (a finer level than the model's resolution, fwrd.slide.resample), each
tile's footprint is cut out of the window and shrunk to the model's tile with the one BOX resampling
training uses, so the pixels equal those of a tile read alone; `resample_seconds` is the time each worker
spent on it (part of its busy time).

With `qc` thresholds given, each worker also computes the QC features of the tiles it cuts (fwrd.slide.qc,
on the window it has just decoded: no second read) into `batch.qc`; `None` when QC is off. QC looks at the
model's pixels: a resampled window is shrunk whole to the model's resolution for it (fwrd.slide.resample.
model_view), so its rules, whose sizes are in pixels, mean the same on a 20x and a 40x scan.

Dense scoring (`RegionWorkers`) reads whole regions instead: one buffer per region, holding its pixels,
so memory is bounded by the regions in flight (the pool), whatever the slide size.

    with RegionWorkers(region_plan, slide_path, workers=2) as decode:
        for region in decode.batches():
            ... region.pixels (uint8 [h, w, 3]), region.index ...
            decode.release(region)
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fwrd.config import QCThresholds
from fwrd.errors import FwrdError, SlideError
from fwrd.runtime.plan import SlidePlan
from fwrd.runtime.regions import RegionPlan
from fwrd.slide.qc_features import FEATURES, tile_features
from fwrd.slide.resample import model_view, shrink, source_window
from fwrd.slide.tile_reader import TileReader, open_tile_reader

_DONE = object()
_POLL_S = 0.05


class BatchBuffer:
    """One reusable batch: tiles uint8 [B, T, T, 3], level-0 top-lefts int64 [B, 2], QC features float32
    [B, len(FEATURES)] (None when QC is off), fill count."""

    def __init__(self, batch_size: int, tile: int, qc: bool = False) -> None:
        self.tiles = np.empty((batch_size, tile, tile, 3), np.uint8)
        self.coords = np.empty((batch_size, 2), np.int64)
        self.qc = np.empty((batch_size, len(FEATURES)), np.float32) if qc else None
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count == len(self.tiles)


class RegionBuffer:
    """One reusable region: room for side x side RGB pixels; `pixels` is the region read into it."""

    def __init__(self, side: int) -> None:
        self._store = np.empty((side, side, 3), np.uint8)
        self.pixels = self._store[:0, :0]
        self.index = -1  # the region of the plan it holds
        self.count = 0  # grid points the region scores
        self.qc: np.ndarray | None = None  # QC features of those points (None when QC is off)

    def fill(self, index: int, window: np.ndarray, count: int, qc: np.ndarray | None = None) -> None:
        h, w = window.shape[:2]
        self._store[:h, :w] = window
        self.pixels, self.index, self.count, self.qc = self._store[:h, :w], index, count, qc


class _Workers(ABC):
    """Worker threads that take the plan's units in order and fill buffers from a fixed pool."""

    def __init__(self, units: int, slide_path: str | Path, level: int, *, workers: int, buffers: int,
                 make_buffer: Callable[[], Any], prefer_direct: bool,
                 reader_factory: Callable[[], TileReader] | None) -> None:
        self.slide_path = Path(slide_path)
        self.units = units
        self.worker_count = max(1, min(int(workers), max(1, units)))
        self._reader_factory = reader_factory or (
            lambda: open_tile_reader(self.slide_path, level, prefer_direct=prefer_direct)
        )
        self._free: queue.Queue[Any] = queue.Queue()
        for _ in range(buffers):
            self._free.put(make_buffer())
        self._ready: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_unit = 0
        self._errors: list[BaseException] = []
        self.busy_seconds = [0.0] * self.worker_count  # time each worker spent reading and copying
        self.resample_seconds = [0.0] * self.worker_count  # ... of which shrinking to the model's resolution
        self.qc_seconds = [0.0] * self.worker_count  # ... of which computing QC features
        self.reader_kind = ""
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "_Workers":
        for wid in range(self.worker_count):
            thread = threading.Thread(target=self._work, args=(wid,), name=f"fwrd-decode-{wid}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        """Stop the workers (after their current window) and wait for them; safe to call twice."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def __enter__(self) -> "_Workers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- consumer side ---------------------------------------------------------------------------
    def batches(self) -> Iterator[Any]:
        """Filled buffers as they become ready; raises the first worker error. Release each one."""
        finished = 0
        while finished < self.worker_count:
            item = self._ready.get()
            if self._errors:
                raise self._errors[0]
            if item is _DONE:
                finished += 1
                continue
            yield item
        if self._errors:
            raise self._errors[0]

    def release(self, buffer: Any) -> None:
        buffer.count = 0
        self._free.put(buffer)

    # -- workers ---------------------------------------------------------------------------------
    def _take_unit(self) -> int | None:
        with self._lock:
            unit = self._next_unit
            if unit >= self.units or self._stop.is_set():
                return None
            self._next_unit += 1
            return unit

    def _acquire(self) -> Any | None:
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return None

    def _work(self, wid: int) -> None:
        reader: TileReader | None = None
        try:
            reader = self._reader_factory()
            self.reader_kind = reader.kind
            while (unit := self._take_unit()) is not None:
                if not self._read_unit(unit, reader, wid):
                    return
            self._finish(wid)
        except FwrdError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(SlideError(f"{self.slide_path}: cannot read tiles: {exc.strerror or exc}"))
        except BaseException as exc:  # a bug: re-raised unchanged in the consumer
            self._fail(exc)
        finally:
            if reader is not None:
                reader.close()
            self._ready.put(_DONE)

    @abstractmethod
    def _read_unit(self, unit: int, reader: TileReader, wid: int) -> bool:
        """Read one unit into buffers; False when stopped while waiting for a buffer."""

    def _finish(self, wid: int) -> None:
        """After the last unit: hand on whatever this worker still holds."""

    def _fail(self, exc: BaseException) -> None:
        self._errors.append(exc)
        self._stop.set()


class DecodeWorkers(_Workers):
    """Worker threads filling batch buffers from a slide plan; iterate `batches()`, then `release()`."""

    def __init__(
        self,
        plan: SlidePlan,
        slide_path: str | Path,
        *,
        batch_size: int,
        workers: int = 2,
        buffers: int | None = None,
        prefer_direct: bool = True,
        reader_factory: Callable[[], TileReader] | None = None,
        qc: QCThresholds | None = None,
    ) -> None:
        self.plan = plan
        self.batch_size = int(batch_size)
        self.qc = qc
        count = max(1, min(int(workers), max(1, plan.units)))
        super().__init__(plan.units, slide_path, plan.level, workers=workers, buffers=buffers or 2 * count + 2,
                         make_buffer=lambda: BatchBuffer(self.batch_size, plan.tile, qc is not None),
                         prefer_direct=prefer_direct, reader_factory=reader_factory)
        self._current: list[BatchBuffer | None] = [None] * self.worker_count  # each worker's partly filled one

    def _read_unit(self, unit: int, reader: TileReader, wid: int) -> bool:
        plan, tile, source = self.plan, self.plan.tile, self.plan.source
        resampled = source != tile
        start, end = int(plan.unit_starts[unit]), int(plan.unit_starts[unit + 1])
        x0, y0 = (int(v) for v in plan.unit_origins[unit])
        began = time.perf_counter()
        # only the bounding box of the unit's tiles: no tile the grid does not score is decoded or judged
        # (a reader refuses damaged or missing file tiles a read touches)
        width, height = (int(v) + source for v in plan.offsets[start:end].max(axis=0))
        window = reader.read(x0, y0, width, height)
        features = None
        if self.qc is not None:
            mark = time.perf_counter()
            pixels, offsets = model_view(window, plan.offsets[start:end], plan.reading)
            features = tile_features(pixels, offsets, tile, plan.glass, self.qc)
            self.qc_seconds[wid] += time.perf_counter() - mark
        buffer = self._current[wid]
        for k in range(start, end):
            if buffer is None:  # waiting for a free buffer is not decode work
                self.busy_seconds[wid] += time.perf_counter() - began
                buffer = self._current[wid] = self._acquire()
                if buffer is None:
                    return False
                began = time.perf_counter()
            ox, oy = plan.offsets[k]
            if resampled:
                mark = time.perf_counter()
                buffer.tiles[buffer.count] = shrink(window[oy:oy + source, ox:ox + source], tile, tile)
                self.resample_seconds[wid] += time.perf_counter() - mark
            else:
                buffer.tiles[buffer.count] = window[oy:oy + tile, ox:ox + tile]
            buffer.coords[buffer.count] = plan.points[k]
            if features is not None:
                buffer.qc[buffer.count] = features[k - start]
            buffer.count += 1
            if buffer.full:
                self.busy_seconds[wid] += time.perf_counter() - began
                self._ready.put(buffer)
                buffer = self._current[wid] = None
                began = time.perf_counter()
        self.busy_seconds[wid] += time.perf_counter() - began
        return True

    def _finish(self, wid: int) -> None:
        buffer, self._current[wid] = self._current[wid], None
        if buffer is not None and buffer.count:
            self._ready.put(buffer)


class RegionWorkers(_Workers):
    """Worker threads reading a region plan's regions, one buffer each; iterate `batches()`, `release()`."""

    def __init__(
        self,
        plan: RegionPlan,
        slide_path: str | Path,
        *,
        workers: int = 2,
        buffers: int | None = None,
        prefer_direct: bool = True,
        reader_factory: Callable[[], TileReader] | None = None,
        qc: QCThresholds | None = None,
    ) -> None:
        self.plan = plan
        self.qc = qc
        count = max(1, min(int(workers), max(1, plan.regions)))
        side = int(plan.sizes.max()) if plan.regions else 0
        super().__init__(plan.regions, slide_path, plan.tiles.level, workers=workers,
                         buffers=buffers or count + 1, make_buffer=lambda: RegionBuffer(side),
                         prefer_direct=prefer_direct, reader_factory=reader_factory)

    def _read_unit(self, unit: int, reader: TileReader, wid: int) -> bool:
        buffer = self._acquire()  # waiting for a free buffer is not decode work
        if buffer is None:
            return False
        began = time.perf_counter()
        x0, y0 = (int(v) for v in self.plan.origins[unit])
        width, height = (int(v) for v in self.plan.sizes[unit])
        a, b = int(self.plan.region_starts[unit]), int(self.plan.region_starts[unit + 1])
        reading = self.plan.tiles.reading
        if reading.resampled:  # the region's pixels at the model's resolution: one shrink per region
            src = source_window(x0, y0, width, height, reading.read_downsample, reading.ratio)
            window = reader.read(src.x, src.y, src.width, src.height)
            mark = time.perf_counter()
            window = shrink(window, width, height, src.box)
            self.resample_seconds[wid] += time.perf_counter() - mark
        else:
            window = reader.read(x0, y0, width, height)
        features = None
        if self.qc is not None:  # the region is in model pixels already
            mark = time.perf_counter()
            features = tile_features(window, self.plan.offsets[a:b], self.plan.tiles.tile, self.plan.tiles.glass,
                                     self.qc)
            self.qc_seconds[wid] += time.perf_counter() - mark
        buffer.fill(unit, window, b - a, features)
        self.busy_seconds[wid] += time.perf_counter() - began
        self._ready.put(buffer)
        return True
