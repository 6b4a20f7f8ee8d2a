"""Tile labels from lesion masks: a grid cell is tumor when the mask marks the pixel at its tile's centre.

What a tile AUROC is measured against (dense validation, fwrd.export.dense_validation; the dense quality
study, benchmarks/dense_quality.py). The mask is read at level 2 (4 px mask pixels), finer than any
grid step fwrd uses.

    labels = tile_labels(load_mask(source, size, level=LABEL_LEVEL).tumor, grid.shape, stride0, tile0)
"""

from __future__ import annotations

import numpy as np

LABEL_LEVEL = 2  # 4 px mask pixels


def tile_labels(mask: np.ndarray | None, shape: tuple[int, int], stride_level0: int, tile_level0: int,
                level: int = LABEL_LEVEL) -> np.ndarray:
    """bool `shape` (the heatmap's): the mask at the centre of each cell's tile; all False without a mask."""
    labels = np.zeros(shape, bool)
    if mask is None:
        return labels
    rows, cols = np.indices(shape)
    y = (rows * stride_level0 + tile_level0 // 2) // 2**level
    x = (cols * stride_level0 + tile_level0 // 2) // 2**level
    inside = (y < mask.shape[0]) & (x < mask.shape[1])
    labels[inside] = mask[y[inside], x[inside]]
    return labels
