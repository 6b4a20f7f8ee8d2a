"""Tissue detection the way NCRF and FW-RD do it (method.md), with Otsu in numpy instead of scikit-image.

A pixel is tissue when its HSV saturation is above Otsu's threshold of the saturation, it is not
bright in all of R, G and B (each above its own Otsu threshold), and none of R, G, B is <= 50 (pen
marks, dirt). The mask is computed at the reference's resolution (Camelyon16's level 6, ~15.6 um/px)
from whatever levels the file has (thumbnail.low_resolution), so a single-level file and a pyramid agree.

Two additions make it hold on scans the reference never met (docs/qc.md): the image is first white-balanced
by its glass colour (`glass_colour`: a faintly tinted glass would otherwise be as saturated as pale tissue,
and Otsu would split the glass from the tissue's brightest part instead), and the saturation threshold is
at most FAINT_SATURATION, so faint tissue on a slide that also holds strongly stained tissue is kept. On
neutral glass (saturation < NEUTRAL_SATURATION) nothing is white-balanced, and where Otsu's threshold is
already below the ceiling (the synthetic slides: 0.117) the rule is the reference's exactly.

    mask, downsample = tissue_mask(slide)   # bool [h, w], level-0 pixels per mask pixel
"""

from __future__ import annotations

import numpy as np

from fwrd.errors import SlideError
from fwrd.slide.reader import Slide
from fwrd.slide.thumbnail import low_resolution

MIN_RGB = 50
FAINT_SATURATION = 0.12  # the saturation threshold never exceeds this: white-balanced glass lies near 0.01
NEUTRAL_SATURATION = 0.02  # glass less saturated than this is taken as neutral (no white balance)
GLASS_MIN = 170.0  # a glass colour has every channel at least this bright ...
GLASS_MAX_SATURATION = 0.15  # ... and at most this saturated (else the image is taken to show no glass)
NEUTRAL_GLASS = (255.0, 255.0, 255.0)


def otsu_threshold(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold as scikit-image computes it: foreground is `values > threshold`.

    Integer data is histogrammed per integer value, floats in `nbins` equal bins over [min, max];
    the threshold is the bin centre that maximises the between-class variance. Constant input
    returns its value (so nothing is foreground).
    """
    values = np.asarray(values).ravel()
    if values.size == 0:
        raise ValueError("Otsu threshold of an empty array")
    lo, hi = values.min(), values.max()
    if lo == hi:
        return float(lo)
    if np.issubdtype(values.dtype, np.integer):
        lo_i = int(lo)
        hist = np.bincount((values.astype(np.int64) - lo_i)).astype(np.float64)
        centers = np.arange(hist.size, dtype=np.float64) + lo_i
    else:
        hist, edges = np.histogram(values, bins=nbins, range=(float(lo), float(hi)))
        hist = hist.astype(np.float64)
        centers = (edges[:-1] + edges[1:]) / 2.0
    weight1 = np.cumsum(hist)
    weight2 = np.cumsum(hist[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean1 = np.cumsum(hist * centers) / weight1
        mean2 = (np.cumsum((hist * centers)[::-1]) / weight2[::-1])[::-1]
    variance = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    variance = np.nan_to_num(variance, nan=-1.0)
    return float(centers[int(np.argmax(variance))])


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1] (float32), (max - min) / max, 0 for black, as scikit-image's rgb2hsv."""
    rgb = np.asarray(rgb)
    mx = rgb.max(axis=2).astype(np.float32)
    mn = rgb.min(axis=2).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (mx - mn) / mx
    s[mx == 0] = 0.0
    return s


def glass_colour(rgb: np.ndarray) -> tuple[float, float, float]:
    """The colour of the slide's glass: the per-channel median of its brightest 5 % of pixels (by mean RGB),
    when that is bright and unsaturated enough to be glass; otherwise (a field that is all tissue) white."""
    rgb = np.asarray(rgb)[..., :3]
    grey = rgb.mean(axis=2)
    bright = rgb[grey >= np.percentile(grey, 95)]
    if bright.size == 0:
        return NEUTRAL_GLASS
    colour = np.median(bright.reshape(-1, 3), axis=0).astype(np.float64)
    if colour.min() < GLASS_MIN or (colour.max() - colour.min()) / colour.max() > GLASS_MAX_SATURATION:
        return NEUTRAL_GLASS
    return (float(colour[0]), float(colour[1]), float(colour[2]))


def white_balanced(rgb: np.ndarray, glass: tuple[float, float, float]) -> np.ndarray:
    """uint8 `rgb` scaled per channel so that `glass` becomes white."""
    gain = 255.0 / np.maximum(np.asarray(glass, np.float32), 1.0)
    return np.clip(np.rint(rgb[..., :3].astype(np.float32) * gain), 0, 255).astype(np.uint8)


def tissue_mask_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of a uint8 RGB image [h, w, 3] by the NCRF / FW-RD rule, white-balanced by its
    glass and with a ceiling on the saturation threshold (module docstring)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB [h, w, 3], got {rgb.dtype} {rgb.shape}")
    rgb = rgb[..., :3]
    glass = glass_colour(rgb)
    if (max(glass) - min(glass)) / max(glass) >= NEUTRAL_SATURATION:
        rgb = white_balanced(rgb, glass)
    s = saturation(rgb)
    tissue_s = s > min(otsu_threshold(s), FAINT_SATURATION)
    background = np.ones(rgb.shape[:2], dtype=bool)
    dark = np.zeros(rgb.shape[:2], dtype=bool)
    for c in range(3):
        channel = rgb[..., c]
        background &= channel > otsu_threshold(channel)
        dark |= channel <= MIN_RGB
    return tissue_s & ~background & ~dark


def tissue_mask(slide: Slide, downsample: float | None = None) -> tuple[np.ndarray, float]:
    """Tissue mask of `slide` at the reference's resolution (or `downsample` level-0 pixels per pixel).

    Returns (mask bool [h, w], downsample): mask pixel (i, j) covers level-0 pixels
    [j * downsample, (j + 1) * downsample) x [i * downsample, (i + 1) * downsample). A level at that
    resolution is used as it is, its downsample snapped to 2^k when within 2% (padded pyramids, see
    reader.snap_downsample); otherwise the image is averaged down from a finer level, streamed.
    """
    mask, ds, _ = tissue_and_glass(slide, downsample)
    return mask, ds


def tissue_and_glass(slide: Slide, downsample: float | None = None) -> tuple[np.ndarray, float, tuple[float, ...]]:
    """`tissue_mask`, plus the glass colour (`glass_colour`) read off the same low-resolution image: QC
    white-balances tiles by it (fwrd.slide.qc)."""
    if downsample is not None and not downsample > 0:
        raise SlideError(f"target downsample must be positive, got {downsample}")
    rgb, ds = low_resolution(slide, downsample)
    return tissue_mask_from_rgb(rgb), ds, glass_colour(rgb)
