"""Paint slide artifacts onto RGB pixels, with the truth of where each one is: for QC tests and benchmarks.

Each painter changes an RGB image (uint8 [h, w, 3], level-0 pixels) in place and returns a bool mask of
the pixels it changed, so a test knows which tiles hold which artifact. They imitate what a scanner sees:

- `pen_line` / `pen_circle`: marker ink, a translucent dye over the tissue (transmissions multiply);
- `out_of_focus`: a Gaussian blur of a rectangle (a focus miss; sigma in level-0 pixels);
- `fold`: a flap of tissue lying on top of more tissue: the rectangle's transmission times that of a shifted
  copy of the slide (optical densities add, as they do where two sections overlap); its mask is where two
  layers of tissue overlap;
- `bubble`: an air bubble under the coverslip: a dark, grey refraction ring with a brighter, washed-out
  inside;
- `dirt`: small dark grey specks (dust, debris);
- `tint_glass`: a colour cast over the whole image (a scanner whose glass is faintly tinted);
- `stain_shift`: another lab's staining, haematoxylin and eosin scaled in optical density (returns a copy).

    rgb = render(...); pen = pen_line(rgb, [(100, 400), (900, 450)], colour=BLUE_INK, width=12)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from fwrd.slide.tissue import glass_colour

BLUE_INK = (40, 80, 205)
GREEN_INK = (40, 160, 80)
BLACK_INK = (35, 35, 40)
INK_DENSITY = 0.85  # fraction of the way to the ink's own transmission at the line's centre
FOLD_TISSUE_OD = 0.1  # a layer is tissue where its optical density (sum over R, G, B) above the glass is this


def _stroke_mask(shape: tuple[int, int], draw) -> np.ndarray:
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw(ImageDraw.Draw(canvas))
    return np.asarray(canvas) > 0


def _ink(rgb: np.ndarray, mask: np.ndarray, colour: Sequence[int], density: float) -> np.ndarray:
    """Multiply the transmission of the masked pixels by the ink's (a dye over whatever lies below)."""
    transmission = 1.0 - density * (1.0 - np.asarray(colour, np.float32) / 255.0)
    pixels = rgb[mask].astype(np.float32) * transmission
    rgb[mask] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return mask


def pen_line(rgb: np.ndarray, points: Sequence[tuple[float, float]], colour: Sequence[int] = BLUE_INK,
             width: int = 12, density: float = INK_DENSITY) -> np.ndarray:
    """A marker stroke along `points` (x, y level-0 pixels), `width` pixels wide."""
    mask = _stroke_mask(rgb.shape[:2], lambda d: d.line([tuple(p) for p in points], fill=255, width=int(width),
                                                         joint="curve"))
    return _ink(rgb, mask, colour, density)


def pen_circle(rgb: np.ndarray, centre: tuple[float, float], radius: float, colour: Sequence[int] = GREEN_INK,
               width: int = 12, density: float = INK_DENSITY) -> np.ndarray:
    """A marker circle (a pathologist ringing an area), `width` pixels wide."""
    cx, cy = centre
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    mask = _stroke_mask(rgb.shape[:2], lambda d: d.ellipse(box, outline=255, width=int(width)))
    return _ink(rgb, mask, colour, density)


def _box(rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = rgb.shape[:2]
    x0, x1, y0, y1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} lies outside the {w} x {h} image")
    return slice(y0, y1), slice(x0, x1)


