"""Time each stage of `fwrd-run` on its own and the whole pipeline, with the runtime's own code.

    decode_sample      DecodeWorkers (the runtime's decode stage) filling batch buffers, nothing else
    inference_sample   backend.run_batches on tissue tiles already in memory, after warm-up batches
    end_to_end_sample  score_slide: the real pipeline, decode || inference, outputs written

Decode and inference run for about `seconds` each (whole passes are repeated, a pass is cut short when
time is up); end to end scores the whole slide once. Each returns a Sample (tiles, seconds).

    plan = plan_slide(slide, backend.config, RunSettings())
    decode_sample(plan, slide.path, batch_size=16, workers=2, seconds=5).tiles_per_s
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fwrd.errors import FwrdError
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.decode import DecodeWorkers
from fwrd.runtime.plan import SlidePlan, make_units
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide


@dataclass(frozen=True)
class Sample:
    """One timed run of one stage."""

    tiles: int
    seconds: float

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0


def decode_sample(
    plan: SlidePlan, slide_path: Path, *, batch_size: int, workers: int, seconds: float, prefer_direct: bool = True
) -> Sample:
    """Tiles/s of `workers` decode threads filling batch buffers that are released at once.

    The clock includes opening the readers (as in a real run); passes over the plan repeat until
    `seconds` have gone by, and the last one stops early when time is up.
    """
    tiles = 0
    began = time.perf_counter()
    while True:
        with DecodeWorkers(plan, slide_path, batch_size=batch_size, workers=workers,
                           prefer_direct=prefer_direct) as decode:
            for batch in decode.batches():
                tiles += batch.count
                decode.release(batch)
                if time.perf_counter() - began >= seconds:
                    return Sample(tiles, time.perf_counter() - began)
        if time.perf_counter() - began >= seconds:
            return Sample(tiles, time.perf_counter() - began)


def sample_tiles(plan: SlidePlan, slide_path: Path, count: int, prefer_direct: bool = True) -> np.ndarray:
    """`count` tissue tiles of the slide, decoded once by the runtime's decode stage (the plan's first
    tiles, repeated when it has fewer): the input of the inference-only measurement."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    subset = make_units(plan, plan.points[:count])
    out = np.empty((0, plan.tile, plan.tile, 3), np.uint8)
    with DecodeWorkers(subset, slide_path, batch_size=min(count, 64), workers=1,
                       prefer_direct=prefer_direct) as decode:
        parts = []
        for batch in decode.batches():
            parts.append(batch.tiles[:batch.count].copy())
            decode.release(batch)
    if parts:
        out = np.concatenate(parts)
    if len(out) == 0:
        raise FwrdError(f"{slide_path}: no tiles decoded for the inference benchmark")
    return out if len(out) == count else np.resize(out, (count,) + out.shape[1:])


def inference_sample(
    backend: Backend, tiles: np.ndarray, *, batch_size: int, seconds: float, warmup: int = 1
) -> Sample:
    """Tiles/s of `backend.run_batches` (the call the pipeline makes) on in-memory batches.

    `warmup` batches run first and are not counted (first-call allocation, kernel selection); then
    batches go in until `seconds` have passed, at least one. The clock stops at the last result, so a
    backend with batches in flight (TensorRT) is timed on finished work only.
    """
    if len(tiles) < batch_size:
        tiles = np.resize(tiles, (batch_size,) + tiles.shape[1:])
    starts = list(range(0, len(tiles) - batch_size + 1, batch_size))

    def batches(limit_s: float | None, count: int | None) -> Iterator[tuple[int, np.ndarray]]:
        n = 0
        began = time.perf_counter()
        while True:
            if count is not None and n >= count:
                return
            if limit_s is not None and n > 0 and time.perf_counter() - began >= limit_s:
                return
            start = starts[n % len(starts)]
            yield n, tiles[start:start + batch_size]
            n += 1

    for _ in backend.run_batches(batches(None, warmup)):
        pass
    done = 0
    began = finished = time.perf_counter()
    for _tag, score, _amap in backend.run_batches(batches(seconds, None)):
        done += len(score)
        finished = time.perf_counter()
    return Sample(done, finished - began)


def end_to_end_sample(
    slide_path: Path, backend: Backend, settings: RunSettings, work_dir: Path, heatmaps: list | None = None
) -> tuple[Sample, dict[str, Any]]:
    """Score the whole slide with `score_slide` into a scratch folder (removed afterwards).

    The Sample is the streaming phase (decode || inference || journal), the throughput fwrd-run
    reports; the summary gives the per-stage seconds, the slide's wall time and the runtime's own
    bottleneck call. With a `heatmaps` list, the slide's heatmap (heatmap.npy) is appended to it.
    """
    out = Path(tempfile.mkdtemp(prefix="e2e-", dir=work_dir))
    try:
        result = score_slide(slide_path, backend, out, settings, measuring=True)  # timed, then removed
        if heatmaps is not None:
            heatmaps.append(np.load(out / result.name / "heatmap.npy"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    summary = result.summary
    return Sample(int(summary["tiles_this_run"]), float(summary["seconds"]["stream"])), summary
