"""overlay.png: the score grid blended over the slide thumbnail, with a labelled colour bar.

Each thumbnail pixel looks up the heatmap cell whose square (heatmap.py) contains its level-0 centre,
so the overlay lines up with the slide whatever the stride; off-tissue cells leave the slide visible.

    save_overlay(out / "overlay.png", thumb, grid.values, grid.geometry, lo, hi, threshold)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fwrd.atomic import atomic_path
from fwrd.runtime.outputs.colormap import LUT, lut_index
from fwrd.runtime.outputs.heatmap import CellGeometry

ALPHA = 0.55
BAR_MARGIN = 110


def blend_heatmap(thumb: np.ndarray, values: np.ndarray, geometry: CellGeometry, lo: float, hi: float) -> np.ndarray:
    """uint8 [h, w, 3]: `thumb` (the whole slide, any size) with scored cells painted over it."""
    h, w = thumb.shape[:2]
    sx, sy = geometry.width / w, geometry.height / h
    x0 = (np.arange(w) + 0.5) * sx - geometry.offset
    y0 = (np.arange(h) + 0.5) * sy - geometry.offset
    cols = np.floor(x0 / geometry.stride).astype(np.int64)
    rows = np.floor(y0 / geometry.stride).astype(np.int64)
    col_ok = (cols >= 0) & (cols < values.shape[1])
    row_ok = (rows >= 0) & (rows < values.shape[0])
    cell = values[np.clip(rows, 0, values.shape[0] - 1)][:, np.clip(cols, 0, values.shape[1] - 1)]
    painted = np.isfinite(cell) & row_ok[:, None] & col_ok[None, :]
    colour = LUT[lut_index(cell[painted], lo, hi)].astype(np.float32)
    out = thumb[..., :3].copy()
    out[painted] = np.round((1 - ALPHA) * out[painted].astype(np.float32) + ALPHA * colour).astype(np.uint8)
    return out


def colour_bar(height: int, lo: float, hi: float, threshold: float | None) -> Image.Image:
    """A vertical bar (high scores on top) with min/max labels and a threshold tick."""
    image = Image.new("RGB", (BAR_MARGIN, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    top, bottom = 20, max(21, height - 20)
    bar = LUT[np.linspace(len(LUT) - 1, 0, bottom - top).round().astype(np.intp)]
    image.paste(Image.fromarray(np.repeat(bar[:, None, :], 18, axis=1)), (10, top))
    draw.rectangle([10, top, 27, bottom - 1], outline=(0, 0, 0))
    draw.text((32, top - 6), f"{hi:.3g}", fill=(0, 0, 0), font=font)
    draw.text((32, bottom - 8), f"{lo:.3g}", fill=(0, 0, 0), font=font)
    draw.text((6, 4), "score", fill=(0, 0, 0), font=font)
    if threshold is not None and hi > lo:
        y = int(round(bottom - 1 - (threshold - lo) / (hi - lo) * (bottom - 1 - top)))
        draw.line([4, y, 32, y], fill=(220, 0, 0), width=2)
        draw.text((34, y - 6), f"thr {threshold:.3g}", fill=(220, 0, 0), font=font)
    return image


def save_overlay(
    path: str | Path, thumb: np.ndarray, values: np.ndarray, geometry: CellGeometry, lo: float, hi: float,
    threshold: float | None,
) -> None:
    blended = Image.fromarray(blend_heatmap(thumb, values, geometry, lo, hi))
    height = max(blended.height, 160)
    canvas = Image.new("RGB", (blended.width + BAR_MARGIN, height), (255, 255, 255))
    canvas.paste(blended, (0, 0))
    canvas.paste(colour_bar(height, lo, hi, threshold), (blended.width, 0))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
