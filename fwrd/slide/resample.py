"""How a model's pixels come out of a slide whose levels are not at the model's resolution.

A 20x model (0.5 um/px) on a 40x Aperio slide (levels 0.25 / 1.0 / 4.0 um/px) reads the finest level at
least as fine as the model, here 0.25, and shrinks each tile's footprint to the model's tile. A level within
10 % of the model's resolution is read as it is (no resampling cost), as before; a slide whose every level
is coarser than that is refused rather than upsampled (it would invent detail the model never saw).

The one resampling is a box (area) average (`shrink`: Pillow's `reduce` for a whole factor, its BOX filter
otherwise): every output pixel is the mean of the source pixels whose centres fall inside it, which is
what a scanner's coarser level holds and what antialiasing asks for (no aliasing of nuclei-scale texture,
unlike picking pixels). Unlike Lanczos or bicubic it reads nothing outside the footprint, so a tile cut
out of a large window at run time (fwrd.runtime.decode) is the same, bit for bit, as the same tile read on
its own for training (fwrd.training.patches) or calibration: the model sees at run time the pixels it was
trained on. The footprint is a whole number of level pixels (`Reading.source`), so geometry stays exact in
level-0 pixels, and the ratio the model sees is source / tile, within half a level pixel per tile side of
the exact one (`Reading.mpp`).

    reading = choose_reading(slide, tile=256, mpp=0.5)       # level 0, source 512 px on a 0.25 um/px slide
    tile = read_tile(slide, reading, x=40960, y=8192)       # uint8 [256, 256, 3]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fwrd.errors import FwrdError, SlideError
from fwrd.slide.reader import MPP_TOLERANCE, Slide

FILTER = Image.Resampling.BOX


def shrink(pixels: np.ndarray, width: int, height: int,
           box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """uint8 RGB `pixels` (or the part of them inside `box`, (left, top, right, bottom) in pixels, may be
    fractional) averaged down to `width` x `height` (module docstring).

    A whole image shrunk by the same whole factor on both axes (40x read for a 20x model: 2) goes through
    Pillow's `reduce`, the same box average 2-4x faster (it rounds differently: within one grey level of
    the BOX resize); any other ratio through `resize(BOX)`. The choice depends only on the sizes, so the
    training patch and the run-time tile of one footprint always take the same path."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    h, w = pixels.shape[:2]
    if box is None and w % int(width) == 0 and h % int(height) == 0 and w // int(width) == h // int(height):
        return np.asarray(image.reduce(w // int(width)))
    return np.asarray(image.resize((int(width), int(height)), FILTER, box=box))


@dataclass(frozen=True)
class Reading:
    """Where and how a model of `tile` px reads a slide: `source` level pixels per tile side, shrunk to
    `tile` when they differ."""

    level: int
    read_downsample: float  # OpenSlide's downsample of the level: what readers divide level-0 pixels by
    downsample: float  # the same, snapped to 2^k (reader.snap_downsample): grid geometry in level-0 pixels
    tile: int  # model pixels per tile side
    source: int  # level pixels per tile side
    slide_mpp: float | None = None  # level-0 microns per pixel used

    @property
    def resampled(self) -> bool:
        return self.source != self.tile

    @property
    def ratio(self) -> float:
        """Level pixels per model pixel (1.0: the level is read as it is)."""
        return self.source / self.tile

    @property
    def mpp(self) -> float | None:
        """Microns per pixel of what the model sees."""
        return None if self.slide_mpp is None else self.slide_mpp * self.downsample * self.ratio

    def level_pixels(self, model_pixels: int) -> int:
        """Level pixels that `model_pixels` model pixels span (exact for the tile itself)."""
        return self.source if model_pixels == self.tile else int(round(model_pixels * self.ratio))

    def level0(self, level_pixels: int) -> int:
        """Level-0 pixels of `level_pixels` pixels of the level."""
        return int(round(level_pixels * self.downsample))


@dataclass(frozen=True)
class SourceWindow:
    """The whole level pixels to read for a window of the model's view, and where in them it lies."""

    x: int  # level-0 top-left of the read
    y: int
    width: int  # level pixels to read
    height: int
    box: tuple[float, float, float, float]  # the model window inside the read, level pixels (fractional)


def source_window(x0: int, y0: int, width: int, height: int, read_downsample: float, ratio: float) -> SourceWindow:
    """What to read for a `width` x `height` model-pixel window whose level-0 top-left is (x0, y0), on a
    level of `read_downsample` holding `ratio` level pixels per model pixel (dense regions: one shrink per
    region, the window landing between level pixels)."""
    fx, fy = x0 / read_downsample, y0 / read_downsample
    ix, iy = math.floor(fx), math.floor(fy)
    w = math.ceil(fx + width * ratio) - ix
    h = math.ceil(fy + height * ratio) - iy
    left, top = fx - ix, fy - iy
    return SourceWindow(int(round(ix * read_downsample)), int(round(iy * read_downsample)), w, h,
                        (left, top, left + width * ratio, top + height * ratio))


def level_resolutions(slide: Slide) -> list[float]:
    """Microns per pixel of every level (the slide's mpp must be known)."""
    assert slide.mpp is not None
    return [slide.mpp * slide.level_downsample(level) for level in range(slide.level_count)]


def choose_reading(slide: Slide, tile: int, mpp: float | None, level: int = 0) -> Reading:
    """How a model of `tile` px trained at `mpp` microns per pixel (or, when None, at pyramid `level`)
    reads `slide`: the level within 10 % of `mpp` as it is, else the coarsest level finer than `mpp`,
    shrunk. SlideError, in one line, when the slide has no resolution or only coarser levels."""
    if mpp is None:
        if not 0 <= level < slide.level_count:
            raise SlideError(f"{slide.path}: level {level} does not exist (the slide has {slide.level_count})")
        return _reading(slide, level, tile, tile)
    if not mpp > 0:
        raise FwrdError(f"microns per pixel must be positive, got {mpp}")
    if slide.mpp is None:
        raise SlideError(f"{slide.path}: the slide records no microns per pixel and the model reads {mpp:g} um/px; "
                         "give the slide's level-0 resolution with --mpp")
    resolutions = level_resolutions(slide)
    near = [k for k, r in enumerate(resolutions) if abs(r / mpp - 1.0) <= MPP_TOLERANCE]
    if near:
        best = min(near, key=lambda k: abs(math.log(resolutions[k] / mpp)))
        return _reading(slide, best, tile, tile)
    finer = [k for k, r in enumerate(resolutions) if r < mpp]
    if not finer:
        have = ", ".join(f"{r:.3g}" for r in resolutions)
        raise SlideError(
            f"{slide.path}: its levels are {have} um/px, the model reads {mpp:g} um/px ({magnification(mpp)}); "
            "fwrd shrinks but never enlarges: use a model trained at "
            f"{resolutions[0]:.3g} um/px or coarser (fwrd-patches --mpp), or give --mpp if the slide's "
            "recorded resolution is wrong")
    best = max(finer, key=lambda k: resolutions[k])
    return _reading(slide, best, tile, int(round(tile * mpp / resolutions[best])))


def _reading(slide: Slide, level: int, tile: int, source: int) -> Reading:
    return Reading(level, float(slide.level_downsamples[level]), slide.level_downsample(level), int(tile),
                   int(source), slide.mpp)


OBJECTIVES = (2.5, 5, 10, 20, 40, 60, 80)


def magnification(mpp: float) -> str:
    """What a resolution is usually called: 10 / mpp rounded to the nearest objective within 20 %
    (0.243 and 0.25 um/px are "40x", 0.5 is "20x"), else "about N x"."""
    power = 10.0 / mpp
    nearest = min(OBJECTIVES, key=lambda o: abs(math.log(power / o)))
    return f"{nearest:g}x" if abs(power / nearest - 1.0) <= 0.2 else f"about {power:.0f}x"


def model_view(window: np.ndarray, offsets: np.ndarray, reading: Reading) -> tuple[np.ndarray, np.ndarray]:
    """(`window` at the model's resolution, the tiles' top-lefts in it) for a window of `reading.level` pixels
    and its tiles' footprint top-lefts (x, y, level pixels). As it is when the reading does not resample;
    otherwise the whole window shrunk once (BOX) and the top-lefts divided by the ratio, rounded and kept
    inside: each tile lies within half a model pixel of its footprint (QC's view of a work unit, whose
    numbers are tile averages; the model's own tiles are shrunk one footprint at a time, read_tile)."""
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    if not reading.resampled:
        return window, offsets
    h, w = window.shape[:2]
    ratio = reading.ratio
    out_w, out_h = max(reading.tile, int(w / ratio)), max(reading.tile, int(h / ratio))
    pixels = shrink(window, out_w, out_h, (0.0, 0.0, out_w * ratio, out_h * ratio))
    top_lefts = np.rint(offsets / ratio).astype(np.int64)
    top_lefts = np.minimum(top_lefts, np.array([out_w, out_h]) - reading.tile)
    return pixels, np.maximum(top_lefts, 0)


def read_tile(slide: Slide, reading: Reading, x: int, y: int, context: int = 0) -> np.ndarray:
    """The model's view of the tile whose level-0 top-left is (x, y), with `context` model pixels of its
    surroundings on every side: uint8 [tile + 2 context, tile + 2 context, 3], read at `reading.level` and
    shrunk (BOX) when the reading resamples. What training and calibration read, and what the decode
    workers cut out of their windows."""
    border = reading.level_pixels(context) if context else 0
    side = reading.source + 2 * border
    shift = reading.level0(border)
    pixels = slide.read_region((int(x) - shift, int(y) - shift), reading.level, (side, side))
    if not reading.resampled:
        return pixels
    out = reading.tile + 2 * int(context)
    return shrink(pixels, out, out)
