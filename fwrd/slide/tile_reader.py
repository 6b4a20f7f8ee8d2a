"""The tile readers decode workers use: direct JPEG decoding where the file allows, OpenSlide otherwise.

Each worker (thread or process) opens its own reader; readers are not shared. Both kinds return the
same pixels for the same request (see tests/test_tiff_tiles.py), so the choice is only about speed, and
both hold a file to the same rules wherever its levels are TIFF pages: damaged JPEG data, a tile the file
never wrote, and a tile header claiming another size than the tile's each fail the read in one line that
names the tile (fwrd.slide.strict_decode, tiff_level, codec_headers).

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
from fwrd.slide.codec_headers import check_tile_header
from fwrd.slide.reader import PixelReadError, Slide, open_slide
from fwrd.slide.strict_decode import TileChecker, find_damaged_tile
from fwrd.slide.tiff_level import MAX_TILE_SIDE, TIFF_PAGE_VENDORS, TiffLevel, check_tile_size, find_tiff_level
from fwrd.slide.tiff_tiles import DirectTiffTileReader, decodes_directly

HEAD_BYTES = 4096  # bytes of a tile read to find its codec header (JPEG frame or JPEG 2000 size segment)

# OpenSlide vendors whose levels are plain tiled TIFF pages (the direct decoder and the checks map them by size).
DIRECT_VENDORS = TIFF_PAGE_VENDORS


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
    """The general reader: any format OpenSlide opens (JPEG 2000 SVS, NDPI, MRXS, LZW TIFF, ...). Where the
    level is a page of an Aperio or generic TIFF (`tiff`, see tiff_level_of), each read is first held to the
    file's structure: no missing tile, no codec header claiming another size than the tile's; a failed read
    names the damaged tile."""

    kind = "openslide"

    def __init__(self, slide: Slide, level: int, tiff: TiffLevel | None = None) -> None:
        self.slide = slide
        self.level = level
        self.tiff = tiff
        self._headers_ok = np.zeros(len(tiff.offsets) if tiff is not None else 0, dtype=bool)

    def read(self, x: int, y: int, size: int, height: int | None = None) -> np.ndarray:
        h = size if height is None else height
        tiles = self._check_tiles(x, y, size, h)
        try:
            return self.slide.read_region((x, y), self.level, (size, h))
        except PixelReadError:
            if self.tiff is not None and len(tiles):
                named = find_damaged_tile(self.tiff, self.level, tiles)
                if named is not None:
                    raise named from None
            raise

    def _check_tiles(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The TIFF tiles this read touches, after refusing missing ones and headers of the wrong size."""
        if self.tiff is None:
            return np.zeros(0, np.int64)
        tiff, ds = self.tiff, self.slide.level_downsamples[self.level]
        lx, ly = int(x // ds), int(y // ds)
        tiles = tiff.tiles_in(lx, ly, lx + w + 1, ly + h + 1)
        missing = tiles[tiff.bytecounts[tiles] == 0]
        if len(missing):
            raise tiff.missing(int(missing[0]))
        unchecked = tiles[~self._headers_ok[tiles]]
        if len(unchecked):
            with open(tiff.path, "rb") as handle:
                for index in unchecked:
                    handle.seek(int(tiff.offsets[index]))
                    head = handle.read(min(int(tiff.bytecounts[index]), HEAD_BYTES))
                    check_tile_header(head, tiff.compression, tiff.tile_size, tiff.path, tiff.describe(index))
            self._headers_ok[unchecked] = True
        return tiles

    def close(self) -> None:
        self.slide.close()

    def __enter__(self) -> "OpenSlideTileReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tile_reader(path: str | Path, level: int, prefer_direct: bool = True) -> TileReader:
    """A reader for `level` of the slide at `path`: the direct JPEG decoder when the level is a
    tiled-JPEG TIFF page of an Aperio or generic TIFF slide and `prefer_direct`, OpenSlide otherwise.

    Raises InputNotFound / SlideError like `open_slide`, and SlideError for a level that is not there or
    whose TIFF page breaks fwrd.slide.tiff_level's limits.
    """
    slide = open_slide(path)
    try:
        if not 0 <= level < slide.level_count:
            raise SlideError(f"{path}: level {level} does not exist (the slide has {slide.level_count})")
        tiff = tiff_level_of(slide, level)
    except BaseException:
        slide.close()
        raise
    if prefer_direct and tiff is not None and decodes_directly(tiff):
        return DirectTiffTileReader(slide.path, tiff, slide.level_downsamples[level], TileChecker(slide, level, tiff))
    return OpenSlideTileReader(slide, level, tiff)


def tiff_level_of(slide: Slide, level: int) -> TiffLevel | None:
    """The TIFF page that is `level`, checked (fwrd.slide.tiff_level), for the vendors whose levels are plain
    tiled pages (Aperio, generic TIFF); None for every other format, whose layout only OpenSlide knows
    (Philips omits background tiles by design, Ventana overlaps them, MIRAX and DICOM are not TIFF)."""
    if slide.vendor not in DIRECT_VENDORS:
        return None
    return find_tiff_level(slide.path, slide.level_dimensions[level])


def native_tile_size(path: str | Path, level: int) -> tuple[int, int] | None:
    """The file's own tile size (w, h) at `level`, as OpenSlide reports it; None when it has none or it is
    over MAX_TILE_SIDE (refused outright for TIFF-page formats, fwrd.slide.tiff_level).

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
        size = int(w), int(h)
    except ValueError:
        return None
    check_tile_size(Path(path), *size, f"level {level}", slide.vendor)
    # a "tile" that is a whole level (NDPI without restart markers): aligning windows to it would read it whole
    return size if max(size) <= MAX_TILE_SIDE else None
