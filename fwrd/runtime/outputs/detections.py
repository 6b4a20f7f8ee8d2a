"""detections.csv for Camelyon16's lesion FROC: non-maximum suppression on the score grid.

Same greedy rule as NCRF's `nms.py` (which FW-RD reuses): repeatedly take the highest remaining cell,
emit it, and suppress the window of cells [row - r, row + r) x [col - r, col + r) around it (NCRF's
half-open window, clipped to the grid), until no cell above `min_score` is left. The radius is in
heatmap cells; the default is the paper's 6 cells at stride 64 (384 level-0 px) converted to the
run's stride. Ties go to the first cell in row-major order, as repeated `argmax` would pick.
Rows are `Confidence,X,Y` with no header; X, Y are the level-0 centre of the detected tile.

    write_detections(out / "detections.csv", grid.values, grid.geometry)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fwrd.atomic import atomic_open
from fwrd.runtime.outputs.heatmap import CellGeometry

PAPER_RADIUS_PX = 384  # 6 cells of the paper's stride-64 (level-6) map, in level-0 pixels


def default_radius(stride: int) -> int:
    """NMS radius in cells for a grid of `stride` level-0 pixels (>= 1)."""
    return max(1, round(PAPER_RADIUS_PX / stride))


def nms(values: np.ndarray, radius: int, min_score: float | None = None) -> list[tuple[float, int, int]]:
    """Greedy NMS on a 2-D score grid (NaN = no tile): [(score, row, col)], best first.

    Equivalent to NCRF's loop `while max > min_score: emit argmax; zero its window`, but each cell is
    visited once (sorted order), so a 5M-cell grid takes about a second instead of hours.
    """
    if radius < 1:
        raise ValueError(f"NMS radius must be at least 1 cell, got {radius}")
    valid = np.isfinite(values)
    if min_score is not None:
        valid &= values > min_score
    flat = np.flatnonzero(valid)
    order = flat[np.argsort(-values.ravel()[flat], kind="stable")]
    suppressed = np.zeros(values.shape, bool)
    height, width = values.shape
    out: list[tuple[float, int, int]] = []
    for index in order.tolist():
        row, col = divmod(index, width)
        if suppressed[row, col]:
            continue
        out.append((float(values[row, col]), row, col))
        suppressed[max(0, row - radius):min(height, row + radius), max(0, col - radius):min(width, col + radius)] = True
    return out


def write_detections(
    path: str | Path, values: np.ndarray, geometry: CellGeometry, radius: int | None = None,
    min_score: float | None = None,
) -> int:
    """Write detections.csv (no header, `Confidence,X,Y`); returns the number of rows."""
    found = nms(values, radius or default_radius(geometry.stride), min_score)
    rows = np.array([r for _, r, _ in found], np.int64)
    cols = np.array([c for _, _, c in found], np.int64)
    xs, ys = geometry.tile_centres(rows, cols)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        for (score, _, _), x, y in zip(found, xs.tolist(), ys.tolist()):
            handle.write(f"{score:.9g},{x},{y}\n")
    return len(found)
