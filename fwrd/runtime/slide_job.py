"""Score one slide end to end: a plain function, so a cohort loop, a Slurm array or a cluster engine
can call it the same way.

    open slide -> plan (level, tissue, grid, units) -> decode workers || backend -> score grid
    -> tiles.csv, heatmap.npy/png, overlay.png, detections.csv, tumor.geojson -> summary.json (last)

Outputs are made in a staging folder `out_dir/.<slide name>.partial/` and swapped in whole as
`out_dir/<slide name>/` (slide_folder.py), so that folder always holds one run's complete outputs.
While streaming, scores are journaled to the staging folder's tiles.csv.part, so that `resume=True`
continues an interrupted slide without rescoring, and skips a slide whose complete outputs were made
with the same model and settings from the same slide file (fwrd.slide.identity: a slide replaced under
the same name is scored again). Any non-finite tile score fails the slide (ModelError): a NaN must never
become "ok, score 0".

    with open_backend("rd.onnx") as backend:
        result = score_slide("tumor_001.tif", backend, Path("out"), RunSettings(stride=64))

Dense scoring (`RunSettings(dense=True)`, a backend opened with `region=...`): the same grid and outputs,
scored from region passes (fwrd.runtime.regions, RegionWorkers, run_region_stream); summary.json records
the mode and the region geometry, and the resume keys differ from per-tile scoring's.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from fwrd.atomic import remove_stale_temps
from fwrd.errors import FwrdError, ModelError
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.decode import DecodeWorkers, RegionWorkers
from fwrd.runtime.infer import StreamTimes, run_region_stream, run_stream
from fwrd.runtime.outputs.colormap import model_scale
from fwrd.runtime.outputs.detections import default_radius, write_detections
from fwrd.runtime.outputs.geojson import write_geojson
from fwrd.runtime.outputs.heatmap import ScoreGrid
from fwrd.runtime.outputs.overlay import save_overlay
from fwrd.runtime.outputs.slide_folder import (
    discard_staging,
    fresh_staging,
    open_staging,
    staging_dir,
    swap_in,
)
from fwrd.runtime.outputs.summary import (
    complete_summary,
    slide_score,
    versions,
    write_summary,
)
from fwrd.runtime.outputs.tiles import (
    TileJournal,
    journal_path,
    read_journal,
    write_tiles_csv,
)
from fwrd.runtime.plan import SlidePlan, plan_slide
from fwrd.runtime.regions import RegionPlan, default_margin, plan_regions
from fwrd.runtime.settings import RunSettings
from fwrd.slide.identity import slide_identity
from fwrd.slide.reader import Slide, open_slide

THUMBNAIL_SIDE = 1024  # overlay.png long side at most (PNG encoding time grows with it)


@dataclass
class SlideResult:
    """What happened to one slide; `summary` is the content of its summary.json (empty on failure)."""

    name: str
    path: Path
    status: str  # "ok" | "skipped" (complete outputs already there) | "failed"
    score: float | None = None
    error: str = ""
    out_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def score_slide(slide_path: str | Path, backend: Backend, out_dir: Path, settings: RunSettings) -> SlideResult:
    """Score the slide at `slide_path` with `backend` into `out_dir/<slide name>/`.

    Raises FwrdError subclasses (SlideError, ModelError, ...) for what a user can fix; a failed slide
    leaves `out_dir/<slide name>/` as it was (absent, or an earlier run's complete outputs).
    """
    began = time.perf_counter()
    slide_path, out_dir = Path(slide_path), Path(out_dir)
    settings = dense_settings(settings, backend)
    name = slide_path.stem
    model_sha = str(getattr(backend, "model_sha256", "") or "")
    run_key = settings.output_key(backend.scores_identity())
    identity = slide_identity(slide_path) if slide_path.is_file() else ""  # else open_slide says why
    final = out_dir / name
    if settings.resume:
        done = _already_done(out_dir, name, run_key, identity)
        if done is not None:
            return SlideResult(name, slide_path, "skipped", done.get("score"), "", final, done)
        staging = open_staging(out_dir, name)
    else:
        staging = fresh_staging(out_dir, name)

    with open_slide(slide_path, mpp=settings.mpp) as slide:
        t_open = time.perf_counter() - began
        mark = time.perf_counter()
        plan = plan_slide(slide, backend.config, settings)

        regions = None
        if settings.dense:
            assert settings.region is not None and settings.margin is not None  # dense_settings filled them
            regions = plan_regions(plan, settings.region, settings.margin, fixed=backend.fixed_regions,
                                   quantum=backend.region_quantum)
        t_tissue = time.perf_counter() - mark

        grid = ScoreGrid(plan.geometry)
        journal_file = journal_path(staging / "tiles.csv")
        score_key = settings.score_key(backend.scores_identity(), identity)
        resumed = _load_journal(journal_file, score_key, grid, plan) if settings.resume else 0
        todo: SlidePlan | RegionPlan = regions if regions is not None else plan
        if resumed:
            todo = todo.without(grid.is_scored(todo.points))

        journal = TileJournal(journal_file, score_key, continue_existing=resumed > 0)
        try:
            times = _stream(slide, todo, backend, settings, grid, journal, resumed)
        finally:
            journal.close()

        mark = time.perf_counter()
        _check_finite(grid, backend, slide)
        threshold = backend.config.threshold_for(settings.dense) if settings.threshold is None else settings.threshold
        summary = _write_outputs(slide, staging, plan, grid, threshold, settings)
        summary.update(_mode(settings, regions))
        t_write = time.perf_counter() - mark + times.write

    summary.update(
        {
            "backend": backend.name,
            "device": backend.device,
            "precision": backend.precision,
            "batch_size": None if settings.dense else _batch_size(backend, settings),  # dense: a region a pass
            "workers": times.workers,  # decode threads that ran (at most one per work unit; 0: all resumed)
            "reader": times.reader,
            "tiles_resumed": resumed,
            "tiles_this_run": times.tiles,
            "tiles_per_s": round(times.tiles_per_s, 2) if times.tiles else None,
            "bottleneck": times.bottleneck if times.tiles else None,
            "seconds": {
                "open": round(t_open, 4),
                "tissue": round(t_tissue, 4),
                "decode": round(times.decode_busy, 4),
                "decode_wait": round(times.wait_decode, 4),
                "inference": round(times.inference, 4),
                "write": round(t_write, 4),
                "stream": round(times.wall, 4),
                "total": round(time.perf_counter() - began, 4),
            },
            "model": {
                "path": str(getattr(backend, "model_path", "")),
                "sha256": model_sha,
                "config": backend.config.to_dict(),
            },
            "settings": settings.to_dict(),
            "versions": versions(),
            "run_key": run_key,
            "slide_identity": identity,
        }
    )
    write_summary(staging, summary)
    journal.discard()  # only now: a crash before the summary can still resume from the journal
    swap_in(staging, final)
    return SlideResult(name, slide_path, "ok", summary["score"], "", final, summary)


DENSE_THRESHOLD_NOTE = ("the threshold ({:g}) was chosen on per-tile validation scores; dense scores of the same "
                        "tiles can sit elsewhere (README, Dense scoring): check tiles.csv, or give --threshold")


def dense_threshold_note(config: Any) -> str:
    """Which threshold dense scores are called at, and how far to trust it (fwrd-run prints it, on Ray too)."""
    if config.dense_threshold is not None:
        return (f"threshold {config.dense_threshold:g}: the model's own for dense scores (trained with "
                f"{config.context} px context, chosen on dense validation scores)")
    return DENSE_THRESHOLD_NOTE.format(config.threshold)


def dense_settings(settings: RunSettings, backend: Backend) -> RunSettings:
    """`settings` with the region side and margin a dense run uses filled in (they are part of the resume
    keys); unchanged for per-tile scoring. ModelError when the backend was not opened for regions."""
    if not settings.dense:
        return settings
    if backend.region is None:
        raise ModelError(f"{backend.name} backend was not opened for dense scoring (open_backend(..., dense=True))")
    if settings.region is not None and settings.region != backend.region:
        raise ModelError(f"the backend was opened for regions of {backend.region} px, the settings ask for "
                         f"{settings.region}")
    margin = default_margin(backend.config.tile_size) if settings.margin is None else settings.margin
    return replace(settings, region=backend.region, margin=margin)


def _mode(settings: RunSettings, regions: RegionPlan | None) -> dict[str, Any]:
    """summary.json's record of how the grid was scored."""
    if regions is None:
        return {"mode": "tiles"}
    return {"mode": "dense", "dense": {
        "region_side": regions.side, "margin": regions.margin, "cell_points": regions.cell,
        "regions": regions.regions, "region_pixels": regions.pixels,
        "tile_pixels": int(regions.grid_total) * regions.tiles.tile ** 2,
    }}


def _already_done(out_dir: Path, name: str, run_key: str, identity: str) -> dict[str, Any] | None:
    """--resume: the summary of complete outputs of this model, settings and slide file, else None.

    A staging folder that is complete (a kill between the swap's two renames) is swapped in here.
    """
    final = out_dir / name
    done = complete_summary(final, run_key, identity)
    if done is not None:
        discard_staging(out_dir, name)  # an older failure record or journal is moot now
        remove_stale_temps(final)
        return done
    staged = complete_summary(staging_dir(out_dir, name), run_key, identity)
    if staged is not None:
        swap_in(staging_dir(out_dir, name), final)
    return staged


def _check_finite(grid: ScoreGrid, backend: Backend, slide: Slide) -> None:
    """A NaN or inf tile score is a broken model or an overflowing engine, never a negative tile."""
    scores = grid.scores()
    bad = int(np.count_nonzero(~np.isfinite(scores)))
    if bad:
        model = getattr(backend, "model_path", "") or backend.name
        raise ModelError(
            f"{model} ({backend.name}, {backend.precision}) gave {bad} of {scores.size} tiles of {slide.path} "
            "a non-finite score (NaN or inf); no outputs written. A broken export, or fp16 overflow: "
            "try the fp32 model"
        )


def _batch_size(backend: Backend, settings: RunSettings) -> int:
    limit = backend.max_batch
    return min(settings.batch_size, limit) if limit else settings.batch_size


def _load_journal(path: Path, key: str, grid: ScoreGrid, plan: SlidePlan) -> int:
    """Put the scores of an interrupted run into `grid`; returns how many (0: start afresh)."""
    prior = read_journal(path, key)
    if prior is None or len(prior[0]) == 0:
        return 0
    coords, scores = prior
    g = plan.geometry
    rows, cols = g.cells(coords)
    on_lattice = (coords % g.stride == 0).all(axis=1)
    inside = (rows >= 0) & (rows < grid.values.shape[0]) & (cols >= 0) & (cols < grid.values.shape[1])
    if not (on_lattice & inside).all():
        return 0  # not this grid: ignore the journal and rescore
    planned = np.zeros(grid.values.shape, bool)
    prow, pcol = g.cells(plan.points)
    planned[prow, pcol] = True
    keep = planned[rows, cols]
    grid.add(coords[keep], scores[keep])
    return int(grid.count)


def _stream(
    slide: Slide, todo: SlidePlan | RegionPlan, backend: Backend, settings: RunSettings, grid: ScoreGrid,
    journal: TileJournal, resumed: int,
) -> StreamTimes:
    def sink(coords: np.ndarray, scores: np.ndarray) -> None:
        grid.add(coords, scores)
        journal.append(coords, scores)

    bar = tqdm(
        total=todo.grid_total, initial=resumed, unit="tile", desc=slide.name, file=sys.stderr,
        disable=not settings.progress, dynamic_ncols=True, leave=False, mininterval=0.5,
    )
    decode: DecodeWorkers | RegionWorkers
    if isinstance(todo, RegionPlan):
        decode = RegionWorkers(todo, slide.path, workers=settings.workers, buffers=settings.buffers,
                               prefer_direct=settings.prefer_direct)
    else:
        decode = DecodeWorkers(
            todo, slide.path, batch_size=_batch_size(backend, settings), workers=settings.workers,
            buffers=settings.buffer_count, prefer_direct=settings.prefer_direct,
        )
    try:
        with decode:
            if isinstance(decode, RegionWorkers):
                times = run_region_stream(backend, decode, sink, on_progress=bar.update)
            else:
                times = run_stream(backend, decode, sink, on_progress=bar.update)
    finally:
        bar.close()
    times.reader = decode.reader_kind
    times.workers = decode.worker_count if decode.units else 0
    return times


def _write_outputs(
    slide: Slide, slide_dir: Path, plan: SlidePlan, grid: ScoreGrid, threshold: float, settings: RunSettings
) -> dict[str, Any]:
    if grid.count != plan.grid_total:
        raise FwrdError(f"{slide.path}: scored {grid.count} of {plan.grid_total} tiles; outputs not written")
    g = plan.geometry
    scores = grid.scores()
    scale = model_scale(threshold)  # one colour scale for every slide of the model
    write_tiles_csv(grid, slide_dir / "tiles.csv")
    grid.save_npy(slide_dir / "heatmap.npy")
    grid.save_png(slide_dir / "heatmap.png", scale, title=slide.name, mpp=slide.mpp)
    features = write_geojson(slide_dir / "tumor.geojson", grid.values, g, threshold, slide.mpp)
    save_overlay(slide_dir / "overlay.png", thumbnail(slide), grid.values, g, scale, title=slide.name,
                 features=features, mpp=slide.mpp)
    radius = settings.nms_radius or default_radius(g.stride)
    detections = write_detections(slide_dir / "detections.csv", grid.values, g, radius)
    tumor_cells = int(np.count_nonzero(scores >= threshold))
    mpp = slide.mpp
    finite = scores[np.isfinite(scores)]
    return {
        "slide": slide.name,
        "path": str(slide.path),
        "score": slide_score(scores, threshold),
        "max_score": float(finite.max()) if finite.size else None,
        "threshold": float(threshold),
        "tiles_scored": int(grid.count),
        "tiles_above_threshold": tumor_cells,
        "tissue_area_mm2": plan.tissue_area_mm2(mpp),
        "tumor_area_mm2": None if mpp is None else tumor_cells * (g.stride * mpp) ** 2 / 1e6,
        "tumor_regions": len(features),
        "detections": detections,
        "nms_radius_cells": radius,
        "level": plan.level,
        "mpp": mpp,
        "tile_size": plan.tile,
        "stride": plan.stride,
        "tile_level0": g.tile,
        "stride_level0": g.stride,
        "slide_dimensions": list(slide.dimensions),
        "heatmap_shape": list(grid.values.shape),
    }


def thumbnail(slide: Slide, max_side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """The whole slide as RGB, from the finest level whose long side is <= max_side (else the
    coarsest level, shrunk)."""
    fitting = [lvl for lvl, (w, h) in enumerate(slide.level_dimensions) if max(w, h) <= max_side]
    level = fitting[0] if fitting else slide.level_count - 1
    image = slide.read_level(level)
    if max(image.shape[:2]) > max_side:
        pil = Image.fromarray(image)
        pil.thumbnail((max_side, max_side), Image.BILINEAR)
        image = np.asarray(pil)
    return image
