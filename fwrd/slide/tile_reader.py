"""The tile readers decode workers use: direct JPEG decoding where the file allows, OpenSlide otherwise.

Each worker (thread or process) opens its own reader; readers are not shared. Both kinds return the
same pixels for the same request (see tests/test_tiff_tiles.py), so the choice is only about speed.

    reader = open_tile_reader("tumor_001.tif", level=0)
    print(reader.kind)                  # "tifffile" for tiled-JPEG TIFF/SVS, else "openslide"
    tile = reader.read(2048, 4096, 256)  # uint8 [256, 256, 3] RGB, white outside the slide
    region = reader.read(0, 0, 1024, 768)  # uint8 [768, 1024, 3]: width 1024, height 768
    reader.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fwrd.errors import SlideError
from fwrd.slide.reader import Slide, open_slide
from fwrd.slide.tiff_tiles import DirectTiffTileReader

# OpenSlide vendors whose levels are plain tiled TIFF pages (the direct decoder maps them by size).
DIRECT_VENDORS = ("aperio", "generic-tiff")


@runtime_checkable
class TileReader(Protocol):
    """Reads square tiles of one pyramid level of one slide."""

    kind: str

    def read(self, x: int, y: int, size: int, height: int | None = None) -> np.ndarray:
        """`size` x `size` pixels (`size` wide and `height` high when given) at the reader's level,
        top-left (x, y) in level-0 pixels."""
        ...

    def close(self) -> None: ...


class OpenSlideTileReader:
    """The general reader: any format OpenSlide opens (JPEG 2000 SVS, NDPI, MRXS, LZW TIFF, ...)."""

    kind = "openslide"

    def __init__(self, slide: Slide, level: int) -> None:
        self.slide = slide
        self.level = level

    def read(self, x: int, y: int, size: int, height: int | None = None) -> np.ndarray:
        return self.slide.read_region((x, y), self.level, (size, size if height is None else height))

    def close(self) -> None:
        self.slide.close()

    def __enter__(self) -> "OpenSlideTileReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tile_reader(path: str | Path, level: int, prefer_direct: bool = True) -> TileReader:
    """A reader for `level` of the slide at `path`: the direct JPEG decoder when the level is a
    tiled-JPEG TIFF page of an Aperio or generic TIFF slide and `prefer_direct`, OpenSlide otherwise.

    Raises InputNotFound / SlideError like `open_slide`, and SlideError for a level that is not there.
    """
    slide = open_slide(path)
    if not 0 <= level < slide.level_count:
        count = slide.level_count
        slide.close()
        raise SlideError(f"{path}: level {level} does not exist (the slide has {count})")
    if prefer_direct and slide.vendor in DIRECT_VENDORS:
        direct = DirectTiffTileReader.open(
            slide.path, slide.level_dimensions[level], slide.level_downsamples[level]
        )
        if direct is not None:
            slide.close()
            return direct
    return OpenSlideTileReader(slide, level)


def native_tile_size(path: str | Path, level: int) -> tuple[int, int] | None:
    """The file's own tile size (w, h) at `level`, as OpenSlide reports it; None when it has none.

    Reads aligned to this size decode each file tile once (2-4x cheaper than unaligned reads).
    """
    with open_slide(path) as slide:
        if not 0 <= level < slide.level_count:
            raise SlideError(f"{path}: level {level} does not exist (the slide has {slide.level_count})")
        props = slide.properties
        w = props.get(f"openslide.level[{level}].tile-width")
        h = props.get(f"openslide.level[{level}].tile-height")
    if w is None or h is None:
        return None
    try:
        return int(w), int(h)
    except ValueError:
        return None
