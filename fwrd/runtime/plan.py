"""Plan a slide: reading level -> tissue mask -> tile grid -> work units for the decode workers.

The reading (fwrd.slide.resample) says which level holds the model's pixels: the level at the model's
resolution, read as it is, or a finer one whose tile footprints (`source` level pixels) the decode workers
shrink to the model's tile. Windows, offsets and footprints below are in pixels of that level.

A work unit is a block of grid points whose tiles lie in one square window of the reading level,
starting on the file's own tile grid. A worker reads the window once (aligned reads decode each file
tile once) and cuts the model tiles out of it, so 64 px model tiles on 256 px file tiles cost one
decode per 16 tiles, and a dense stride-64 grid of 256 px tiles decodes each file tile a few times
instead of sixteen. Blocks are made large enough (up to 2048 px) that the overlap a dense grid needs
costs little.

    plan = plan_slide(slide, config, settings)
    plan.points[plan.unit_starts[u]:plan.unit_starts[u + 1]]  # level-0 top-lefts of unit u
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fwrd.config import FWRDConfig
from fwrd.errors import SlideError
from fwrd.runtime.outputs.heatmap import CellGeometry
from fwrd.runtime.settings import RunSettings
from fwrd.slide.grid import tile_grid
from fwrd.slide.reader import Slide
from fwrd.slide.resample import Reading, choose_reading
from fwrd.slide.tile_reader import native_tile_size
from fwrd.slide.tissue import tissue_and_glass

MAX_BLOCK = 2048  # largest work-unit block side, level pixels (a 2300^2 RGB window is 16 MB)
DEFAULT_BLOCK = 256  # block side when the file has no tile grid of its own


@dataclass
class SlidePlan:
    """Everything the decode workers and the outputs need to know about one slide's grid."""

    level: int  # pyramid level read
    read_downsample: float  # OpenSlide's downsample of that level (what readers divide by)
    tile: int  # model tile side, model pixels
    stride: int  # model pixels
    geometry: CellGeometry  # level-0 heatmap geometry (stride and tile in level-0 pixels)
    native: tuple[int, int] | None  # the file's tile size at the level
    mask: np.ndarray  # tissue mask
    mask_downsample: float
    points: np.ndarray  # int64 (N, 2) level-0 (x, y) top-lefts, grouped by unit
    offsets: np.ndarray  # int64 (N, 2) (x, y) of each tile inside its unit's window, level pixels
    unit_starts: np.ndarray  # int64 (U + 1,) unit u = points[unit_starts[u]:unit_starts[u + 1]]
    unit_origins: np.ndarray  # int64 (U, 2) level-0 top-left of each unit's window
    unit_sides: np.ndarray  # int64 (U,) window side, level pixels
    grid_total: int  # tissue tiles of the whole grid (before removing those already scored)
    reading: Reading  # the level read and how tiles are shrunk from it

    @property
    def source(self) -> int:
        """Level pixels of one tile's footprint (the tile itself unless the reading resamples)."""
        return self.reading.source

    @property
    def source_stride(self) -> int:
        """Level pixels between grid points."""
        return self.reading.level_pixels(self.stride)
    glass: tuple[float, ...] = (255.0, 255.0, 255.0)  # the glass colour QC white-balances tiles by

    @property
    def units(self) -> int:
        return len(self.unit_sides)

    def tissue_area_mm2(self, mpp: float | None) -> float | None:
        if mpp is None:
            return None
        return float(self.mask.sum()) * (self.mask_downsample * mpp) ** 2 / 1e6

    def without(self, done: np.ndarray) -> "SlidePlan":
        """The same plan minus the points flagged in `done` (bool per point): what is left to score."""
        keep = ~np.asarray(done, bool)
        points = self.points[keep]
        return make_units(self, points)


def slide_reading(slide: Slide, config: FWRDConfig) -> Reading:
    """How the model reads `slide`: at its resolution (config.mpp; fwrd.slide.resample.choose_reading), or
    at config.level when it was trained without one. Needs the slide's mpp (or --mpp) in the first case."""
    if config.mpp is not None and slide.mpp is None:
        raise SlideError(
            f"{slide.path}: the slide records no microns per pixel and the model reads "
            f"{config.mpp:g} um/px; pass --mpp with the slide's level-0 resolution"
        )
    return choose_reading(slide, config.tile_size, config.mpp, config.level)


