"""The knobs of one `fwrd-run`, apart from those the model itself carries (tile size, resolution)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass

from fwrd.config import QCThresholds, check_threshold
from fwrd.errors import FwrdError
from fwrd.slide.grid import DEFAULT_MIN_TISSUE
from fwrd.slide.qc import JUDGING_RULES
from fwrd.slide.qc_features import FEATURE_RULES

# How grids and tiles come out of a slide: the tissue mask at the reference's resolution from any level
# (fwrd.slide.thumbnail), white-balanced by its glass with the saturation threshold capped (fwrd.slide.tissue),
# and footprints shrunk by box averaging (fwrd.slide.resample). Part of the resume keys, so outputs and
# journals made under other rules are scored again instead of kept.
READING_RULES = "mask@15.55um;glass-balance;s<=0.12;box-shrink;v2"


@dataclass(frozen=True)
class RunSettings:
    """How to score slides.

    Attributes:
        batch_size: tiles per inference batch.
        workers: decode threads, each with its own tile reader.
        stride: pixels between grid points at the reading level (None: the tile size; the paper's
            dense grid is 64 for 256 px tiles).
        mpp: level-0 microns per pixel to use instead of the slide's (or when it has none).
        threshold: tumor threshold instead of the model's.
        min_tissue: smallest tissue fraction under a tile for it to be scored.
        nms_radius: detections.csv NMS radius in heatmap cells (None: 384 level-0 px, the paper's 6
            cells at stride 64).
        resume: skip slides whose outputs are complete for the same model and settings; continue an
            interrupted slide from its journal.
        prefer_direct: decode tiled-JPEG TIFF levels directly (libjpeg-turbo) instead of via OpenSlide.
        progress: show a progress bar per slide on stderr.
        buffers: uint8 batch buffers in flight (None: 2 per worker + 2; dense: a region buffer per
            worker + 1); bounds memory.
        dense: score the grid from region passes (fwrd.runtime.regions) instead of one pass per tile.
        region: dense only: largest region side, level pixels, a multiple of 32 (None: the backend's
            default, see fwrd.runtime.regions.default_side).
        margin: dense only: context kept around every tile window, level pixels, a multiple of 32
            (None: fwrd.runtime.regions.default_margin).
        qc: find artifacts (pen, dirt, bubbles, folds, blur: fwrd.slide.qc) and keep them out of the calls.
        qc_thresholds: the thresholds QC applies (None until `qc_settings` fills in the model's own).
    """

    batch_size: int = 16
    workers: int = 2
    stride: int | None = None
    mpp: float | None = None
    threshold: float | None = None
    min_tissue: float = DEFAULT_MIN_TISSUE
    nms_radius: int | None = None
    resume: bool = False
    prefer_direct: bool = True
    progress: bool = True
    buffers: int | None = None
    dense: bool = False
    region: int | None = None
    margin: int | None = None
    qc: bool = True
    qc_thresholds: QCThresholds | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers"):
            if int(getattr(self, name)) < 1:
                raise FwrdError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.stride is not None and self.stride < 1:
            raise FwrdError(f"stride must be at least 1 pixel, got {self.stride}")
        if self.mpp is not None and not (self.mpp > 0 and math.isfinite(self.mpp)):
            raise FwrdError(f"microns per pixel must be a positive number, got {self.mpp}")
        if self.threshold is not None:
            check_threshold(self.threshold, "--threshold")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise FwrdError(f"minimum tissue fraction must be in [0, 1], got {self.min_tissue}")
        if self.nms_radius is not None and self.nms_radius < 1:
            raise FwrdError(f"NMS radius must be at least 1 cell, got {self.nms_radius}")
        if self.buffers is not None and self.buffers < 2:
            raise FwrdError(f"at least 2 batch buffers are needed, got {self.buffers}")
        for name in ("region", "margin"):
            value = getattr(self, name)
            if value is not None and (value < 0 or value % 32 or (name == "region" and value == 0)):
                raise FwrdError(f"--{name} must be a {'positive' if name == 'region' else 'non-negative'} "
                                f"multiple of 32 pixels, got {value}")
            if value is not None and not self.dense:
                raise FwrdError(f"--{name} sets how --dense scores a slide; give --dense too")

    def buffer_count(self, workers: int) -> int:
        """Batch buffers for `workers` decode threads (2 each + 2, unless `buffers` says)."""
        return self.buffers or 2 * workers + 2

    def score_key(self, model_sha256: str, slide: str = "") -> str:
        """Identifies what the tile scores depend on (model, grid, resolution and how it is read, the reader
        that decodes the pixels and the slide file, see fwrd.slide.identity): the resume journal's key."""
        fields = {"model": model_sha256, "stride": self.stride, "mpp": self.mpp, "min_tissue": self.min_tissue,
                  "reading": READING_RULES, "reader": "auto" if self.prefer_direct else "openslide"}
        if self.dense:  # other scores than tile passes (and, within a tolerance, per region geometry)
            fields["dense"] = {"region": self.region, "margin": self.margin}
        if self.qc:  # the journal holds QC features (made by FEATURE_RULES), and the calls depend on the thresholds
            fields["qc"] = {"thresholds": self.qc_thresholds.to_dict() if self.qc_thresholds is not None else "model",
                            "features": FEATURE_RULES}
        if slide:
            fields["slide"] = slide
        return _digest(fields)

    def output_key(self, model_sha256: str) -> str:
        """Identifies how outputs were made (model, grid, threshold, NMS), the same for every slide of a
        run: summary.json's `run_key`. --resume compares it and the slide's identity."""
        fields = {"scores": self.score_key(model_sha256), "threshold": self.threshold, "nms": self.nms_radius}
        if self.qc:  # the calls follow QC's judging rules; the journal (features only) does not depend on them
            fields["qc_rules"] = JUDGING_RULES
        return _digest(fields)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["qc_thresholds"] = None if self.qc_thresholds is None else self.qc_thresholds.to_dict()
        return data


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity: what a Slurm allocation or `taskset` grants), at least 1.
    Decode and inference threads beyond it only cost memory (a batch pool per decode thread) and, for ONNX
    Runtime's spinning thread pool, can stall the run: `fwrd-run` bounds --workers and --threads by it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
