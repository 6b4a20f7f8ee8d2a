"""Score one slide end to end: a plain function, so a cohort loop, a Slurm array or a cluster engine
can call it the same way.

    open slide -> plan (level, tissue, grid, units) -> decode workers || backend -> score grid
    -> tiles.csv, heatmap.npy/png, overlay.png, detections.csv, tumor.geojson -> summary.json (last)

Outputs are made in a staging folder `out_dir/.<slide name>.partial/` and swapped in whole as
`out_dir/<slide name>/` (slide_folder.py), so that folder always holds one run's complete outputs. The
slide's lock (outputs/locks.py) is held throughout, so two runs into one OUT never score the same slide
at once: the second is refused with `SlideBusy`, naming the first. A failure is recorded in OUT (read by
slides.csv) and leaves no staging folder, unless an OS error (a full disk) stopped a slide whose journal
holds scores; an interruption (Ctrl-C, SIGTERM) keeps the journal too.
While streaming, scores are journaled to the staging folder's tiles.csv.part, so that `resume=True`
continues an interrupted slide without rescoring, and skips a slide whose complete outputs were made
with the same model and settings from the same slide file (fwrd.slide.identity: a slide replaced under
the same name is scored again). Any non-finite tile score fails the slide (ModelError): a NaN must never
become "ok, score 0".

    with open_backend("rd.onnx") as backend:
        result = score_slide("tumor_001.tif", backend, Path("out"), RunSettings(stride=64))

QC (`RunSettings(qc=True)`, the default): the decode workers compute each tile's QC features, and at the end
fwrd.runtime.qc_gate judges them against the slide's own tissue, keeps flagged tiles out of every call and
gives the slide's status, `ok` or `review` (summary.json's `status` and `review_reason`).

Dense scoring (`RunSettings(dense=True)`, a backend opened with `region=...`): the same grid and outputs,
scored from region passes (fwrd.runtime.regions, RegionWorkers, run_region_stream); summary.json records
the mode and the region geometry, and the resume keys differ from per-tile scoring's.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fwrd.atomic import atomic_open, remove_stale_temps
from fwrd.errors import FwrdError, ModelError, SlideError
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.decode import DecodeWorkers, RegionWorkers
from fwrd.runtime.dense_trust import dense_margin, dense_note
from fwrd.runtime.infer import StreamTimes, run_region_stream, run_stream
from fwrd.runtime.outputs.areas import cells_area_mm2, tissue_area_mm2, tumor_area_mm2
from fwrd.runtime.outputs.colormap import model_scale
from fwrd.runtime.outputs.detections import default_radius, write_detections
from fwrd.runtime.outputs.geojson import write_geojson
from fwrd.runtime.outputs.heatmap import ScoreGrid, save_heatmap_png
from fwrd.runtime.outputs.locks import slide_lock
from fwrd.runtime.outputs.overlay import TissueMask, demo_stamp, review_stamp, save_overlay
from fwrd.runtime.outputs.slide_folder import (
    check_replaceable,
    clear_failure,
    discard_staging,
    fail_slide,
    fresh_staging,
    open_staging,
    output_name,
    staging_dir,
    swap_in,
)
from fwrd.runtime.outputs.summary import (
    complete_summary,
    read_summary,
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
from fwrd.runtime.qc_gate import QCStore, SlideGate, gate_off, gate_slide
from fwrd.runtime.regions import RegionPlan, default_margin, plan_regions
from fwrd.runtime.settings import RunSettings, usable_cpus
from fwrd.safe_text import for_terminal
from fwrd.slide.identity import identify
from fwrd.slide.qc import kind_names
from fwrd.slide.qc_features import FEATURES
from fwrd.slide.reader import Slide, open_slide
from fwrd.slide.thumbnail import thumbnail as slide_thumbnail
from fwrd.slide.tiff_level import refuse_missing_by_tissue
from fwrd.slide.tile_reader import tiff_level_of

THUMBNAIL_SIDE = 1024  # overlay.png long side at most (PNG encoding time grows with it)


@dataclass
class SlideResult:
    """What happened to one slide; `summary` is the content of its summary.json (empty on failure)."""

    name: str
    path: Path
    status: str  # "ok" | "review" (QC cannot vouch for the calls) | "skipped" (complete outputs there) | "failed"
    #              | "busy" (another process has it)
    score: float | None = None
    error: str = ""
    out_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def score_slide(slide_path: str | Path, backend: Backend, out_dir: Path, settings: RunSettings, *,
                measuring: bool = False) -> SlideResult:
    """Score the slide at `slide_path` with `backend` into `out_dir/<slide name>/`.

    Raises FwrdError subclasses (SlideError, ModelError, ...) for what a user can fix; a failed slide
    leaves `out_dir/<slide name>/` as it was (absent, or an earlier run's complete outputs) and its error
    in `out_dir/.<slide name>.failed.json`. Raises SlideBusy (recording nothing) while another process
    scores the same slide into `out_dir`, and FwrdError before touching anything when the slide's name
    cannot name a folder (slide_folder.output_name). Dense scoring needs a model validated for it
    (fwrd.runtime.dense_trust); `measuring` is for scores that are measured, never delivered: the
    validation itself (fwrd.export.dense_validation, which scores the model densely to write that record)
    and fwrd-bench's timings (a scratch folder, removed).
    """
    slide_path, out_dir = Path(slide_path), Path(out_dir)
    name = output_name(slide_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    with slide_lock(out_dir, name):
        try:
            return _score_locked(slide_path, name, backend, out_dir, settings, measuring)
        except Exception as exc:  # recorded under the lock, so a later run's success is never overwritten
            with suppress(OSError):  # a full disk: the caller's slides.csv update says so
                fail_slide(out_dir, name, slide_path, error_line(exc), keep_journal=isinstance(exc, OSError))
            raise


def error_line(exc: BaseException) -> str:
    """The one line slides.csv and the terminal show for a slide's failure."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    if not isinstance(exc, (FwrdError, OSError)):  # a bug or an unexpected library error: say which
        text = f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
    return text or exc.__class__.__name__


def check_slide_file(path: Path) -> None:
    """SlideError for a FIFO, a socket or a device: opening one would block forever or read a stream."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: open_slide says so in its own words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SlideError(f"{for_terminal(str(path))}: not a regular file (a FIFO, socket or device); slides must be "
                         "files")


def _score_locked(slide_path: Path, name: str, backend: Backend, out_dir: Path, settings: RunSettings,
                  measuring: bool) -> SlideResult:
    began = time.perf_counter()
    check_slide_file(slide_path)
    check_replaceable(out_dir, name)
    settings = qc_settings(dense_settings(settings, backend, measuring=measuring), backend)
    model_sha = str(getattr(backend, "model_sha256", "") or "")
    run_key = settings.output_key(backend.scores_identity())
    final = out_dir / name
    identity, stat = identify(slide_path, _recorded(out_dir, name) if settings.resume else None) \
        if slide_path.exists() else ("", None)  # else open_slide says why
    if settings.resume:
        done = _already_done(out_dir, name, run_key, identity)
        if done is not None:
            return SlideResult(name, slide_path, "skipped", done.get("score"), str(done.get("review_reason") or ""),
                               final, done)
        staging = open_staging(out_dir, name)
    else:
        staging = fresh_staging(out_dir, name)

    with open_slide(slide_path, mpp=settings.mpp) as slide:
        t_open = time.perf_counter() - began
        warnings = [w for w in (slide.mpp_conflict(),) if w]
        mark = time.perf_counter()
        plan = plan_slide(slide, backend.config, settings)
        tiff = tiff_level_of(slide, plan.level)
        if tiff is not None:  # a tile the file never wrote under tissue: the mask alone would not show it
            refuse_missing_by_tissue(tiff, plan.read_downsample, plan.mask, plan.mask_downsample)

        regions = None
        if settings.dense:
            assert settings.region is not None and settings.margin is not None  # dense_settings filled them
            regions = plan_regions(plan, settings.region, settings.margin, fixed=backend.fixed_regions,
                                   quantum=backend.region_quantum)
        t_tissue = time.perf_counter() - mark

        grid = ScoreGrid(plan.geometry)
        store = QCStore() if settings.qc else None
        columns = FEATURES if settings.qc else ()
        journal_file = journal_path(staging / "tiles.csv")
        score_key = settings.score_key(backend.scores_identity(), identity)
        resumed = _load_journal(journal_file, score_key, grid, plan, store) if settings.resume else 0
        todo: SlidePlan | RegionPlan = regions if regions is not None else plan
        if resumed:
            todo = todo.without(grid.is_scored(todo.points))

        journal = TileJournal(journal_file, score_key, continue_existing=resumed > 0, columns=columns)
        try:
            times = _stream(slide, todo, backend, settings, grid, journal, resumed, store)
        finally:
            journal.close()

        mark = time.perf_counter()
        _check_finite(grid, backend, slide)
        threshold = backend.config.threshold_for(settings.dense) if settings.threshold is None else settings.threshold
        qc_began = time.perf_counter()
        if store is not None and settings.qc_thresholds is not None:
            gate = gate_slide(grid, store, settings.qc_thresholds, threshold, _cells_area(plan, slide.mpp))
        else:
            gate = gate_off(grid)
        t_judge = time.perf_counter() - qc_began
        summary = _write_outputs(slide, staging, plan, grid, threshold, settings, gate, demo_stamp(backend.config))
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
            "warnings": warnings,
            "seconds": {
                "open": round(t_open, 4),
                "tissue": round(t_tissue, 4),
                "decode": round(times.decode_busy, 4),
                "resample": round(times.resample, 4),  # part of decode: shrinking tiles to the model's resolution
                "decode_wait": round(times.wait_decode, 4),
                "inference": round(times.inference, 4),
                "qc_features": round(times.qc_busy, 4),  # summed over decode workers, inside "decode"
                "qc_judge": round(t_judge, 4),
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
            "slide_stat": stat,  # lets --resume trust `slide_identity` without rereading an untouched file
        }
    )
    write_summary(staging, summary)
    journal.discard()  # only now: a crash before the summary can still resume from the journal
    swap_in(staging, final)
    return SlideResult(name, slide_path, summary["status"], summary["score"], summary["review_reason"], final, summary)


def dense_threshold_note(config: Any) -> str:
    """How the model was validated for dense scoring, and the threshold dense scores are called at (fwrd-run
    prints it, on Ray too)."""
    return dense_note(config)


def dense_settings(settings: RunSettings, backend: Backend, measuring: bool = False) -> RunSettings:
    """`settings` with the region side and margin a dense run uses filled in (they are part of the resume
    keys); unchanged for per-tile scoring. ModelError when the backend was not opened for regions, or (unless
    `measuring`) the model was not validated for dense scoring at that margin (fwrd.runtime.dense_trust)."""
    if not settings.dense:
        return settings
    if backend.region is None:
        raise ModelError(f"{backend.name} backend was not opened for dense scoring (open_backend(..., dense=True))")
    if settings.region is not None and settings.region != backend.region:
        raise ModelError(f"the backend was opened for regions of {backend.region} px, the settings ask for "
                         f"{settings.region}")
    if measuring:
        margin = default_margin(backend.config.tile_size) if settings.margin is None else settings.margin
    else:
        margin = dense_margin(backend.config, settings.margin, _model_name(backend))
    return replace(settings, region=backend.region, margin=margin)


def qc_settings(settings: RunSettings, backend: Backend) -> RunSettings:
    """`settings` with the model's QC thresholds filled in (they are part of the resume keys); QC off: unchanged."""
    if not settings.qc or settings.qc_thresholds is not None:
        return settings
    return replace(settings, qc_thresholds=backend.config.qc)


def _model_name(backend: Backend) -> str:
    path = getattr(backend, "model_path", "")
    return Path(path).name if path else f"the {backend.name} model"


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
        clear_failure(out_dir, name)
        remove_stale_temps(final)
        return done
    staged = complete_summary(staging_dir(out_dir, name), run_key, identity)
    if staged is not None:
        swap_in(staging_dir(out_dir, name), final)
    return staged


def _recorded(out_dir: Path, name: str) -> dict[str, Any] | None:
    """The slide fingerprint a finished (or staged) earlier run recorded, for fwrd.slide.identity.identify."""
    return read_summary(out_dir / name) or read_summary(staging_dir(out_dir, name))


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


def _load_journal(path: Path, key: str, grid: ScoreGrid, plan: SlidePlan, store: QCStore | None) -> int:
    """Put the scores (and QC features) of an interrupted run into `grid` (and `store`); returns how many
    (0: start afresh)."""
    prior = read_journal(path, key, FEATURES if store is not None else ())
    if prior is None or len(prior[0]) == 0:
        return 0
    coords, scores, features = prior
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
    if store is not None:
        store.add(coords[keep], features[keep])
    return int(grid.count)


def _stream(
    slide: Slide, todo: SlidePlan | RegionPlan, backend: Backend, settings: RunSettings, grid: ScoreGrid,
    journal: TileJournal, resumed: int, store: QCStore | None,
) -> StreamTimes:
    def sink(coords: np.ndarray, scores: np.ndarray, qc: np.ndarray | None) -> None:
        grid.add(coords, scores)
        if store is not None:
            if qc is None:
                raise FwrdError(f"{slide.path}: QC is on but the decode workers gave no QC features")
            store.add(coords, qc)
        journal.append(coords, scores, qc if store is not None else None)

    bar = tqdm(
        total=todo.grid_total, initial=resumed, unit="tile", desc=slide.name, file=sys.stderr,
        disable=not settings.progress, dynamic_ncols=True, leave=False, mininterval=0.5,
    )
    decode: DecodeWorkers | RegionWorkers
    workers = min(settings.workers, usable_cpus())  # more threads than CPUs: only memory (a buffer pool each)
    qc = settings.qc_thresholds if store is not None else None
    if isinstance(todo, RegionPlan):
        decode = RegionWorkers(todo, slide.path, workers=workers, buffers=settings.buffers,
                               prefer_direct=settings.prefer_direct, qc=qc)
    else:
        decode = DecodeWorkers(
            todo, slide.path, batch_size=_batch_size(backend, settings), workers=workers,
            buffers=settings.buffer_count(workers), prefer_direct=settings.prefer_direct, qc=qc,
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
    times.resample = float(sum(decode.resample_seconds))
    times.qc_busy = float(sum(decode.qc_seconds))
    return times


def _write_outputs(
    slide: Slide, slide_dir: Path, plan: SlidePlan, grid: ScoreGrid, threshold: float, settings: RunSettings,
    gate: SlideGate, stamp: str | None = None,
) -> dict[str, Any]:
    """Every output file; calls (threshold, detections, GeoJSON, areas, slide score) from the gated heatmap. A
    slide QC sends to review says so on both pictures, so that a picture passed around alone is never read as a
    negative call."""
    stamps = [s for s in (stamp, review_stamp(gate.status, gate.reason)) if s]
    if grid.count != plan.grid_total:
        raise FwrdError(f"{slide.path}: scored {grid.count} of {plan.grid_total} tiles; outputs not written")
    g = plan.geometry
    values = gate.values  # flagged cells NaN
    scores = values[grid.scored]
    scale = model_scale(threshold)  # one colour scale for every slide of the model
    mpp = slide.mpp
    source = _scale_source(slide)
    write_tiles_csv(grid, slide_dir / "tiles.csv", kind_names(gate.codes) if settings.qc else None)
    with atomic_open(slide_dir / "heatmap.npy", "wb") as handle:
        np.save(handle, values)
    excluded = gate.flagged if settings.qc else None
    save_heatmap_png(values, slide_dir / "heatmap.png", scale, title=slide.name,
                     cell_um=None if mpp is None else g.stride * mpp, mpp_source=source, stamp=stamps,
                     excluded=excluded)
    features = write_geojson(slide_dir / "tumor.geojson", values, g, threshold, mpp)
    save_overlay(slide_dir / "overlay.png", thumbnail(slide), values, g, scale, title=slide.name,
                 features=features, mpp=mpp, mpp_source=source, stamp=stamps,
                 tissue=TissueMask(plan.mask, plan.mask_downsample), excluded=excluded)
    radius = settings.nms_radius or default_radius(g.stride)
    detections = write_detections(slide_dir / "detections.csv", values, g, radius)
    tumor_cells = int(np.count_nonzero(np.isfinite(scores) & (scores >= threshold)))
    raw = grid.scores()
    finite = scores[np.isfinite(scores)]
    reading = plan.reading
    return {
        "slide": slide.name,
        "path": str(slide.path),
        "status": gate.status,
        "review_reason": gate.reason,
        "score": slide_score(scores, threshold),
        "max_score": float(finite.max()) if finite.size else None,
        "max_score_raw": float(raw.max()) if raw.size else None,
        "threshold": float(threshold),
        "tiles_scored": int(grid.count),
        "tiles_excluded": int(np.count_nonzero(gate.flagged & grid.scored)),
        "tiles_above_threshold": tumor_cells,
        "tissue_area_mm2": tissue_area_mm2(plan.mask, plan.mask_downsample, mpp),
        "tumor_area_mm2": tumor_area_mm2(plan.mask, plan.mask_downsample, values, g, threshold, mpp),
        "tumor_regions": len(features),
        "detections": detections,
        "nms_radius_cells": radius,
        "level": plan.level,
        "mpp": mpp,  # level-0 microns per pixel used (areas, scale bars, reading level)
        "mpp_recorded": slide.recorded_mpp,  # what the slide's metadata says (null: nothing)
        "mpp_source": slide.mpp_source,
        "reading": {  # how tiles were read: the level, and whether footprints were shrunk to the model's mpp
            "level": reading.level, "model_mpp": None if reading.mpp is None else round(reading.mpp, 6),
            "resampled": reading.resampled, "source_tile": reading.source,
            "resampling": "Pillow BOX (area average)" if reading.resampled else None,
        },
        "tile_size": plan.tile,
        "stride": plan.stride,
        "tile_level0": g.tile,
        "stride_level0": g.stride,
        "slide_dimensions": list(slide.dimensions),
        "heatmap_shape": list(grid.values.shape),
        "qc": gate.summary,
    }


def thumbnail(slide: Slide, max_side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """The whole slide as RGB, long side <= max_side (fwrd.slide.thumbnail: never a whole large level)."""
    return slide_thumbnail(slide, max_side)


def _cells_area(plan: SlidePlan, mpp: float | None) -> Callable[[np.ndarray], float | None]:
    """mm^2 of tissue under a set of heatmap cells (QC's kinds), on the tumour area's footing."""
    return lambda cells: cells_area_mm2(plan.mask, plan.mask_downsample, cells, plan.geometry, mpp)


def _scale_source(slide: Slide) -> str:
    """What the pictures' scale bars say about where the resolution comes from."""
    if slide.mpp is None:
        return ""
    if slide.mpp_source == "--mpp":
        recorded = f"; the slide records {slide.recorded_mpp:g}" if slide.recorded_mpp else ""
        return f"{slide.mpp:g} um/px from --mpp{recorded}"
    return f"{slide.mpp:g} um/px from the slide"
