"""Where training patches may come from on one slide, and how many to take from each slide.

Candidates sit on a lattice of tile/4 (at the patch level) over the slide, whole tiles inside it.
- tumor: the tile centre is tumor (`contains`: inside a tumor polygon, outside every exclusion).
- normal: at least `min_tissue` of the footprint is tissue, and no pixel of the tumor mask,
  rasterized at the tissue mask's resolution and dilated by one pixel, lies under the footprint:
  a tumor edge that crosses a mask pixel without covering its centre still keeps tiles away.
Per slide and class, candidates are visited in a seeded random order and kept unless a kept one of
the same class is closer than tile/2 (FW-RD: centres on a 64 px grid, none closer than 128 px).
`allocate` then spreads the requested count evenly over the slides that can give patches.

    cands = slide_candidates(slide, ann, tile=256, level=0)
    order = spread(cands.normal, np.random.default_rng(0), limit=500)   # (k, 2) level-0 top-lefts
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation

from fwrd.slide.annotations import Annotations, contains, rasterize
from fwrd.slide.grid import footprint_fraction, lattice
from fwrd.slide.reader import Slide
from fwrd.slide.resample import Reading, choose_reading
from fwrd.slide.tissue import tissue_mask

DEFAULT_MIN_TISSUE = 0.5  # a training patch is at least half tissue


@dataclass
class Candidates:
    """Lattice of one slide and the class masks on it (index [iy, ix] -> top-left (xs[ix], ys[iy]))."""

    xs: np.ndarray  # int64 level-0 x of each lattice column
    ys: np.ndarray  # int64 level-0 y of each lattice row
    normal: np.ndarray  # bool (ny, nx)
    tumor: np.ndarray  # bool (ny, nx)
    footprint: int  # tile side in level-0 pixels


def slide_candidates(
    slide: Slide,
    ann: Annotations | None,
    tile: int,
    level: int,
    min_tissue: float = DEFAULT_MIN_TISSUE,
    reading: Reading | None = None,
) -> Candidates:
    """Normal and tumor candidate masks on the tile/4 lattice of `slide` at `level`, or at a resolution
    (`reading`, fwrd.slide.resample: the footprint is then the tile's at that resolution)."""
    reading = reading or choose_reading(slide, tile, None, level)
    footprint = reading.level0(reading.source)
    step = reading.level0(reading.level_pixels(tile // 4))
    xs, ys = lattice(slide.dimensions, footprint, step)
    shape = (len(ys), len(xs))
    if 0 in shape:
        return Candidates(xs, ys, np.zeros(shape, bool), np.zeros(shape, bool), footprint)
    tissue, mds = tissue_mask(slide)
    normal = footprint_fraction(tissue, mds, xs, ys, footprint) >= min_tissue - 1e-9
    tumor = np.zeros(shape, dtype=bool)
    if ann is not None and ann.tumor:
        near_tumor = binary_dilation(rasterize(ann, tissue.shape, mds), structure=np.ones((3, 3), bool))
        normal &= footprint_fraction(near_tumor, mds, xs, ys, footprint) <= 1e-9
        half = footprint / 2.0
        cx, cy = xs + half, ys + half
        picked = np.zeros(shape, dtype=bool)
        for polygon in ann.tumor:  # only lattice points inside a polygon's bounding box can be tumor
            (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
            ix = np.flatnonzero((cx >= x0) & (cx <= x1))
            iy = np.flatnonzero((cy >= y0) & (cy <= y1))
            picked[np.ix_(iy, ix)] = True
        iy, ix = np.nonzero(picked)
        inside = contains(ann, np.stack([cx[ix], cy[iy]], axis=1))
        tumor[iy[inside], ix[inside]] = True
    return Candidates(xs, ys, normal, tumor, footprint)


def spread(ok: np.ndarray, rng: np.random.Generator, limit: int) -> np.ndarray:
    """Up to `limit` lattice indices (iy, ix) of `ok`, in seeded random order, no two closer than
    tile/2: on a tile/4 lattice, that rules out the 8 neighbours of every kept point."""
    ny, nx = ok.shape
    kept: list[int] = []
    if limit <= 0 or not ok.any():
        return np.zeros((0, 2), dtype=np.int64)
    blocked = np.zeros((ny + 2, nx + 2), dtype=bool)
    for flat in rng.permutation(np.flatnonzero(ok)):
        iy, ix = divmod(int(flat), nx)
        if blocked[iy + 1, ix + 1]:
            continue
        kept.append(int(flat))
        blocked[iy : iy + 3, ix : ix + 3] = True
        if len(kept) >= limit:
            break
    flat = np.array(kept, dtype=np.int64)
    return np.stack([flat // nx, flat % nx], axis=1)


def allocate(capacities: list[int], total: int) -> list[int]:
    """Split `total` as evenly as possible over slides that can give at most `capacities[i]` each;
    what a slide cannot give goes to the others (earlier slides take the remainder first)."""
    quota = [0] * len(capacities)
    remaining = int(total)
    open_ = [i for i, c in enumerate(capacities) if c > 0]
    while remaining > 0 and open_:
        share, extra = divmod(remaining, len(open_))
        given, still_open = 0, []
        for rank, i in enumerate(open_):
            take = min(share + (1 if rank < extra else 0), capacities[i] - quota[i])
            quota[i] += take
            given += take
            if quota[i] < capacities[i]:
                still_open.append(i)
        remaining -= given
        open_ = still_open
    return quota
