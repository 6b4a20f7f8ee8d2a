"""The slide's score grid: one float32 cell per grid point, filled as batches arrive.

Cell (row, col) holds the score of the tile whose level-0 top-left is (col * stride, row * stride)
(the issue's rule, so a tile at (x, y) lands in cell (y // stride, x // stride)); NaN off tissue.
The grid is small (slide / stride cells: 20 MB for a 100k x 200k slide at stride 64), so it lives in
memory; tiles.csv is written from it at the end, in row-major order whatever the worker count.
Where a cell is drawn (overlay, GeoJSON), it stands for the stride x stride square centred on its
tile's centre, i.e. shifted by (tile - stride) / 2: with stride == tile that is the tile itself.

    grid = ScoreGrid(CellGeometry(width, height, stride=256, tile=256))
    grid.add(coords, scores); grid.save_npy(out / "heatmap.npy")
    grid.save_png(out / "heatmap.png", model_scale(threshold), title="tumor_001", mpp=0.243)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fwrd.atomic import atomic_open, atomic_path
from fwrd.runtime.outputs.colormap import LUT, ScoreScale, apply_colormap
from fwrd.runtime.outputs.legend import colour_key, draw_scale_bar, fmt, frame


@dataclass(frozen=True)
class CellGeometry:
    """How heatmap cells map to level-0 pixels."""

    width: int  # level-0 slide width
    height: int
    stride: int  # level-0 pixels between grid points = cell side
    tile: int  # level-0 tile side

    @property
    def shape(self) -> tuple[int, int]:
        return math.ceil(self.height / self.stride), math.ceil(self.width / self.stride)

    @property
    def offset(self) -> float:
        """Level-0 shift from a cell's top-left corner to the square it stands for."""
        return (self.tile - self.stride) / 2.0

    def cells(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of level-0 top-lefts `coords` (N, 2) int (x, y)."""
        coords = np.asarray(coords, np.int64)
        return coords[:, 1] // self.stride, coords[:, 0] // self.stride

    def tile_centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 (x, y) centres of the tiles of cells (rows, cols)."""
        half = self.tile // 2
        return np.asarray(cols) * self.stride + half, np.asarray(rows) * self.stride + half


class ScoreGrid:
    """Preallocated heatmap plus a `scored` mask (a NaN score must still count as done)."""

    def __init__(self, geometry: CellGeometry) -> None:
        self.geometry = geometry
        self.values = np.full(geometry.shape, np.nan, np.float32)
        self.scored = np.zeros(geometry.shape, bool)

    def add(self, coords: np.ndarray, scores: np.ndarray) -> None:
        rows, cols = self.geometry.cells(coords)
        self.values[rows, cols] = np.asarray(scores, np.float32)
        self.scored[rows, cols] = True

    def is_scored(self, coords: np.ndarray) -> np.ndarray:
        rows, cols = self.geometry.cells(coords)
        return self.scored[rows, cols]

    @property
    def count(self) -> int:
        return int(self.scored.sum())

    def scores(self) -> np.ndarray:
        """Scores of all scored tiles (row-major order), float32."""
        return self.values[self.scored]

    def rows(self, chunk_rows: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(x, y, score) of scored tiles, row-major, a band of grid rows at a time (bounded memory)."""
        g = self.geometry
        for r0 in range(0, self.values.shape[0], chunk_rows):
            band = self.scored[r0:r0 + chunk_rows]
            rr, cc = np.nonzero(band)
            yield cc * g.stride, (rr + r0) * g.stride, self.values[r0:r0 + chunk_rows][rr, cc]

    def save_npy(self, path: str | Path) -> None:
        with atomic_open(path, "wb") as handle:
            np.save(handle, self.values)

    def save_png(self, path: str | Path, scale: ScoreScale, title: str, mpp: float | None = None,
                 mpp_source: str = "", stamp: str | Sequence[str] | None = None) -> None:
        """heatmap.png: the grid in viridis over the model's fixed scale, with its key (see below)."""
        save_heatmap_png(self.values, path, scale, title=title, cell_um=None if mpp is None else self.geometry.stride * mpp,
                         mpp_source=mpp_source, stamp=stamp)


EXCLUDED_GREY = (128, 128, 128)  # heatmap.png: tiles QC kept out of the calls (not scored)


def render_heatmap(
    values: np.ndarray, scale: ScoreScale, *, title: str, cell_um: float | None = None, min_side: int = 512,
    mpp_source: str = "", stamp: str | Sequence[str] | None = None, excluded: np.ndarray | None = None,
) -> Image.Image:
    """The grid colour-mapped over `scale` (white where nothing was scored, grey where QC excluded the tile),
    enlarged (nearest) so its long side is >= min_side, with a scale bar when the cell size is known, framed
    by the title and the key of the scale (the same on every slide of the model)."""
    factor = max(1, min(64, min_side // max(1, max(values.shape))))
    rgb = apply_colormap(values, scale.lo, scale.hi)
    if excluded is not None:
        rgb[excluded] = EXCLUDED_GREY
    image = Image.fromarray(rgb)
    if factor > 1:
        image = image.resize((values.shape[1] * factor, values.shape[0] * factor), Image.NEAREST)
    draw_scale_bar(image, None if cell_um is None else cell_um / factor, mpp_source)
    bar = LUT[np.linspace(0, len(LUT) - 1, 512).round().astype(np.intp)]
    blank = Image.new("RGB", (22, 14), (255, 255, 255))
    ImageDraw.Draw(blank).rectangle([0, 0, 21, 13], outline=(150, 150, 150))
    entries = [(blank, "not scored (glass, or too little tissue under a tile)")]
    if excluded is not None:
        grey = Image.new("RGB", (22, 14), EXCLUDED_GREY)
        ImageDraw.Draw(grey).rectangle([0, 0, 21, 13], outline=(150, 150, 150))
        entries.append((grey, "excluded by QC (artifact): not scored"))
    key = colour_key(scale, bar, "tile score (same scale for every slide of this model)", entries)
    finite = values[np.isfinite(values)]
    dropped = 0 if excluded is None else int(np.count_nonzero(excluded))
    subtitle = (f"{finite.size} tiles scored, {int(np.count_nonzero(finite >= scale.threshold))} "
                f">= threshold {fmt(scale.threshold)}" + (f", {dropped} excluded by QC" if dropped else "")
                + "; one square per tile"
                + ("" if cell_um else "; the slide records no resolution (no scale bar)"))
    return frame(image, title, subtitle, key, stamp)


def save_heatmap_png(
    values: np.ndarray, path: str | Path, scale: ScoreScale, *, title: str, cell_um: float | None = None,
    min_side: int = 512, mpp_source: str = "", stamp: str | Sequence[str] | None = None, excluded: np.ndarray | None = None,
) -> None:
    image = render_heatmap(values, scale, title=title, cell_um=cell_um, min_side=min_side, mpp_source=mpp_source,
                           stamp=stamp, excluded=excluded)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
