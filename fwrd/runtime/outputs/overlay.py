"""overlay.png: the slide with its tumor call drawn on it, for a pathologist to read at a glance.

Steps: enlarge a small thumbnail (so outlines and text stay legible); give every thumbnail pixel the
score of the heatmap cell whose square (heatmap.py) holds its level-0 centre; leave pixels below the
threshold (and off tissue) untouched, so the H&E stays visible, and blend those at or above it with
colormap.py's yellow -> red ramp, opacity growing with the score; hatch tissue that no tile scored (too
little tissue under a tile, or the slide's edge), so it never passes for tissue scored benign; outline
tumor.geojson's regions; tint the tiles QC excluded (fwrd.runtime.qc_gate: artifacts, never called) teal;
add a micrometre scale bar saying which resolution it rests on; frame it with the slide name, the result, a
red stamp for a demo model (random teacher) and the key of the model's fixed scale (legend.py), identical
on every slide of the model run with the same QC setting. The key's entries are a list (`key_entries`): a
new kind of area adds one swatch and one line.

    save_overlay(out / "overlay.png", thumb, grid.values, grid.geometry, model_scale(threshold),
                 title="tumor_001", features=features, mpp=slide.mpp, tissue=TissueMask(mask, 64.0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fwrd.atomic import atomic_path
from fwrd.runtime.outputs.colormap import ScoreScale, overlay_colours
from fwrd.runtime.outputs.heatmap import CellGeometry
from fwrd.runtime.outputs.legend import colour_key, draw_scale_bar, fmt, frame
from fwrd.runtime.outputs.summary import slide_score

MIN_SIDE = 768  # a thumbnail smaller than this is enlarged (at most 4x) before drawing on it
OUTLINE = (0, 70, 255)  # tumor region outlines: blue, apart from both the ramp and H&E
OUTLINE_WIDTH = 2
TISSUE = (236, 200, 222)  # a typical eosin pink, to show in the key how the colours look on tissue
UNSCORED = (40, 90, 150)  # hatch over tissue no tile scored: a cool blue, apart from H&E, ramp and outline
HATCH = 6  # period of the diagonal hatch, pixels (2 of every 6 diagonals are drawn)
HATCH_ALPHA = 0.7
DEMO_STAMP = "DEMO MODEL: random teacher - its scores mean nothing on real tissue"
EXCLUDED = (0, 150, 170)  # tiles QC kept out of the calls: teal, apart from the ramp, the outline and H&E
EXCLUDED_ALPHA = 0.55


@dataclass(frozen=True)
class TissueMask:
    """The tissue mask the grid was planned on: mask pixel (i, j) covers level-0 [j d, (j + 1) d) x [i d, (i + 1) d)."""

    mask: np.ndarray
    downsample: float

    def under(self, shape: tuple[int, int], width: int, height: int) -> np.ndarray:
        """bool [h, w]: the mask under each pixel's level-0 centre, for a picture of a width x height slide."""
        h, w = shape
        cols = np.floor((np.arange(w) + 0.5) * (width / w) / self.downsample).astype(np.int64)
        rows = np.floor((np.arange(h) + 0.5) * (height / h) / self.downsample).astype(np.int64)
        mh, mw = self.mask.shape
        inside = (rows[:, None] < mh) & (cols[None, :] < mw)
        return self.mask[np.minimum(rows, mh - 1)][:, np.minimum(cols, mw - 1)] & inside


def demo_stamp(config: Any) -> str | None:
    """The stamp the pictures carry for a model whose teacher is random (the demo's): its scores show the
    pipeline works, not where tumour is. None for any other model."""
    return DEMO_STAMP if getattr(config, "teacher_weights", None) == "random" else None


def review_stamp(status: str, reason: str) -> str | None:
    """The stamp the pictures of a slide QC sends to `review` carry (with QC's reason), None for any other slide."""
    return f"REVIEW: {reason}" if status == "review" else None


