"""The whole slide at a coarse resolution, from whatever levels the file has, never decoded whole.

The tissue mask (tissue.py) and overlay.png need the slide small. Reading "the level closest to
downsample 64" made the mask depend on the file's layout: a single-level file gave a level-0 mask, where
the dark-pixel rule cuts hyperchromatic nuclei out of tumour. Here the resolution is fixed by the slide's
microns per pixel (the reference's: level 6 of a 0.243 um/px Camelyon16 slide, 15.55 um/px), and the
pixels come from the level at it when the file has one (read as it is, as the reference does), else from
the coarsest finer level, streamed in chunks and averaged down with the one BOX resampling
(fwrd.slide.resample): the same slide written single-level or as a pyramid gives the same picture, and a
100k px single-level file is read a chunk at a time.

    rgb, downsample = low_resolution(slide)   # uint8 [h, w, 3], level-0 pixels per pixel (64 at 0.243 um/px)
"""

from __future__ import annotations

import math

import numpy as np

from fwrd.errors import SlideError
from fwrd.slide.reader import POW2_SNAP, Slide
from fwrd.slide.resample import shrink, source_window

REFERENCE_MPP = 0.243 * 64  # method.md: the tissue mask of a 0.243 um/px slide is computed at level 6
REFERENCE_DOWNSAMPLE = 64.0  # ... and at downsample 64 when the slide records no resolution
CHUNK = 2048  # source pixels per side of one streamed read (about 16 MB of RGBA from OpenSlide)


def reference_downsample(slide: Slide) -> float:
    """Level-0 pixels per pixel of the reference's mask resolution: a whole number (64 at 0.243 um/px, 31
    at 0.5), or 64 when the slide records no microns per pixel."""
    if slide.mpp is None:
        return REFERENCE_DOWNSAMPLE
    return float(max(1, round(REFERENCE_MPP / slide.mpp)))


def low_resolution(slide: Slide, downsample: float | None = None) -> tuple[np.ndarray, float]:
    """(uint8 RGB [h, w, 3], level-0 pixels per pixel) of the whole slide at `downsample` (default: the
    reference's mask resolution). A level within 2 % of it is read as it is (its size and snapped
    downsample, e.g. Camelyon16's padded level 6); otherwise pixel (i, j) is the BOX average of level-0
    pixels [j d, (j + 1) d) x [i d, (i + 1) d) (glass, white, past the slide's edge), h = ceil(height / d)."""
    target = reference_downsample(slide) if downsample is None else float(downsample)
    if not target >= 1.0:
        raise SlideError(f"{slide.path}: a low-resolution image needs a downsample of at least 1, got {target}")
    for level in range(slide.level_count):
        if abs(slide.level_downsamples[level] / target - 1.0) <= POW2_SNAP:
            return slide.read_level(level), slide.level_downsample(level)
    return stream_shrink(slide, slide.level_for_downsample(target), target), target


def stream_shrink(slide: Slide, level: int, downsample: float) -> np.ndarray:
    """The slide at `downsample` (level-0 pixels per output pixel), averaged down from `level` one chunk
    of at most CHUNK x CHUNK level pixels at a time (only the output is whole in memory)."""
    width0, height0 = slide.dimensions
    out_w, out_h = math.ceil(width0 / downsample), math.ceil(height0 / downsample)
    read_ds = float(slide.level_downsamples[level])
    ratio = downsample / read_ds  # level pixels per output pixel
    step = max(1, int(CHUNK // math.ceil(ratio)))  # output pixels per chunk side
    out = np.empty((out_h, out_w, 3), np.uint8)
    for j0 in range(0, out_h, step):
        h = min(step, out_h - j0)
        for i0 in range(0, out_w, step):
            w = min(step, out_w - i0)
            src = source_window(int(round(i0 * downsample)), int(round(j0 * downsample)), w, h, read_ds, ratio)
            pixels = slide.read_region((src.x, src.y), level, (src.width, src.height))
            out[j0:j0 + h, i0:i0 + w] = shrink(pixels, w, h, src.box)
    return out


def thumbnail(slide: Slide, max_side: int) -> np.ndarray:
    """The whole slide as RGB with its long side <= `max_side`: the finest level that small, else the
    slide streamed down to it (never a whole large level in memory)."""
    fitting = [lvl for lvl, (w, h) in enumerate(slide.level_dimensions) if max(w, h) <= max_side]
    if fitting:
        return slide.read_level(fitting[0])
    downsample = math.ceil(max(slide.dimensions) / max_side)
    return stream_shrink(slide, slide.level_for_downsample(downsample), downsample)
