"""Pixels of a synthetic H&E slide: tissue blobs on glass, tumor regions with a different texture.

Normal tissue is pale pink stroma with sparse, small, pale purple nuclei; tumor is purple cytoplasm
crowded with large dark nuclei -- different enough that a reverse-distillation model with a random
teacher separates 64 px tiles. Everything is vectorised numpy, rendered in bands of rows: a
4096 x 4096 level 0 takes about a second.

    layout = plan_layout(np.random.default_rng(0), 4096, 4096, n_tumor_regions=3, exclusion=True)
    rgb = render(np.random.default_rng(1), layout, tumor_mask)   # uint8 [4096, 4096, 3]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

COARSE = 16  # level-0 pixels per cell of the smooth fields (tissue shape, stain variation)
BAND = 512  # rows rendered at once (bounds the temporaries to ~100 MB for 4096-px-wide slides)

GLASS = np.array([244.0, 243.0, 246.0], dtype=np.float32)
STROMA = np.array([236.0, 186.0, 214.0], dtype=np.float32)
STROMA_VARIATION = np.array([8.0, 14.0, 10.0], dtype=np.float32)
NORMAL_NUCLEUS = np.array([110.0, 72.0, 160.0], dtype=np.float32)
TUMOR_CYTOPLASM = np.array([206.0, 140.0, 196.0], dtype=np.float32)
TUMOR_VARIATION = np.array([8.0, 12.0, 8.0], dtype=np.float32)
TUMOR_NUCLEUS = np.array([58.0, 28.0, 108.0], dtype=np.float32)


@dataclass(frozen=True)
class NucleusStyle:
    """One lattice of nuclei: one candidate per `cell` x `cell` square, jittered inside it."""

    cell: int
    major: tuple[float, float]  # semi-axis ranges in pixels
    minor: tuple[float, float]
    presence: float  # probability that a cell holds a nucleus
    strength: tuple[float, float]  # opacity range of the nucleus colour


NORMAL_NUCLEI = NucleusStyle(cell=22, major=(2.5, 4.5), minor=(2.0, 3.2), presence=0.35, strength=(0.5, 0.8))
TUMOR_NUCLEI = NucleusStyle(cell=18, major=(4.5, 6.5), minor=(3.5, 5.0), presence=0.9, strength=(0.8, 1.0))


@dataclass
class Layout:
    """Where things are on a slide, before any pixel is drawn (polygons in level-0 pixels)."""

    width: int
    height: int
    tissue_field: np.ndarray  # coarse float32 field; tissue where > 0
    stain_field: np.ndarray  # coarse float32 field in ~[-1, 1]; stain intensity variation
    tumors: list[np.ndarray] = field(default_factory=list)
    exclusions: list[np.ndarray] = field(default_factory=list)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=sigma, mode="wrap")
    return noise / max(float(noise.std()), 1e-6)


def _blob_polygon(
    rng: np.random.Generator, cx: float, cy: float, radius: float, n: int = 40
) -> np.ndarray:
    """An irregular star-shaped polygon: a circle whose radius wobbles with a few harmonics."""
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = np.ones(n)
    for m in (2, 3, 4, 5):
        r += rng.uniform(0.0, 0.1) * np.cos(m * theta + rng.uniform(0, 2 * np.pi))
    return np.stack([cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)], axis=1)


def plan_layout(
    rng: np.random.Generator, width: int, height: int, n_tumor_regions: int, exclusion: bool,
    tumor_scale: float = 1.0, tissue_scale: float = 1.0,
) -> Layout:
    """Tissue shape (2-3 overlapping ellipses with wobbly edges, their axes times `tissue_scale`: 2 makes a
    large section with some glass; from about 3 tissue fills the slide and the Otsu tissue rule no longer finds
    all of it), tumor polygons inside the tissue, and an optional exclusion hole in the first tumor."""
    ch, cw = height // COARSE + 2, width // COARSE + 2
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    tissue = np.full((ch, cw), -1.0, dtype=np.float32)
    for _ in range(int(rng.integers(2, 4))):
        cx, cy = rng.uniform(0.3, 0.7) * cw, rng.uniform(0.3, 0.7) * ch
        ax, ay = rng.uniform(0.16, 0.3) * cw * tissue_scale, rng.uniform(0.16, 0.3) * ch * tissue_scale
        angle = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / ax
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / ay
        tissue = np.maximum(tissue, 1.0 - np.sqrt(u * u + v * v))
    tissue += 0.12 * _smooth_noise(rng, (ch, cw), sigma=max(ch, cw) / 40)
    stain = np.tanh(_smooth_noise(rng, (ch, cw), sigma=max(ch, cw) / 60))
    layout = Layout(width, height, tissue, stain)

    # tumor centres deep inside the tissue, away from each other where possible
    inner = np.argwhere(tissue > 0.35)
    if len(inner) == 0:
        inner = np.argwhere(tissue >= np.quantile(tissue, 0.99))
    base = 0.06 * tumor_scale * min(width, height)
    for _ in range(n_tumor_regions):
        best, best_gap = None, -1.0
        for cyx in inner[rng.integers(0, len(inner), size=8)]:
            cy, cx = (cyx + 0.5) * COARSE
            gap = min((np.hypot(cx - t[:, 0].mean(), cy - t[:, 1].mean()) for t in layout.tumors), default=1e9)
            if gap > best_gap:
                best, best_gap = (cx, cy), gap
        radius = base * rng.uniform(0.6, 1.3)
        polygon = _blob_polygon(rng, best[0], best[1], radius)
        polygon[:, 0] = np.clip(polygon[:, 0], 1.0, width - 1.0)
        polygon[:, 1] = np.clip(polygon[:, 1], 1.0, height - 1.0)
        layout.tumors.append(polygon)
    if exclusion and layout.tumors:
        first = layout.tumors[0]
        cx, cy = first[:, 0].mean(), first[:, 1].mean()
        inner_radius = float(np.min(np.hypot(first[:, 0] - cx, first[:, 1] - cy)))
        layout.exclusions.append(_blob_polygon(rng, cx, cy, 0.35 * inner_radius, n=16))
    return layout


def _upsample_band(coarse: np.ndarray, y0: int, y1: int, width: int) -> np.ndarray:
    """Bilinear interpolation of a coarse field (cell i centred at (i + 0.5) * COARSE) onto the
    level-0 pixels of rows y0..y1 (PIL does it in C, without a full-size temporary)."""
    image = Image.fromarray(np.ascontiguousarray(coarse, dtype=np.float32), mode="F")
    box = (0.0, y0 / COARSE, width / COARSE, y1 / COARSE)
    return np.asarray(image.resize((width, y1 - y0), Image.Resampling.BILINEAR, box=box))


class _Nuclei:
    """Per-cell nucleus parameters of one lattice; `alpha(y0, y1)` draws the opacity of a band."""

    def __init__(self, rng: np.random.Generator, style: NucleusStyle, width: int, height: int) -> None:
        c = style.cell
        shape = (height // c + 1, width // c + 1)
        major = rng.uniform(*style.major, size=shape).astype(np.float32)
        minor = np.minimum(rng.uniform(*style.minor, size=shape).astype(np.float32), major)
        margin = style.major[1] + 0.5
        self.cy = (np.arange(shape[0])[:, None] * c + rng.uniform(margin, c - margin, shape)).astype(np.float32)
        self.cx = (np.arange(shape[1])[None, :] * c + rng.uniform(margin, c - margin, shape)).astype(np.float32)
        angle = rng.uniform(0, np.pi, shape)
        self.cos = (np.cos(angle) / major).astype(np.float32)
        self.sin = (np.sin(angle) / major).astype(np.float32)
        self.cos_m = (np.cos(angle) / minor).astype(np.float32)
        self.sin_m = (np.sin(angle) / minor).astype(np.float32)
        present = rng.random(shape) < style.presence
        self.strength = np.where(present, rng.uniform(*style.strength, size=shape), 0.0).astype(np.float32)
        self.cell = c
        self.width = width

    def alpha(self, y0: int, y1: int) -> np.ndarray:
        """Opacity [y1 - y0, width] of the nuclei over rows y0..y1, one row of cells at a time (each
        nucleus lies inside its cell, so only that cell's parameters matter for a pixel)."""
        c, w = self.cell, self.width
        out = np.empty((y1 - y0, w), dtype=np.float32)
        cols = np.arange(w) // c
        xs = np.arange(w, dtype=np.float32) + 0.5
        for r in range(y0 // c, (y1 - 1) // c + 1):
            a, b = max(r * c, y0), min((r + 1) * c, y1)
            dy = (np.arange(a, b, dtype=np.float32) + 0.5)[:, None] - self.cy[r, cols]
            dx = xs - self.cx[r, cols]
            u = dx * self.cos[r, cols] + dy * self.sin[r, cols]
            v = dy * self.cos_m[r, cols] - dx * self.sin_m[r, cols]
            d = u * u + v * v  # < 1 inside the ellipse
            np.clip((1.0 - d) * 4.0, 0.0, 1.0, out=d)
            out[a - y0 : b - y0] = d * self.strength[r, cols]
        return out


def render(rng: np.random.Generator, layout: Layout, tumor_mask: np.ndarray) -> np.ndarray:
    """Level-0 RGB (uint8 [h, w, 3]) of `layout`; tumor texture wherever `tumor_mask` is set."""
    w, h = layout.width, layout.height
    normal = _Nuclei(rng, NORMAL_NUCLEI, w, h)
    tumor = _Nuclei(rng, TUMOR_NUCLEI, w, h)
    out = np.empty((h, w, 3), dtype=np.uint8)
    for y0 in range(0, h, BAND):
        y1 = min(y0 + BAND, h)
        is_tumor = tumor_mask[y0:y1]
        any_tumor = bool(is_tumor.any())
        tissue = (_upsample_band(layout.tissue_field, y0, y1, w) > 0) | is_tumor
        stain = _upsample_band(layout.stain_field, y0, y1, w)
        noise = rng.standard_normal((y1 - y0, w), dtype=np.float32)
        alpha = normal.alpha(y0, y1)
        if any_tumor:
            alpha = np.where(is_tumor, tumor.alpha(y0, y1), alpha)
        alpha *= 0.85 + 0.05 * np.clip(noise, -3.0, 3.0)  # a little chromatin texture
        grain = 5.0 * noise
        glass = 1.5 * noise
        for c in range(3):  # per channel: 2-D temporaries only
            background = STROMA[c] + stain * STROMA_VARIATION[c]
            nucleus = NORMAL_NUCLEUS[c]
            if any_tumor:
                background = np.where(is_tumor, TUMOR_CYTOPLASM[c] + stain * TUMOR_VARIATION[c], background)
                nucleus = np.where(is_tumor, TUMOR_NUCLEUS[c], nucleus)
            pixel = nucleus - background
            pixel *= alpha
            pixel += background
            pixel += grain
            pixel = np.where(tissue, pixel, glass + GLASS[c])
            pixel += 0.5
            np.clip(pixel, 0, 255, out=pixel)
            out[y0:y1, :, c] = pixel
    return out
