"""QC gates the calls: artifact tiles never count, and a slide QC cannot vouch for says `review`.

    decode workers -> QC features per tile (fwrd.slide.qc) -> QCStore (and the resume journal)
    end of slide: judge every tile against the slide's own tissue -> codes per heatmap cell (every kind grown
      into its weaker neighbours, lone fold tiles dropped, bubble insides filled: fwrd.slide.qc.on_grid)
      -> gated scores: flagged cells become NaN, so they never reach the threshold, the detections, the
         GeoJSON, the tumour area or the slide score (tiles.csv keeps each tile's raw score and its kind)
      -> verdict: `review` when QC excluded more than `review_share` of the scored tissue, or when more than
         `review_touching` of the above-threshold tiles touch an excluded tile (overlap its footprint or abut
         it): such calls may be the artifact's edge, not tumour. Never `ok`, never a silent negative.

    gate = gate_slide(grid, store, thresholds, threshold, area_mm2)
    gate.values   # heatmap with flagged cells NaN;  gate.codes: uint8 per cell (fwrd.slide.qc.KINDS)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from fwrd.config import QCThresholds
from fwrd.runtime.outputs.heatmap import ScoreGrid
from fwrd.slide.qc import KINDS, code_of, judge, on_grid
from fwrd.slide.qc_features import FEATURES

OK, REVIEW = "ok", "review"


class QCStore:
    """The QC features of the scored tiles, as the batches arrive (level-0 top-lefts and features)."""

    def __init__(self) -> None:
        self._coords: list[np.ndarray] = []
        self._features: list[np.ndarray] = []

    def add(self, coords: np.ndarray, features: np.ndarray) -> None:
        self._coords.append(np.asarray(coords, np.int64).reshape(-1, 2))
        self._features.append(np.asarray(features, np.float32).reshape(-1, len(FEATURES)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._coords:
            return np.zeros((0, 2), np.int64), np.zeros((0, len(FEATURES)), np.float32)
        return np.concatenate(self._coords), np.concatenate(self._features)


@dataclass
class SlideGate:
    """QC's decision for one slide."""

    codes: np.ndarray  # uint8 per heatmap cell: 0 ok (or not scored), k: KINDS[k - 1]
    values: np.ndarray  # the heatmap with flagged cells NaN: what every call is made from
    status: str = OK
    reason: str = ""
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json's "qc"

    @property
    def flagged(self) -> np.ndarray:
        return self.codes > 0


def touch_radius(tile: int, stride: int) -> int:
    """Cells around a tile whose tiles overlap its footprint or abut it."""
    return max(1, math.ceil(tile / stride))


def gate_off(grid: ScoreGrid) -> SlideGate:
    """QC off: every scored tile counts."""
    return SlideGate(np.zeros(grid.values.shape, np.uint8), grid.values, OK, "", {"enabled": False})


def gate_slide(grid: ScoreGrid, store: QCStore, thresholds: QCThresholds, threshold: float,
               area_mm2: Callable[[np.ndarray], float | None]) -> SlideGate:
    """Judge the slide's tiles (fwrd.slide.qc.judge), gate the heatmap and give the verdict (module docstring).
    `area_mm2(cells)` measures a set of heatmap cells on the tumour area's footing (outputs.areas)."""
    g = grid.geometry
    coords, features = store.arrays()
    verdict = judge(features, thresholds)
    codes = np.zeros(grid.values.shape, np.uint8)
    rows, cols = g.cells(coords)
    codes[rows, cols] = verdict.codes
    weak = {}
    for kind, hits in verdict.weak.items():
        weak[kind] = np.zeros(grid.values.shape, bool)
        weak[kind][rows, cols] = hits
    codes = on_grid(codes, weak, grid.scored, thresholds, cells_per_tile=(g.tile / g.stride) ** 2)
    flagged = codes > 0
    values = np.where(flagged, np.float32(np.nan), grid.values)
    scored = int(grid.count)
    excluded = int(np.count_nonzero(flagged & grid.scored))
    share = excluded / scored if scored else 0.0
    with np.errstate(invalid="ignore"):
        above = np.isfinite(values) & (values >= threshold)
    size = 2 * touch_radius(g.tile, g.stride) + 1
    near = ndimage.binary_dilation(flagged, structure=np.ones((size, size), bool)) if excluded else flagged
    touching = int(np.count_nonzero(above & near))
    above_count = int(np.count_nonzero(above))
    reasons = []
    if share > thresholds.review_share:
        reasons.append(f"QC excluded {share:.0%} of the scored tissue (more than {thresholds.review_share:.0%}: "
                       f"{_kinds_text(codes)})")
    if above_count and touching / above_count > thresholds.review_touching:
        reasons.append(f"{touching} of the {above_count} tiles at or above the threshold touch tiles QC excluded "
                       f"({_kinds_text(codes)})")
    kinds = {}
    for kind in KINDS:
        cells = codes == code_of(kind)
        kinds[kind] = {"tiles": int(np.count_nonzero(cells)), "area_mm2": area_mm2(cells)}
    summary = {
        "enabled": True,
        "tiles_excluded": excluded,
        "excluded_share": share,
        "excluded_area_mm2": area_mm2(flagged & grid.scored),
        "kinds": kinds,
        "above_threshold_touching": touching,
        "reference": verdict.reference,
        "reference_tiles": verdict.reference_tiles,
        "thresholds": thresholds.to_dict(),
    }
    if not verdict.reference_tiles:
        summary["note"] = "too few tiles for a slide reference: folds and blur were not judged"
    status = REVIEW if reasons else OK
    return SlideGate(codes, values, status, "; ".join(reasons), summary)


def _kinds_text(codes: np.ndarray) -> str:
    counts = [(kind, int(np.count_nonzero(codes == code_of(kind)))) for kind in KINDS]
    return ", ".join(f"{kind} {n} tiles" for kind, n in counts if n) or "none"
