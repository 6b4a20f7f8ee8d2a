"""Tissue detection the way NCRF and FW-RD do it (method.md), with Otsu in numpy instead of scikit-image.

A pixel is tissue when its HSV saturation is above Otsu's threshold of the saturation, it is not
bright in all of R, G and B (each above its own Otsu threshold), and none of R, G, B is <= 50 (pen
marks, dirt). The mask is computed at the reference's resolution (Camelyon16's level 6, ~15.6 um/px)
from whatever levels the file has (thumbnail.low_resolution), so a single-level file and a pyramid agree.

    mask, downsample = tissue_mask(slide)   # bool [h, w], level-0 pixels per mask pixel
"""

from __future__ import annotations

import numpy as np

from fwrd.errors import SlideError
from fwrd.slide.reader import Slide
from fwrd.slide.thumbnail import low_resolution

MIN_RGB = 50


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


def tissue_mask_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of a uint8 RGB image [h, w, 3] by the NCRF / FW-RD rule (module docstring)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB [h, w, 3], got {rgb.dtype} {rgb.shape}")
    rgb = rgb[..., :3]
    s = saturation(rgb)
    tissue_s = s > otsu_threshold(s)
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
    if downsample is not None and not downsample > 0:
        raise SlideError(f"target downsample must be positive, got {downsample}")
    rgb, ds = low_resolution(slide, downsample)
    return tissue_mask_from_rgb(rgb), ds