def reading_level(slide: Slide, config: FWRDConfig) -> int:
    """The pyramid level the model reads (see slide_reading)."""
    return slide_reading(slide, config).level


def block_side(tile: int, stride: int, native: int | None) -> int:
    """Work-unit block side (level px): a multiple of the file tile, >= the model tile, and >= 4x the
    overlap (tile - stride) of a dense grid so re-decoding the overlap stays cheap."""
    base = native or DEFAULT_BLOCK
    want = max(tile, 4 * max(0, tile - stride), base)
    side = base * math.ceil(want / base)
    if side > MAX_BLOCK:
        side = max(base * (MAX_BLOCK // base), base * math.ceil(tile / base))
    return side


def plan_slide(slide: Slide, config: FWRDConfig, settings: RunSettings) -> SlidePlan:
    """Tissue mask, grid and work units for `slide` under `config` (SlideError when nothing to score)."""
    reading = slide_reading(slide, config)
    level = reading.level
    tile = config.tile_size
    stride = settings.stride or tile
    # snapped downsample: grid and heatmap live in exact level-0 units
    tile0, stride0 = reading.level0(reading.source), reading.level0(reading.level_pixels(stride))
    width, height = slide.dimensions
    if width < tile0 or height < tile0:
        raise SlideError(f"{slide.path}: slide is {width}x{height} px, smaller than one {tile0} px tile")
    mask, mask_ds, glass = tissue_and_glass(slide)
    points = tile_grid(mask, mask_ds, slide.dimensions, tile0, stride0, settings.min_tissue)
    if len(points) == 0:
        raise SlideError(f"{slide.path}: no tissue found (nothing to score)")
    native = native_tile_size(slide.path, level)
    plan = SlidePlan(
        level=level,
        read_downsample=reading.read_downsample,
        tile=tile,
        stride=stride,
        geometry=CellGeometry(width, height, stride0, tile0),
        native=native,
        mask=mask,
        mask_downsample=float(mask_ds),
        points=points,
        offsets=np.zeros((0, 2), np.int64),
        unit_starts=np.zeros(1, np.int64),
        unit_origins=np.zeros((0, 2), np.int64),
        unit_sides=np.zeros(0, np.int64),
        grid_total=len(points),
        reading=reading,
        glass=glass,
    )
    return make_units(plan, points)


def make_units(plan: SlidePlan, points: np.ndarray) -> SlidePlan:
    """Group `points` into file-aligned work units (vectorised; row-major block order)."""
    ds = plan.read_downsample
    nw, nh = plan.native or (None, None)
    bx = block_side(plan.source, plan.source_stride, nw)
    by = block_side(plan.source, plan.source_stride, nh)
    ax, ay = nw or 1, nh or 1  # alignment of window origins
    level_xy = np.rint(points / ds).astype(np.int64)  # what the readers compute from level-0 x, y
    if len(points) == 0:
        empty = np.zeros((0, 2), np.int64)
        return _replace(plan, empty, empty, np.zeros(1, np.int64), empty, np.zeros(0, np.int64))
    bcol, brow = level_xy[:, 0] // bx, level_xy[:, 1] // by
    key = brow * (int(bcol.max()) + 1) + bcol
    order = np.argsort(key, kind="stable")
    points, level_xy, key = points[order], level_xy[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    unit_starts = np.r_[starts, len(points)].astype(np.int64)
    lo = np.minimum.reduceat(level_xy, starts, axis=0)
    hi = np.maximum.reduceat(level_xy, starts, axis=0) + plan.source
    origin = np.stack([(lo[:, 0] // ax) * ax, (lo[:, 1] // ay) * ay], axis=1)
    sides = np.max(hi - origin, axis=1)
    unit_of_point = np.repeat(np.arange(len(starts)), np.diff(unit_starts))
    offsets = level_xy - origin[unit_of_point]
    origins0 = np.rint(origin * ds).astype(np.int64)
    return _replace(plan, points, offsets, unit_starts, origins0, sides.astype(np.int64))


def _replace(
    plan: SlidePlan, points: np.ndarray, offsets: np.ndarray, unit_starts: np.ndarray, origins: np.ndarray,
    sides: np.ndarray,
) -> SlidePlan:
    return replace(
        plan, points=points, offsets=offsets, unit_starts=unit_starts, unit_origins=origins, unit_sides=sides
    )
