"""Plan a slide for dense scoring: the tile grid's points grouped into regions, one network pass each.

    tile plan (plan.py) -> cells of K x K grid points -> one region per cell that holds points:
      the bounding box of its points' tiles, widened by the margin on every side and snapped outwards
      to multiples of 32 level pixels (the network's stride, so all regions' feature grids line up)

Every grid point lies in exactly one cell, so it is scored exactly once, by the region whose core (the
region less its margin) holds its whole tile. The margin hides what the region's border does to the
features near it (the network pads with zeros there): the README's "Dense scoring" gives the
measurement behind the default. K is the largest cell for which no region exceeds `side` pixels.
With `fixed=True` every region is `side` x `side` (one input shape for GPU backends, which tune their
kernels per shape); otherwise regions shrink to their points (less work at tissue borders), their sides
rounded up to a multiple of `quantum` pixels (at most `side`): a GPU backend that tunes per shape asks
for a coarse quantum, so a slide brings few shapes (at most (side / quantum)^2) and no region the full
side where its tissue does not need it.
Regions may reach past the slide's edge by up to the margin: readers return white there, like glass.
Regions are in model pixels: when the reading resamples (fwrd.slide.resample), each region is read from the
finer level and shrunk whole, and a tile window sits within half a model pixel of its footprint.

    regions = plan_regions(plan_slide(slide, config, settings), side=1024, margin=64)
    regions.points[regions.region_starts[r]:regions.region_starts[r + 1]]  # level-0 top-lefts of region r
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fwrd.errors import FwrdError
from fwrd.runtime.plan import SlidePlan

ALIGN = 32  # the network's stride: region origins on multiples of it see identical features
MARGIN = 128  # context around every tile window below 256 px (measured at 64 px: benchmarks/dense_margin.py)
MARGIN_256 = 96  # ... and from 256 px up (measured at 256 px): a wider window averages the border away
SEAM_TOLERANCE = 0.01  # what the margins keep seams below: |two region grids' scores of one window| (0..3 scale)
CPU_SIDE = 1536  # default region side on a CPU (2.0 GiB peak with the fp32 64 px model) ...
CPU_TILES = 10  # ... or 10 tiles if more: 2560 px at 256 px (4.3 GiB peak, fp32, ONNX Runtime)
GPU_SIDE = 4096  # default region side on a GPU, at least 8 tiles
SHIFTS = 3  # cell grid starts tried per axis (plan_regions)


def default_side(tile: int, gpu: bool) -> int:
    """The region side a backend uses unless told (`fwrd-run --region`), level pixels: large enough that the
    margin and the tile window's overhang cost little next to the 16-fold overlap saved at stride tile/4
    (on tissue that fills its regions: 16 x ((side - 2 margin - tile + stride) / side)^2 fewer pixels)."""
    return max(GPU_SIDE, 8 * tile) if gpu else max(CPU_SIDE, CPU_TILES * tile)


def default_margin(tile: int) -> int:
    """Context kept around every tile window. The border effect is the network's (its receptive field),
    but a tile score averages it over the whole window, so larger tiles need less: measured at 64 px (96
    meets the tolerance, 128 is 30x below it) and at 256 px (96 is 7.6x below it; 64 only 1.25x). README,
    Dense scoring."""
    return MARGIN_256 if tile >= 256 else MARGIN


@dataclass
class RegionPlan:
    """Which region scores which grid point, and where each region and tile window lies."""

    tiles: SlidePlan  # the tile plan this covers: level, mask, geometry, grid_total
    side: int  # largest region side, level pixels
    margin: int  # level pixels of context kept around every tile window
    cell: int  # grid points per cell side (K)
    points: np.ndarray  # int64 (N, 2) level-0 (x, y) top-lefts, grouped by region
    offsets: np.ndarray  # int64 (N, 2) (x, y) of each tile window inside its region, level pixels
    region_starts: np.ndarray  # int64 (R + 1,) region r scores points[region_starts[r]:region_starts[r + 1]]
    origins: np.ndarray  # int64 (R, 2) level-0 top-left of each region
    sizes: np.ndarray  # int64 (R, 2) (width, height) of each region, level pixels

    @property
    def regions(self) -> int:
        return len(self.sizes)

    @property
    def grid_total(self) -> int:
        return self.tiles.grid_total

    @property
    def pixels(self) -> int:
        """Level pixels the network sees over all regions (its work, next to tiles x tile^2 per tile)."""
        return int(np.prod(self.sizes, axis=1).sum()) if self.regions else 0

    def without(self, done: np.ndarray) -> "RegionPlan":
        """The same regions (so the same scores) less the points flagged in `done`; regions left with no
        points are dropped."""
        keep = ~np.asarray(done, bool)
        counts = np.add.reduceat(keep.astype(np.int64), self.region_starts[:-1]) if self.regions else keep[:0]
        alive = counts > 0
        return replace(self, points=self.points[keep], offsets=self.offsets[keep],
                       region_starts=np.r_[0, np.cumsum(counts[alive])].astype(np.int64),
                       origins=self.origins[alive], sizes=self.sizes[alive])


def _floor(v: np.ndarray | int) -> np.ndarray | int:
    return (v // ALIGN) * ALIGN


def _ceil(v: np.ndarray | int) -> np.ndarray | int:
    return -((-v) // ALIGN) * ALIGN


def _worst_span(cell: int, tile: int, stride: int, margin: int) -> int:
    """Largest region side a full cell of `cell` points can need, over every alignment of its start (a
    lattice point: a multiple of the stride)."""
    return max(int(_ceil(a * stride + (cell - 1) * stride + tile + margin) - _floor(a * stride - margin))
               for a in range(ALIGN))


def cell_points(side: int, tile: int, stride: int, margin: int) -> int:
    """The largest K such that K x K grid points' tiles plus the margin fit in `side` pixels (0: none)."""
    k = max(0, (side - tile - 2 * margin) // stride + 1)
    while k > 0 and _worst_span(k, tile, stride, margin) > side:
        k -= 1
    return k


def smallest_side(tile: int, stride: int, margin: int) -> int:
    """The smallest region side that holds one tile window and its margin."""
    return _worst_span(1, tile, stride, margin)


def check_geometry(side: int, tile: int, stride: int, margin: int) -> int:
    """The cell size K for this geometry; FwrdError, in one line, when regions of `side` cannot hold it."""
    if side % ALIGN or margin % ALIGN or margin < 0:
        raise FwrdError(f"the region side and margin must be multiples of {ALIGN} pixels, got {side} and {margin}")
    k = cell_points(side, tile, stride, margin)
    if k < 1:
        raise FwrdError(f"--region {side} is too small for {tile} px tiles with a {margin} px margin: "
                        f"use at least {smallest_side(tile, stride, margin)}")
    return k


def plan_regions(plan: SlidePlan, side: int, margin: int, fixed: bool = False, quantum: int = ALIGN) -> RegionPlan:
    """Group `plan`'s grid points into regions of at most `side` x `side` level pixels (see module doc).

    The grid of cells may start anywhere on the lattice: of SHIFTS x SHIFTS starts, the one whose regions
    cover the fewest pixels (fixed: the fewest regions) is kept, so tissue borders cost less.
    """
    k = check_geometry(side, plan.tile, plan.stride, margin)
    if quantum < ALIGN or quantum % ALIGN:
        raise FwrdError(f"the region quantum must be a multiple of {ALIGN} pixels, got {quantum}")
    ds = plan.read_downsample * plan.reading.ratio  # level-0 pixels per model pixel (regions are model pixels)
    level_xy = np.rint(plan.points / ds).astype(np.int64)
    empty = np.zeros((0, 2), np.int64)
    if len(level_xy) == 0:
        return RegionPlan(plan, side, margin, k, empty, empty, np.zeros(1, np.int64), empty, empty)
    width = k * plan.stride
    steps = [plan.stride * ((k * i) // SHIFTS) for i in range(SHIFTS)]
    layouts = (_layout(level_xy, width, np.array([sx, sy]), plan.tile, margin, side if fixed else None,
                       quantum, side)
               for sx in dict.fromkeys(steps) for sy in dict.fromkeys(steps))
    order, region_starts, lo, sizes = min(layouts, key=lambda layout: (
        len(layout[2]) if fixed else int(np.prod(layout[3], axis=1).sum())))
    region_of_point = np.repeat(np.arange(len(lo)), np.diff(region_starts))
    offsets = level_xy[order] - lo[region_of_point]
    origins = np.rint(lo * ds).astype(np.int64)
    return RegionPlan(plan, side, margin, k, plan.points[order], offsets, region_starts, origins, sizes)


def _layout(level_xy: np.ndarray, width: int, shift: np.ndarray, tile: int, margin: int,
            fixed: int | None, quantum: int = ALIGN, side: int | None = None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(point order, region starts, region top-lefts, region sizes) for cells of `width` starting at -shift."""
    cells = (level_xy + shift) // width
    key = (cells[:, 1] - cells[:, 1].min()) * (int(np.ptp(cells[:, 0])) + 1) + (cells[:, 0] - cells[:, 0].min())
    order = np.argsort(key, kind="stable")
    xy, key = level_xy[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lo = _floor(np.minimum.reduceat(xy, starts, axis=0) - margin)
    if fixed is not None:
        sizes = np.full((len(starts), 2), fixed, np.int64)
    else:
        sizes = _ceil(np.maximum.reduceat(xy, starts, axis=0) + tile + margin) - lo
        if quantum > ALIGN and side is not None:  # a few shapes for a GPU: sides up to the next multiple of the quantum
            sizes = np.minimum(-((-sizes) // quantum) * quantum, side)
    return order, np.r_[starts, len(xy)].astype(np.int64), lo, sizes.astype(np.int64)
