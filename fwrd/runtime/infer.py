"""Inference stage: feed the decode workers' batches to a backend and hand scores to a sink.

`backend.run_batches` pulls (coords, tiles) pairs from a generator; a buffer goes back to the decode
pool when the backend asks for the next batch (the Backend contract: a backend that keeps batches in
flight copies them first). The clock is split three ways: waiting for decode (the pipeline is
decode-bound when this grows), the sink (writing results), and the rest (inference).

    times = run_stream(backend, decode, sink=lambda coords, scores, qc: grid.add(coords, scores))

The sink also receives each tile's QC features (fwrd.slide.qc; None when QC is off), which the decode
workers computed and which travel with the batch through the backend as part of its tag.

Dense scoring streams regions instead (`run_region_stream`): the backend scores every tile window a
region holds from that region's one pass (`Backend.score_regions`: numpy reads the windows off the
per-scale maps, fwrd.runtime.window_scores; the torch backend on a GPU does it on the device).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fwrd.runtime.backends.base import Backend
from fwrd.runtime.decode import BatchBuffer, DecodeWorkers, RegionBuffer, RegionWorkers


@dataclass
class StreamTimes:
    """Seconds of one streamed slide (wall clock of the consumer, plus summed worker busy time)."""

    wall: float = 0.0
    wait_decode: float = 0.0  # consumer idle, waiting for a ready batch
    inference: float = 0.0
    write: float = 0.0
    decode_busy: float = 0.0  # summed over workers (they run in parallel with inference)
    resample: float = 0.0  # of decode_busy: shrinking tiles to the model's resolution (fwrd.slide.resample)
    qc_busy: float = 0.0  # of decode_busy: computing QC features
    tiles: int = 0
    batches: int = 0
    reader: str = ""  # tile reader kind the workers used
    workers: int = 0  # decode threads that ran

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.wall if self.wall > 0 else 0.0

    @property
    def bottleneck(self) -> str:
        """The consumer's largest share of time: "inference" (as it should be), "decode" or "write"."""
        shares = {"inference": self.inference, "decode": self.wait_decode, "write": self.write}
        return max(shares, key=shares.__getitem__)


def _feed(decode: DecodeWorkers | RegionWorkers, times: StreamTimes,
          item: Callable[[Any], tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """`item(buffer)` ((tag, pixels), or (tag, pixels, offsets) for regions) of each ready buffer; a buffer goes
    back to the pool when the backend asks for the next."""
    previous: BatchBuffer | RegionBuffer | None = None
    source = decode.batches()
    while True:
        if previous is not None:  # the backend asked for the next one: the last one is free
            decode.release(previous)
            previous = None
        waited = time.perf_counter()
        buffer = next(source, None)
        times.wait_decode += time.perf_counter() - waited
        if buffer is None:
            return
        previous = buffer
        yield item(buffer)


Sink = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], None]


def _count(times: StreamTimes, coords: np.ndarray, sink: Sink, scores: np.ndarray, qc: np.ndarray | None,
           on_progress: Callable[[int], None] | None) -> None:
    began = time.perf_counter()
    sink(coords, scores, qc)
    times.tiles += len(coords)
    times.batches += 1
    if on_progress is not None:
        on_progress(len(coords))
    times.write += time.perf_counter() - began


def _finish(times: StreamTimes, started: float, decode: DecodeWorkers | RegionWorkers) -> StreamTimes:
    times.wall = time.perf_counter() - started
    times.inference = max(0.0, times.wall - times.wait_decode - times.write)
    times.decode_busy = float(sum(decode.busy_seconds))
    return times


def run_stream(
    backend: Backend,
    decode: DecodeWorkers,
    sink: Sink,
    on_progress: Callable[[int], None] | None = None,
) -> StreamTimes:
    """Score every batch `decode` produces; `sink(coords, scores, qc)` is called in batch order."""
    times = StreamTimes()
    started = time.perf_counter()

    def tagged(b: BatchBuffer) -> tuple[Any, np.ndarray]:
        qc = None if b.qc is None else b.qc[: b.count].copy()
        return (b.coords[: b.count].copy(), qc), b.tiles[: b.count]

    for (coords, qc), scores, _amap in backend.run_batches(_feed(decode, times, tagged)):
        scores = np.asarray(scores, np.float32).reshape(-1)
        if len(scores) != len(coords):
            raise RuntimeError(f"backend returned {len(scores)} scores for {len(coords)} tiles")
        _count(times, coords, sink, scores, qc, on_progress)
    return _finish(times, started, decode)


def run_region_stream(
    backend: Backend,
    decode: RegionWorkers,
    sink: Sink,
    on_progress: Callable[[int], None] | None = None,
) -> StreamTimes:
    """Dense scoring: one backend pass per region `decode` produces, then the scores of the grid points
    it holds; `sink(coords, scores, qc)` per region, in the order regions finish."""
    plan = decode.plan
    starts = plan.region_starts
    times = StreamTimes()
    started = time.perf_counter()
    qc_of: dict[int, Any] = {}  # each region's QC features, from its decode to its scores

    def feed(region: Any) -> tuple[int, np.ndarray, np.ndarray]:
        qc_of[region.index] = region.qc
        return region.index, region.pixels, plan.offsets[starts[region.index]:starts[region.index + 1]]

    for index, scores in backend.score_regions(_feed(decode, times, feed), plan.tiles.tile):
        a, b = int(starts[index]), int(starts[index + 1])
        scores = np.asarray(scores, np.float32).reshape(-1)
        if len(scores) != b - a:
            raise RuntimeError(f"backend returned {len(scores)} scores for the {b - a} tiles of region {index}")
        _count(times, plan.points[a:b], sink, scores, qc_of.pop(index), on_progress)
    return _finish(times, started, decode)
