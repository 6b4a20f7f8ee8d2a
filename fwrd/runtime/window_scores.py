"""Dense scoring's tile rule: every tile window's FW-RD score from one region pass, with numpy.

A region pass gives the per-scale 1 - cos maps m_s of a region (s = 4, 8, 16; the graph's outputs
`map_s4`, `map_s8`, `map_s16`). The dense score of the tile window whose top-left lies (ox, oy) pixels
from the region's top-left is FW-RD's per-tile rule applied to the region's maps under that window:
each scale's T/s x T/s block upsampled to T x T with align_corners=True, summed over the scales and
averaged. The upsampling is the tile's own (anchored at the window, not stretched over the region),
so an isolated tile-sized region gives exactly the per-tile score, and a window's score depends only
on the features under it, wherever the region around it starts. The mean is separable per scale:

    score(ox, oy) = sum_s  w(oy, s) . m_s . w(ox, s)
    w(o, s)[j]    = mean_i hat(o / s + i (T/s - 1) / (T - 1) - j),   hat(u) = max(0, 1 - |u|)

i.e. the per-tile weights (`fwrd.model.anomaly_map.upsample_mean_weights`) moved o/s feature pixels; a window that does not
start on a feature pixel (o not a multiple of s) reads the bilinear interpolation of the map between
them. All windows of a region at once: Wy_s @ m_s @ Wx_s^T, one small matrix product per scale.

    scores = window_scores(maps, tile=256, xs=np.array([0, 64, 128]), ys=np.array([0, 64]))  # [2, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fwrd.config import MAP_STRIDES


def window_weights(offsets: np.ndarray, tile: int, stride: int, n: int) -> np.ndarray:
    """float64 [len(offsets), n]: row k averages the align_corners upsample (to `tile` pixels) of the
    tile/stride map samples starting `offsets[k]` pixels into a map of n samples at `stride` pixels."""
    offsets = np.asarray(offsets, np.float64).reshape(-1)
    side = tile // stride  # samples under one tile
    if len(offsets) and (offsets.min() < 0 or offsets.max() + tile > n * stride):
        raise ValueError(f"tile windows at offsets {offsets.min():g}..{offsets.max():g} do not fit in a map of "
                         f"{n} samples at stride {stride} ({n * stride} px) for {tile} px tiles")
    step = (side - 1) / (tile - 1) if side > 1 else 0.0
    pos = offsets[:, None] / stride + np.arange(tile, dtype=np.float64)[None, :] * step  # [K, tile]
    lo = np.clip(np.floor(pos).astype(np.int64), 0, max(n - 2, 0))
    frac = pos - lo
    weights = np.zeros((len(offsets), n), np.float64)
    rows = np.broadcast_to(np.arange(len(offsets))[:, None], pos.shape)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    if n > 1:
        np.add.at(weights, (rows, lo + 1), frac)
    return weights / tile


def window_scores(maps: Sequence[np.ndarray], tile: int, xs: np.ndarray, ys: np.ndarray,
                  strides: Sequence[int] = MAP_STRIDES) -> np.ndarray:
    """float32 [len(ys), len(xs)]: the score of every tile window whose top-left is (xs[i], ys[j]) pixels
    into the region whose per-scale maps (2-D, [H/s, W/s]) are `maps`."""
    weights = [(window_weights(ys, tile, s, np.shape(m)[0]), window_weights(xs, tile, s, np.shape(m)[1]))
               for m, s in zip(maps, strides)]
    return _table(maps, weights).astype(np.float32)


def _table(maps: Sequence[np.ndarray], weights: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """float64 [rows, columns]: sum over scales of wy @ m @ wx^T."""
    total = None
    for m, (wy, wx) in zip(maps, weights):
        part = wy @ np.asarray(m, np.float64) @ wx.T
        total = part if total is None else total + part
    return total


@dataclass(frozen=True)
class WindowPlan:
    """What scores a region's tile windows, apart from its maps: per scale the weights (wy, wx), and which
    (row, column) of the all-windows table Wy m Wx^T each window is. The torch backend multiplies them
    with the maps on the GPU (fwrd.model.region_scores), so that only the scores come back."""

    weights: tuple[tuple[np.ndarray, np.ndarray], ...]  # per scale: wy [rows, H/s], wx [columns, W/s], float64
    rows: np.ndarray  # int64 [N]
    cols: np.ndarray  # int64 [N]


def map_shapes(height: int, width: int, strides: Sequence[int] = MAP_STRIDES) -> list[tuple[int, int]]:
    """The per-scale maps' shapes of a region of height x width pixels."""
    return [(height // s, width // s) for s in strides]


def window_plan(shapes: Sequence[tuple[int, int]], tile: int, offsets: np.ndarray,
                strides: Sequence[int] = MAP_STRIDES) -> WindowPlan:
    """The WindowPlan of the tile windows at `offsets` (int (N, 2) x, y pixels into the region) over maps
    of `shapes`."""
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    xs, col = np.unique(offsets[:, 0], return_inverse=True)
    ys, row = np.unique(offsets[:, 1], return_inverse=True)
    weights = tuple((window_weights(ys, tile, s, h), window_weights(xs, tile, s, w))
                    for (h, w), s in zip(shapes, strides))
    return WindowPlan(weights, row.reshape(-1).astype(np.int64), col.reshape(-1).astype(np.int64))


def planned_scores(maps: Sequence[np.ndarray], plan: WindowPlan) -> np.ndarray:
    """float32 [N]: the scores of `plan`'s windows from the region's maps (float64 sums, as window_scores)."""
    return _table(maps, plan.weights).astype(np.float32)[plan.rows, plan.cols]


def scores_at(maps: Sequence[np.ndarray], tile: int, offsets: np.ndarray) -> np.ndarray:
    """float32 [N]: the scores of the tile windows at `offsets` (int (N, 2) x, y pixels into the region)."""
    return planned_scores(maps, window_plan([np.shape(m) for m in maps], tile, offsets))