def _mask_of(rgb: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(rgb.shape[:2], bool)
    mask[rows, cols] = True
    return mask


def out_of_focus(rgb: np.ndarray, box: tuple[int, int, int, int], sigma: float = 5.0) -> np.ndarray:
    """Blur the rectangle (x0, y0, x1, y1) with a Gaussian of `sigma` level-0 pixels (blurred from a margin of
    the surrounding pixels, so the rectangle has no seam of its own)."""
    rows, cols = _box(rgb, box)
    pad = int(np.ceil(3 * sigma))
    h, w = rgb.shape[:2]
    r0, r1 = max(0, rows.start - pad), min(h, rows.stop + pad)
    c0, c1 = max(0, cols.start - pad), min(w, cols.stop + pad)
    patch = gaussian_filter(rgb[r0:r1, c0:c1].astype(np.float32), sigma=(sigma, sigma, 0))
    inner = patch[rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0]
    rgb[rows, cols] = np.clip(np.rint(inner), 0, 255).astype(np.uint8)
    return _mask_of(rgb, rows, cols)


def fold(rgb: np.ndarray, box: tuple[int, int, int, int], shift: tuple[int, int] = (37, 53),
         glass: Sequence[float] | None = None) -> np.ndarray:
    """Lay the tissue found `shift` (dx, dy) pixels away over the rectangle: transmissions multiply (optical
    densities add), as where a flap of the section lies on top of the section. The flap's transmission is
    taken relative to the glass (`glass`, by default the image's own: fwrd.slide.tissue.glass_colour), so
    where it brings only glass nothing changes. Returns where two layers of tissue now overlap (both with
    optical density >= FOLD_TISSUE_OD above the glass): tissue moved over glass is a single layer, no fold."""
    rows, cols = _box(rgb, box)
    dx, dy = shift
    h, w = rgb.shape[:2]
    ys = np.clip(np.arange(rows.start, rows.stop) + dy, 0, h - 1)
    xs = np.clip(np.arange(cols.start, cols.stop) + dx, 0, w - 1)
    white = np.asarray(glass if glass is not None else glass_colour(rgb), np.float32)
    over = np.minimum(rgb[ys][:, xs].astype(np.float32) / white, 1.0)
    under = rgb[rows, cols].astype(np.float32)

    def tissue(layer: np.ndarray) -> np.ndarray:
        od = -np.log10(np.clip(layer, 1.0 / 255.0, 1.0)).sum(axis=2)
        return od >= FOLD_TISSUE_OD

    doubled = tissue(over) & tissue(np.minimum(under / white, 1.0))
    rgb[rows, cols] = np.clip(np.rint(under * over), 0, 255).astype(np.uint8)
    mask = np.zeros(rgb.shape[:2], bool)
    mask[rows, cols] = doubled
    return mask


def bubble(rgb: np.ndarray, centre: tuple[float, float], radius: float, ring: int = 6) -> np.ndarray:
    """An air bubble: a grey refraction ring `ring` pixels wide, darkest at its middle, and an inside washed
    towards the glass (less stain seen through the air gap)."""
    h, w = rgb.shape[:2]
    cx, cy = centre
    y0, y1 = max(0, int(cy - radius - ring)), min(h, int(cy + radius + ring) + 1)
    x0, x1 = max(0, int(cx - radius - ring)), min(w, int(cx + radius + ring) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    distance = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
    edge = np.clip(1.0 - np.abs(distance - radius) / (ring / 2.0), 0.0, 1.0)  # 1 on the ring's middle line
    inside = (distance < radius - ring / 2.0).astype(np.float32)
    patch = rgb[y0:y1, x0:x1].astype(np.float32)
    washed = patch + 0.45 * (245.0 - patch)  # washed out inside
    patch = inside[..., None] * washed + (1 - inside[..., None]) * patch
    grey = 95.0
    patch = patch * (1 - 0.85 * edge[..., None]) + 0.85 * edge[..., None] * grey
    rgb[y0:y1, x0:x1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = distance < radius + ring / 2.0
    return mask


def dirt(rgb: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator, count: int = 30,
         radius: tuple[float, float] = (2.0, 5.0)) -> np.ndarray:
    """`count` dark grey specks of `radius` pixels scattered over the rectangle; the mask is the specks."""
    rows, cols = _box(rgb, box)
    canvas = Image.new("L", (rgb.shape[1], rgb.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(count)):
        x = rng.uniform(cols.start, cols.stop)
        y = rng.uniform(rows.start, rows.stop)
        r = rng.uniform(*radius)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    specks = np.asarray(canvas) > 0
    shade = rng.uniform(25, 45)
    rgb[specks] = np.clip(np.rint(0.1 * rgb[specks].astype(np.float32) + 0.9 * shade), 0, 255).astype(np.uint8)
    return specks


def tint_glass(rgb: np.ndarray, tint: Sequence[float] = (0.93, 0.985, 1.0)) -> None:
    """A colour cast over the whole image: every channel's transmission times `tint` (glass and tissue alike)."""
    cast = rgb.astype(np.float32) * np.asarray(tint, np.float32)
    rgb[...] = np.clip(np.rint(cast), 0, 255).astype(np.uint8)


HED_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])  # Ruifrok-Johnston H, E, DAB


def stain_shift(rgb: np.ndarray, h_gain: float = 1.35, e_gain: float = 0.7,
                where: np.ndarray | None = None) -> np.ndarray:
    """A copy of `rgb` with haematoxylin x h_gain and eosin x e_gain (Ruifrok-Johnston colour deconvolution;
    the defaults: a darker, bluer stain), on the pixels of the bool mask `where` (None: every pixel)."""
    stains = HED_STAINS / np.linalg.norm(HED_STAINS, axis=1, keepdims=True)
    od = -np.log10(np.maximum(rgb.astype(np.float64), 1.0) / 255.0)
    conc = od.reshape(-1, 3) @ np.linalg.inv(stains)
    conc[:, 0] *= h_gain
    conc[:, 1] *= e_gain
    shifted = np.clip(255.0 * 10 ** -(conc @ stains), 0, 255).reshape(rgb.shape).round().astype(np.uint8)
    return shifted if where is None else np.where(where[..., None], shifted, rgb)


def paint_test_card(rgb: np.ndarray, rng: np.random.Generator, pen_width: int = 48) -> dict[str, np.ndarray]:
    """Every artifact once, at places given as fractions of the image (so any size works): a blue pen line, a
    green pen circle, an out-of-focus square, a fold, an air bubble and dirt specks. Returns {kind: mask}
    with the kinds of fwrd.slide.qc (both pens under `pen`)."""
    h, w = rgb.shape[:2]
    pen = pen_line(rgb, [(0.08 * w, 0.16 * h), (0.5 * w, 0.22 * h), (0.92 * w, 0.18 * h)], BLUE_INK, width=pen_width)
    pen |= pen_circle(rgb, (0.28 * w, 0.72 * h), 0.13 * min(w, h), GREEN_INK, width=pen_width)
    blur = out_of_focus(rgb, (int(0.56 * w), int(0.56 * h), int(0.78 * w), int(0.78 * h)), sigma=5.0)
    folded = fold(rgb, (int(0.2 * w), int(0.33 * h), int(0.46 * w), int(0.5 * h)))
    bubbled = bubble(rgb, (0.74 * w, 0.4 * h), 0.08 * min(w, h))
    dirty = dirt(rgb, (int(0.52 * w), int(0.82 * h), int(0.8 * w), int(0.95 * h)), rng, count=40)
    return {"pen": pen, "blur": blur, "fold": folded, "bubble": bubbled, "dirt": dirty}
