"""summary.json's areas, both measured on the tissue mask so that tumour never exceeds tissue.

Tissue area is the mask's pixels. Tumour area used to be above-threshold cells x stride^2, a different
footing: cells reach past the tissue edge (and a mask pixel only counts when its colour passes the rule),
so on a small or ragged section it could exceed the tissue area. Now it is the tissue under the cells at or
above the threshold: each cell stands for its stride x stride square (heatmap.CellGeometry), the squares
do not overlap, and the tissue fraction of each square is read off the mask exactly
(grid.footprint_fraction), so tumour <= tissue by construction.

    tumor_area_mm2(mask, mask_ds, grid.values, geometry, threshold, mpp)
    cells_area_mm2(mask, mask_ds, cells, geometry, mpp)     # any set of cells (QC's kinds), same footing
"""

from __future__ import annotations

import numpy as np

from fwrd.runtime.outputs.heatmap import CellGeometry
from fwrd.slide.grid import footprint_fraction


def tissue_area_mm2(mask: np.ndarray, mask_downsample: float, mpp: float | None) -> float | None:
    """Area of the tissue mask in mm^2 (None without a resolution)."""
    if mpp is None:
        return None
    return float(np.count_nonzero(mask)) * (mask_downsample * mpp) ** 2 / 1e6


def tumor_area_mm2(mask: np.ndarray, mask_downsample: float, values: np.ndarray, geometry: CellGeometry,
                   threshold: float, mpp: float | None) -> float | None:
    """Area in mm^2 of tissue under the cells scoring >= `threshold` (None without a resolution)."""
    with np.errstate(invalid="ignore"):
        return cells_area_mm2(mask, mask_downsample, np.isfinite(values) & (values >= threshold), geometry, mpp)


def cells_area_mm2(mask: np.ndarray, mask_downsample: float, cells: np.ndarray, geometry: CellGeometry,
                   mpp: float | None) -> float | None:
    """Area in mm^2 of tissue under the heatmap cells set in `cells` (bool, the grid's shape; None without a
    resolution): the tumour area, and the area of each kind QC excluded, on one footing."""
    if mpp is None:
        return None
    rows, cols = np.nonzero(cells)
    if rows.size == 0:
        return 0.0
    # only the rows and columns that hold a cell: the separable fraction is (rows x cols)
    urows, ucols = np.unique(rows), np.unique(cols)
    xs = ucols * geometry.stride + geometry.offset
    ys = urows * geometry.stride + geometry.offset
    fraction = footprint_fraction(mask, mask_downsample, xs, ys, geometry.stride)
    covered = fraction[np.searchsorted(urows, rows), np.searchsorted(ucols, cols)]
    return float(covered.sum()) * (geometry.stride * mpp) ** 2 / 1e6
