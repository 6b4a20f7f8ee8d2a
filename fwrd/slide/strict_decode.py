"""OpenSlide's rule for damaged JPEG data, for every reader: a libjpeg warning is an error.

libjpeg reports damaged entropy-coded data ("bad Huffman code", "premature end of data segment",
"extraneous bytes before marker") as *warnings* and decodes plausible wrong pixels; OpenSlide turns
its warnings into errors. imagecodecs (the direct reader's libjpeg-turbo) silences them: its
`output_message` does nothing and the warning count dies with the decoder, and Pillow's decoder does
the same. No allowed dependency exposes a strict JPEG decode except OpenSlide itself, so the direct
reader lets OpenSlide decode every file tile once, at one pixel (no large blit), before it trusts its
own decode of the same bytes (about one more decode per tile). A Huffman walk in Python that counts the
bits each block uses would be exact too, but took 313 ms for one 9 KB tile, two orders of magnitude
above the decode (benchmarks/results/cpu-amd-epyc-2c-strict-decode.md).

`TileChecker` does this for one level; `find_damaged_tile` names which tile of a failed OpenSlide read
is the damaged one (OpenSlide's own message does not say).

    checker = TileChecker(slide, level=0, tiff=tiff_level)
    checker.check(17)   # SlideError "...: damaged tile data in tile 17 (...): Corrupt JPEG data: ..."
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fwrd.errors import SlideError
from fwrd.slide.reader import PixelReadError, Slide, open_slide
from fwrd.slide.tiff_level import TiffLevel


def tile_probe(tiff: TiffLevel, index: int, downsample: float) -> tuple[int, int]:
    """A level-0 point inside both tile `index` and the image: reading one pixel there makes OpenSlide
    decode exactly that tile (the centre, so a downsample off 2^k cannot round into the next tile)."""
    (tw, th), (w, h) = tiff.tile_size, tiff.image_size
    col, row = index % tiff.across, index // tiff.across
    lx = col * tw + min(tw, w - col * tw) // 2
    ly = row * th + min(th, h - row * th) // 2
    return int(round(lx * downsample)), int(round(ly * downsample))


def tile_error(slide: Slide, level: int, tiff: TiffLevel, index: int) -> str | None:
    """OpenSlide's message for tile `index` of `level`, or None when it decodes cleanly."""
    try:
        slide.read_region(tile_probe(tiff, index, slide.level_downsamples[level]), level, (1, 1))
    except PixelReadError as exc:
        return exc.reason
    return None


def damaged(tiff: TiffLevel, index: int, reason: str) -> SlideError:
    return SlideError(f"{tiff.path}: damaged tile data in {tiff.describe(index)}: {reason}")


class TileChecker:
    """Has OpenSlide decode each tile of one level once (warnings are errors there); remembers which passed."""

    def __init__(self, slide: Slide, level: int, tiff: TiffLevel) -> None:
        self.slide, self.level, self.tiff = slide, level, tiff
        slide.drop_tile_cache()  # each tile is decoded once; keeping them would only cost memory
        self._passed = np.zeros(len(tiff.offsets), dtype=bool)

    def check(self, index: int) -> None:
        if self._passed[index]:
            return
        reason = tile_error(self.slide, self.level, self.tiff, index)
        if reason is not None:
            raise damaged(self.tiff, index, reason)
        self._passed[index] = True

    def close(self) -> None:
        self.slide.close()


def find_damaged_tile(tiff: TiffLevel, level: int, tiles: Iterable[int]) -> SlideError | None:
    """After OpenSlide failed a read: the first of `tiles` that fails on its own, decoded through a fresh
    handle (a failed handle stays failed). None when each decodes alone."""
    with open_slide(tiff.path) as slide:
        slide.drop_tile_cache()
        for index in tiles:
            reason = tile_error(slide, level, tiff, int(index))
            if reason is not None:
                return damaged(tiff, int(index), reason)  # the first failure: errors stick after it
    return None