def cell_values(shape: tuple[int, int], values: np.ndarray, geometry: CellGeometry) -> np.ndarray:
    """float [h, w]: the score of the cell under each pixel of a picture of the whole slide (NaN off grid)."""
    h, w = shape
    x0 = (np.arange(w) + 0.5) * (geometry.width / w) - geometry.offset
    y0 = (np.arange(h) + 0.5) * (geometry.height / h) - geometry.offset
    cols = np.floor(x0 / geometry.stride).astype(np.int64)
    rows = np.floor(y0 / geometry.stride).astype(np.int64)
    col_ok = (cols >= 0) & (cols < values.shape[1])
    row_ok = (rows >= 0) & (rows < values.shape[0])
    cell = values[np.clip(rows, 0, values.shape[0] - 1)][:, np.clip(cols, 0, values.shape[1] - 1)].astype(np.float64)
    cell[~(row_ok[:, None] & col_ok[None, :])] = np.nan
    return cell


def blend_heatmap(thumb: np.ndarray, values: np.ndarray, geometry: CellGeometry, scale: ScoreScale) -> np.ndarray:
    """uint8 [h, w, 3]: `thumb` (the whole slide, any size) with above-threshold cells painted over it;
    every other pixel is returned unchanged."""
    out = np.array(thumb[..., :3], copy=True)
    rgb, alpha = overlay_colours(cell_values(out.shape[:2], values, geometry), scale)
    painted = alpha > 0
    a = alpha[painted][:, None]
    out[painted] = np.round((1 - a) * out[painted].astype(np.float64) + a * rgb[painted]).astype(np.uint8)
    return out


def hatch_unscored(image: np.ndarray, unscored: np.ndarray) -> np.ndarray:
    """`image` with a diagonal UNSCORED hatch over the pixels flagged in `unscored` (others unchanged)."""
    h, w = unscored.shape
    lines = ((np.arange(h)[:, None] + np.arange(w)[None, :]) % HATCH) < 2
    paint = unscored & lines
    out = np.array(image, copy=True)
    out[paint] = np.round((1 - HATCH_ALPHA) * out[paint] + HATCH_ALPHA * np.array(UNSCORED)).astype(np.uint8)
    return out


def excluded_pixels(shape: tuple[int, int], excluded: np.ndarray, geometry: CellGeometry) -> np.ndarray:
    """bool [h, w]: the picture's pixels whose heatmap cell QC excluded."""
    cells = cell_values(shape, excluded.astype(np.float32), geometry)
    return np.nan_to_num(cells, nan=0.0) > 0.5


def blend_excluded(picture: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3]: `picture` with the pixels `hit` (excluded_pixels) tinted EXCLUDED."""
    out = np.array(picture, copy=True)
    out[hit] = np.round((1 - EXCLUDED_ALPHA) * out[hit].astype(np.float64)
                        + EXCLUDED_ALPHA * np.array(EXCLUDED)).astype(np.uint8)
    return out


def draw_outlines(image: Image.Image, features: Sequence[dict[str, Any]], geometry: CellGeometry) -> None:
    """Every ring (exterior and holes) of the GeoJSON `features` (level-0 coordinates) on `image`."""
    draw = ImageDraw.Draw(image)
    sx, sy = image.width / geometry.width, image.height / geometry.height
    for feature in features:
        for ring in feature["geometry"]["coordinates"]:
            points = [(x * sx, y * sy) for x, y in ring]
            draw.line(points, fill=OUTLINE, width=OUTLINE_WIDTH, joint="curve")


def _swatch(fill: tuple[int, int, int]) -> Image.Image:
    swatch = Image.new("RGB", (22, 14), fill)
    ImageDraw.Draw(swatch).rectangle([0, 0, 21, 13], outline=(150, 150, 150))
    return swatch


def key_entries(qc: bool = False) -> list[tuple[Image.Image, str]]:
    """The overlay key's swatches and their meaning, in order (with `qc`, the tiles QC excluded too);
    extend the list for a new kind of area."""
    tissue = _swatch(TISSUE)
    hatched = Image.fromarray(hatch_unscored(np.asarray(_swatch(TISSUE)), np.ones((14, 22), bool)))
    ImageDraw.Draw(hatched).rectangle([0, 0, 21, 13], outline=(150, 150, 150))
    outline = Image.new("RGB", (22, 14), (255, 255, 255))
    ImageDraw.Draw(outline).rectangle([1, 1, 20, 12], outline=OUTLINE, width=OUTLINE_WIDTH)
    entries = [
        (tissue, "scored below threshold: H&E as scanned"),
        (hatched, "tissue not scored (too little under a tile, or the edge)"),
        (outline, "tumor region (tumor.geojson)"),
    ]
    if qc:
        excluded = Image.fromarray(blend_excluded(np.asarray(_swatch(TISSUE)), np.ones((14, 22), bool)))
        ImageDraw.Draw(excluded).rectangle([0, 0, 21, 13], outline=(150, 150, 150))
        entries.append((excluded, "excluded by QC (artifact: pen, dirt, bubble, fold, blur): not scored"))
    return entries


def overlay_key(scale: ScoreScale, qc: bool = False) -> Image.Image:
    """The overlay's key: the ramp as it looks on tissue, uncoloured below the threshold, then key_entries."""
    positions = scale.lo + (scale.hi - scale.lo) * np.linspace(0.0, 1.0, 512)
    rgb, alpha = overlay_colours(positions, scale)
    bar = np.round((1 - alpha[:, None]) * np.array(TISSUE) + alpha[:, None] * rgb).astype(np.uint8)
    return colour_key(scale, bar, "tile score (same scale for every slide of this model)", key_entries(qc))


