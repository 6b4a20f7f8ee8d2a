"""Training patches from annotated slides (FW-RD preprocessing), without torch.

For every slide: tissue mask (method.md rule), ASAP XML (`<slide>.xml` in the annotation folder;
none means normal patches only), candidates on a tile/4 lattice (see patch_sampling), a seeded
spaced sample per class, and the requested counts spread evenly over the slides that can give
them. Each patch is read with `Slide.read_region` at the level; the slide is never decoded whole.

Output, built in a hidden sibling folder and renamed into place at the end (an interrupted run
never leaves a complete-looking folder):
    OUT/normal/<slide>_<x>_<y>.png, OUT/tumor/<slide>_<x>_<y>.png   (x, y: level-0 top-left; control
                       characters in a slide's name written as escapes: fwrd.safe_text.for_terminal)
    OUT/patches.csv    slide,x,y,level,tile,label   (label normal|tumor; a name that a spreadsheet would run
                       as a formula is prefixed with ': fwrd.safe_text.csv_cell)
    OUT/patches.json   {"level", "tile", "context", "mpp" (of the patches; null unless all slides agree), ...}

With `mpp` M (`fwrd-patches --mpp`) patches are read at M microns per pixel whatever each slide's pyramid:
from the level at M, or shrunk from a finer one with the one resampling scoring uses (fwrd.slide.resample),
so a model trained on them sees at run time the pixels it was trained on; patches.json records M.

With `qc` thresholds (the default; fwrd.slide.qc) every patch is checked before it is written, on the pixels
the model will see (read_tile): patches QC flags (pen, dirt, bubble; fold and blur judged against the slide's
other patches) are skipped and counted (`PatchResult.skipped`, patches.json `qc_skipped`), so a model learns
neither artifacts as normal tissue nor as tumor. Only the requested patches are read; a skipped one is not
replaced, so counts can fall short.

With `context` C > 0 each PNG is (tile + 2C) px: the tile with C px of its real surroundings on every
side (white beyond the slide's edge), for training a model that dense scoring can use (README, Dense
scoring). Sampling, labels and x, y are those of the tile itself, whatever C.

    result = extract_patches(["slides/"], "patches/", annotations_dir="annotations/",
                             n_normal=500, n_tumor=50, tile=256, level=0, seed=0)
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import zlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fwrd import __version__
from fwrd.config import QCThresholds, validate_context, validate_tile_size
from fwrd.errors import DataError, FwrdError, InputNotFound
from fwrd.safe_text import csv_cell, for_terminal
from fwrd.slide.annotations import find_annotation, load_asap_xml
from fwrd.slide.discover import find_slides, slide_name
from fwrd.slide.qc import KINDS, judge
from fwrd.slide.qc_features import tile_features
from fwrd.slide.reader import open_slide
from fwrd.slide.resample import Reading, choose_reading, read_tile
from fwrd.slide.tissue import tissue_and_glass
from fwrd.training.patch_sampling import (
    DEFAULT_MIN_TISSUE,
    allocate,
    slide_candidates,
    spread,
)

LABELS = ("normal", "tumor")
CSV_HEADER = ("slide", "x", "y", "level", "tile", "label")
OUTPUT_ENTRIES = {"normal", "tumor", "patches.csv", "patches.json"}
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)  # PNG encoding threads


@dataclass
class PatchResult:
    out: Path
    counts: dict[str, int]  # label -> patches written
    requested: dict[str, int]
    per_slide: dict[str, dict[str, int]]  # slide -> label -> patches written
    seconds: float
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # QC kind -> patches not written

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def patches_per_s(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class _SlidePlan:
    path: Path
    name: str
    mpp: float | None  # level-0 microns per pixel
    reading: Reading  # the level read and the footprint shrunk to each patch
    picks: dict[str, np.ndarray]  # label -> (k, 2) level-0 top-lefts, in sampling order

    @property
    def downsample(self) -> float:
        """Level-0 pixels per patch pixel."""
        return self.reading.downsample * self.reading.ratio


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FwrdError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FwrdError(f"{out}: folder is not empty (pass --overwrite to replace it)")
        strangers = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_ENTRIES)
        if strangers:
            raise FwrdError(
                f"{out}: refusing to replace a folder that is not a patch folder (it holds {strangers[0]!r})"
            )


def _plan(path: Path, annotations_dir: Path | None, tile: int, level: int, seed: int,
          limits: dict[str, int], min_tissue: float, mpp_target: float | None = None) -> _SlidePlan:
    xml = find_annotation(path, annotations_dir)
    ann = load_asap_xml(xml) if xml is not None else None
    with open_slide(path) as slide:
        reading = choose_reading(slide, tile, mpp_target, level)
        cands = slide_candidates(slide, ann, tile, reading.level, min_tissue, reading)
        mpp = slide.mpp
    key = [int(seed), zlib.crc32(slide_name(path).encode())]
    picks = {}
    for i, label in enumerate(LABELS):
        idx = spread(getattr(cands, label), np.random.default_rng(key + [i]), limits[label])
        picks[label] = np.stack([cands.xs[idx[:, 1]], cands.ys[idx[:, 0]]], axis=1).astype(np.int64)
    return _SlidePlan(path, slide_name(path), mpp, reading, picks)


def _common_mpp(plans: list[_SlidePlan]) -> float | None:
    """Microns per pixel of the patches when every slide records one and they agree within 10%."""
    values = [p.mpp * p.downsample for p in plans if p.mpp is not None]
    if not values or len(values) < len(plans):
        return None
    lo, hi = min(values), max(values)
    return float(np.median(values)) if hi <= lo * 1.10 else None


def _finish(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder to `out`, replacing an old patch folder if there is one."""
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def extract_patches(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    annotations_dir: str | Path | None,
    n_normal: int,
    n_tumor: int,
    tile: int = 256,
    level: int = 0,
    seed: int = 0,
    overwrite: bool = False,
    min_tissue: float = DEFAULT_MIN_TISSUE,
    progress: bool = False,
    workers: int = DEFAULT_WORKERS,
    context: int = 0,
    mpp: float | None = None,
    qc: QCThresholds | None = QCThresholds(),
) -> PatchResult:
    """Extract `n_normal` normal and `n_tumor` tumor patches of `tile` px at `level`, or at `mpp` microns
    per pixel (module docstring)."""
    start = time.perf_counter()
    validate_tile_size(int(tile))
    context = validate_context(context)
    if n_normal < 0 or n_tumor < 0 or n_normal + n_tumor == 0:
        raise FwrdError(f"ask for at least one patch (got --normal {n_normal} --tumor {n_tumor})")
    if level < 0:
        raise FwrdError(f"level must be >= 0, got {level}")
    if mpp is not None and not (mpp > 0 and np.isfinite(mpp)):
        raise FwrdError(f"microns per pixel must be a positive number, got {mpp}")
    if workers < 1:
        raise FwrdError(f"workers must be >= 1, got {workers}")
    if not 0.0 <= min_tissue <= 1.0:
        raise FwrdError(f"min_tissue must be in [0, 1], got {min_tissue}")
    out = Path(out)
    ann_dir = Path(annotations_dir) if annotations_dir is not None else None
    if ann_dir is not None and not ann_dir.is_dir():
        raise InputNotFound(f"{ann_dir}: no such annotation folder")
    _check_out(out, overwrite)
    slides = find_slides(inputs)
    requested = {"normal": int(n_normal), "tumor": int(n_tumor)}

    plans = [
        _plan(path, ann_dir, tile, level, seed, requested, min_tissue, mpp)
        for path in tqdm(slides, desc="planning", unit="slide", disable=not progress)
    ]
    warnings: list[str] = []
    for label in LABELS:
        quota = allocate([len(p.picks[label]) for p in plans], requested[label])
        for plan, q in zip(plans, quota):
            plan.picks[label] = plan.picks[label][:q]
        if sum(quota) < requested[label]:
            warnings.append(f"only {sum(quota)} {label} patches available (asked for {requested[label]})")
    if sum(len(p.picks[label]) for p in plans for label in LABELS) == 0:
        raise DataError("no patches could be extracted: no tissue or tumor candidates on these slides")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        skipped: dict[str, int] = {}
        rows = _write_patches(tmp, plans, tile, progress, workers, context, qc, skipped)
        counts = {label: sum(1 for r in rows if r[5] == label) for label in LABELS}
        per_slide = {p.name: {label: sum(1 for r in rows if r[0] == p.name and r[5] == label) for label in LABELS}
                     for p in plans}
        meta = {
            "level": int(level), "tile": int(tile), "context": context,
            "mpp": float(mpp) if mpp is not None else _common_mpp(plans),
            "resampling": "Pillow BOX (area average) from the finest level at least as fine" if mpp is not None else None,
            "seed": int(seed), "min_tissue": float(min_tissue), "requested": requested, "counts": counts,
            "qc": None if qc is None else qc.to_dict(), "qc_skipped": skipped,
            "slides": {p.name: {"mpp": p.mpp, "level": p.reading.level, "source_tile": p.reading.source,
                                **per_slide[p.name]} for p in plans},
            "fwrd_version": __version__,
        }
        (tmp / "patches.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _finish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if sum(skipped.values()):
        warnings.append(f"skipped {sum(skipped.values())} patches QC flagged ("
                        + ", ".join(f"{k} {n}" for k, n in skipped.items()) + ")")
    return PatchResult(out, counts, requested, per_slide, time.perf_counter() - start, warnings, skipped)


def _save_png(rgb: np.ndarray, path: Path) -> None:
    Image.fromarray(rgb).save(path, compress_level=1)  # level 1: half the size of 0, 4x faster than 6


def _qc_keep(slide, jobs: list[tuple[int, int, str]], reading: Reading, qc: QCThresholds,
             skipped: dict[str, int]) -> set[tuple[int, int, str]]:
    """The jobs whose tile QC does not flag: each tile read as the model sees it (read_tile), its features
    judged against the slide's other picks (fwrd.slide.qc). A first pass over the picks: QC must see them all
    before judging (a second read, rather than every patch of the slide held in memory)."""
    _, _, glass = tissue_and_glass(slide)
    features = np.concatenate([tile_features(read_tile(slide, reading, x, y), np.zeros((1, 2)), reading.tile,
                                             glass, qc) for y, x, _ in jobs])
    codes = judge(features, qc).codes
    for code in codes[codes > 0].tolist():
        kind = KINDS[code - 1]
        skipped[kind] = skipped.get(kind, 0) + 1
    return {job for job, code in zip(jobs, codes.tolist()) if code == 0}


def _write_patches(
    tmp: Path, plans: list[_SlidePlan], tile: int, progress: bool, workers: int, context: int = 0,
    qc: QCThresholds | None = None, skipped: dict[str, int] | None = None,
) -> list[tuple]:
    """Read the patches in this thread and encode the PNGs on `workers` threads (both release the
    GIL), with a bounded queue so memory stays flat; patches QC flags are skipped and counted."""
    for label in LABELS:
        (tmp / label).mkdir(parents=True)
    rows: list[tuple] = []
    total = sum(len(p.picks[label]) for p in plans for label in LABELS)
    pending: deque[Future] = deque()
    with tqdm(total=total, desc="patches", unit="patch", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fwrd-png") as pool:
        for plan in plans:
            jobs = [(int(y), int(x), label) for label in LABELS for x, y in plan.picks[label]]
            if not jobs:
                continue
            with open_slide(plan.path) as slide:
                if qc is not None:
                    keep = _qc_keep(slide, sorted(jobs), plan.reading, qc, skipped if skipped is not None else {})
                    bar.update(len(jobs) - len(keep))
                    jobs = [job for job in jobs if job in keep]
                for y, x, label in sorted(jobs):  # row-major: neighbouring reads share file tiles
                    rgb = read_tile(slide, plan.reading, x, y, context)
                    pending.append(pool.submit(_save_png, rgb, tmp / label / f"{for_terminal(plan.name)}_{x}_{y}.png"))
                    rows.append((plan.name, x, y, plan.reading.level, tile, label))
                    while len(pending) > 2 * workers:
                        pending.popleft().result()
                        bar.update(1)
        while pending:
            pending.popleft().result()
            bar.update(1)
    rows.sort(key=lambda r: (r[0], r[5], r[2], r[1]))
    with open(tmp / "patches.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        writer.writerows((csv_cell(name), *rest) for name, *rest in rows)  # a name is text, never a formula
    return rows
