"""Direct decoding of tiled-JPEG TIFF levels (Aperio SVS, generic pyramidal TIFF): the fast reader.

OpenSlide decodes a tile into a cairo surface and blits it (0.3-0.5 ms per 256 px tile, peers.md);
here the page structure comes from tifffile once, the raw tile bytes are read with `os.pread` on
this reader's own file descriptor, and libjpeg-turbo (imagecodecs) decodes them straight into RGB.
The colour space follows OpenSlide's rule (YCbCr photometric -> YCbCr JPEG, anything else -> RGB),
and edge tiles are clipped to the image, so pixels equal OpenSlide's `read_region` exactly for reads
whose level-0 origin falls on a pixel of the level.

Damaged and missing tiles. A truncated file, a tile cut short, JPEG structure that does not parse, a
header whose size is not the tile's: one line naming the tile. Altered entropy-coded bytes that still
parse decode to plausible wrong pixels in libjpeg-turbo, which reports them only as warnings that
imagecodecs never shows; OpenSlide turns those warnings into errors, so every tile is first decoded
once by OpenSlide at one pixel (fwrd.slide.strict_decode: OpenSlide's rule, at about one extra decode
per file tile: benchmarks/results/cpu-amd-epyc-2c-strict-decode.md). A tile the file never wrote (byte
count 0) fails the read that touches it. Neither reader sees damage that leaves valid JPEG (TIFF has no
checksums): verify copies against their source (sha256) where integrity matters.

    reader = open_tile_reader("slide.svs", 0)   # fwrd.slide.tile_reader picks this reader where it can
    tile = reader.read(2048, 4096, 256)        # uint8 [256, 256, 3], one tile decoded when aligned
    reader.close()
"""

from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np

from fwrd.errors import SlideError
from fwrd.slide.codec_headers import check_tile_header
from fwrd.slide.strict_decode import TileChecker
from fwrd.slide.tiff_level import JPEG, TiffLevel, find_tiff_level

PHOTOMETRIC_RGB = 2
PHOTOMETRIC_YCBCR = 6
PLANAR_CONTIG = 1


def decodes_directly(level: TiffLevel) -> bool:
    """Whether OpenSlide would decode this page as 8-bit, 3-sample, contiguous JPEG in RGB/YCbCr: only such
    pages are read directly (JPEG 2000 SVS, LZW/deflate TIFFs stay with OpenSlide)."""
    return (
        level.compression == JPEG and level.planar == PLANAR_CONTIG and level.bits == 8 and level.samples == 3
        and level.photometric in (PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR)
    )


def find_jpeg_page(path: str | Path, level_size: tuple[int, int]) -> TiffLevel | None:
    """The tiled page of `level_size` (w, h) when it decodes directly (decodes_directly), else None."""
    level = find_tiff_level(path, level_size)
    return level if level is not None and decodes_directly(level) else None


class DirectTiffTileReader:
    """Reads square regions of one JPEG TIFF level; owns one file descriptor and the OpenSlide handle that
    checks each tile (`checker`); one per thread."""

    kind = "tifffile"

    def __init__(self, path: Path, level: TiffLevel, downsample: float, checker: TileChecker) -> None:
        self.path = path
        self.downsample = float(downsample)
        self.level = level
        self._checker: TileChecker | None = checker
        self._colorspace = "ycbcr" if level.photometric == PHOTOMETRIC_YCBCR else "rgb"
        self.tile_w, self.tile_h = level.tile_size
        self.width, self.height = level.image_size
        self._across = level.across
        self._fd: int | None = os.open(str(path), os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._checker is not None:
            self._checker.close()
            self._checker = None

    def __enter__(self) -> "DirectTiffTileReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, x: int, y: int, size: int, height: int | None = None) -> np.ndarray:
        """`size` x `size` pixels (`size` wide, `height` high when given) of this level whose top-left is
        (x, y) in level-0 pixels."""
        lx = int(round(x / self.downsample))
        ly = int(round(y / self.downsample))
        tw, th = self.tile_w, self.tile_h
        if height is not None and height != size:
            return self._assemble(lx, ly, size, height)
        if size == tw == th and lx % tw == 0 and ly % th == 0 and 0 <= lx and 0 <= ly:
            if lx + tw <= self.width and ly + th <= self.height:
                return self._decode(ly // th * self._across + lx // tw)
        return self._assemble(lx, ly, size, size)

    def _assemble(self, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + w, self.width), min(ly + h, self.height)
        if x0 >= x1 or y0 >= y1:
            return out
        tw, th = self.tile_w, self.tile_h
        for row in range(y0 // th, (y1 - 1) // th + 1):
            for col in range(x0 // tw, (x1 - 1) // tw + 1):
                tile = self._decode(row * self._across + col)
                # the part of this tile inside both the image and the request, in level pixels
                ax0, ay0 = max(col * tw, x0), max(row * th, y0)
                ax1, ay1 = min(col * tw + tw, x1), min(row * th + th, y1)
                if ax0 >= ax1 or ay0 >= ay1:
                    continue
                out[ay0 - ly : ay1 - ly, ax0 - lx : ax1 - lx] = tile[
                    ay0 - row * th : ay1 - row * th, ax0 - col * tw : ax1 - col * tw
                ]
        return out

    def _decode(self, index: int) -> np.ndarray:
        if self._fd is None or self._checker is None:
            raise SlideError(f"{self.path}: tile reader is closed")
        level = self.level
        count = int(level.bytecounts[index])
        if count == 0:
            raise level.missing(index)
        data = os.pread(self._fd, count, int(level.offsets[index]))
        if len(data) != count:
            raise SlideError(f"{self.path}: truncated file ({level.describe(index)} is cut short)")
        check_tile_header(data, JPEG, level.tile_size, self.path, level.describe(index))
        self._checker.check(index)  # OpenSlide's rule: damaged entropy data is an error, not a warning
        out = np.empty((self.tile_h, self.tile_w, 3), np.uint8)  # the tile's size, never the header's
        try:
            imagecodecs.jpeg8_decode(
                data, tables=level.jpeg_tables, colorspace=self._colorspace, outcolorspace="rgb", out=out
            )
        except Exception as exc:  # imagecodecs raises its own error classes per codec
            raise SlideError(f"{self.path}: corrupt JPEG {level.describe(index)}: {exc}") from None
        return out