def result_line(values: np.ndarray, scale: ScoreScale, regions: int) -> str:
    finite = values[np.isfinite(values)]
    above = int(np.count_nonzero(finite >= scale.threshold))
    return (f"slide score {fmt(slide_score(finite, scale.threshold))} | {above} of {finite.size} tiles "
            f">= threshold {fmt(scale.threshold)} | {regions} tumor region{'s' if regions != 1 else ''}"
            + (f" | max {fmt(float(finite.max()))}" if finite.size else ""))


def render_overlay(
    thumb: np.ndarray, values: np.ndarray, geometry: CellGeometry, scale: ScoreScale, *, title: str,
    features: Sequence[dict[str, Any]] = (), mpp: float | None = None, mpp_source: str = "",
    stamp: str | Sequence[str] | None = None, tissue: TissueMask | None = None, excluded: np.ndarray | None = None,
) -> Image.Image:
    picture = Image.fromarray(np.ascontiguousarray(thumb[..., :3]))
    long_side = max(picture.size)
    if long_side < MIN_SIDE:
        factor = min(4, math.ceil(MIN_SIDE / long_side))
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.BILINEAR)
    pixels = blend_heatmap(np.asarray(picture), values, geometry, scale)
    hit = None if excluded is None else excluded_pixels(pixels.shape[:2], excluded, geometry)
    if tissue is not None:  # values are NaN where QC excluded a tile: that is not "unscored" but tinted below
        unscored = tissue.under(pixels.shape[:2], geometry.width, geometry.height)
        unscored &= np.isnan(cell_values(pixels.shape[:2], values, geometry))
        if hit is not None:
            unscored &= ~hit
        pixels = hatch_unscored(pixels, unscored)
    dropped = 0 if excluded is None else int(np.count_nonzero(excluded))
    if dropped:
        pixels = blend_excluded(pixels, hit)
    picture = Image.fromarray(pixels)
    draw_outlines(picture, features, geometry)
    draw_scale_bar(picture, None if mpp is None else mpp * geometry.width / picture.width, mpp_source)
    subtitle = (result_line(values, scale, len(features)) + (f" | {dropped} tiles excluded by QC" if dropped else "")
                + ("" if mpp else " | no resolution recorded: no scale bar"))
    return frame(picture, title, subtitle, overlay_key(scale, excluded is not None), stamp)


def save_overlay(
    path: str | Path, thumb: np.ndarray, values: np.ndarray, geometry: CellGeometry, scale: ScoreScale, *,
    title: str, features: Sequence[dict[str, Any]] = (), mpp: float | None = None, mpp_source: str = "",
    stamp: str | Sequence[str] | None = None, tissue: TissueMask | None = None, excluded: np.ndarray | None = None,
) -> None:
    image = render_overlay(thumb, values, geometry, scale, title=title, features=features, mpp=mpp,
                           mpp_source=mpp_source, stamp=stamp, tissue=tissue, excluded=excluded)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
