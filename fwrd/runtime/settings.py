"""The knobs of one `fwrd-run`, apart from those the model itself carries (tile size, resolution)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from fwrd.config import check_threshold
from fwrd.errors import FwrdError
from fwrd.slide.grid import DEFAULT_MIN_TISSUE


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

    @property
    def buffer_count(self) -> int:
        return self.buffers or 2 * self.workers + 2

    def score_key(self, model_sha256: str, slide: str = "") -> str:
        """Identifies what the tile scores depend on (model, grid, resolution and the slide file, see
        fwrd.slide.identity): the resume journal's key."""
        fields = {"model": model_sha256, "stride": self.stride, "mpp": self.mpp, "min_tissue": self.min_tissue}
        if self.dense:  # other scores than tile passes (and, within a tolerance, per region geometry)
            fields["dense"] = {"region": self.region, "margin": self.margin}
        if slide:
            fields["slide"] = slide
        return _digest(fields)

    def output_key(self, model_sha256: str) -> str:
        """Identifies how outputs were made (model, grid, threshold, NMS), the same for every slide of a
        run: summary.json's `run_key`. --resume compares it and the slide's identity."""
        fields = {"scores": self.score_key(model_sha256), "threshold": self.threshold, "nms": self.nms_radius}
        return _digest(fields)

    def to_dict(self) -> dict:
        return asdict(self)


def _digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
