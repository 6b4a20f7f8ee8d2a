"""Direct decoding of tiled-JPEG TIFF levels (Aperio SVS, generic pyramidal TIFF): the fast reader.

OpenSlide decodes a tile into a cairo surface and blits it (0.3-0.5 ms per 256 px tile, peers.md);
here the page structure comes from tifffile once, the raw tile bytes are read with `os.pread` on
this reader's own file descriptor, and libjpeg-turbo (imagecodecs) decodes them straight into RGB.
The colour space follows OpenSlide's rule (YCbCr photometric -> YCbCr JPEG, anything else -> RGB),
edge tiles are clipped to the image and missing tiles are white, so pixels equal OpenSlide's
`read_region` exactly for reads whose level-0 origin falls on a pixel of the level.

What a decoder can and cannot see. A truncated file, a tile cut short, and JPEG structure that does
not parse (markers, tables, a Huffman code that does not exist) are errors: the slide fails with one
line. Altered entropy-coded bytes that still parse are not: libjpeg-turbo decodes them to plausible
pixels (a smeared or off-colour block) and, through imagecodecs, never reports its warnings. Of 40
single-bit flips in one tile of a synthetic slide, this reader decoded all 40 to other pixels without a
word; OpenSlide, which turns libjpeg warnings into errors, refused 12 ("premature end of data
segment") and decoded the other 28 to other pixels. `--reader openslide` is therefore the stricter
choice for files of doubtful integrity; neither detects all such damage (TIFF has no checksums), so a
copy should be verified against its source (sha256) where integrity matters.

    reader = DirectTiffTileReader.open("slide.svs", level=0, level_size=(w, h), downsample=1.0)
    tile = reader.read(2048, 4096, 256)   # uint8 [256, 256, 3], one tile decoded when aligned
    reader.close()
"""

from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from fwrd.errors import SlideError

JPEG = 7  # TIFF Compression
PHOTOMETRIC_RGB = 2
PHOTOMETRIC_YCBCR = 6
PLANAR_CONTIG = 1


def find_jpeg_page(path: str | Path, level_size: tuple[int, int]) -> dict | None:
    """Structure of the tiled page of `level_size` (w, h) if OpenSlide would decode it as JPEG.

    Returns None when no tiled page has that size, or it is not 8-bit, 3-sample, contiguous JPEG
    with RGB/YCbCr photometric (JPEG 2000 SVS, LZW/deflate TIFFs): those stay with OpenSlide.
    """
    try:
        with tifffile.TiffFile(str(path)) as tif:
            for page in tif.pages:
                if not page.is_tiled or (page.imagewidth, page.imagelength) != tuple(level_size):
                    continue
                if page.imagedepth > 1 or page.tiledepth > 1:
                    return None
                direct = (
                    page.compression == JPEG
                    and page.planarconfig == PLANAR_CONTIG
                    and page.photometric in (PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR)
                    and page.bitspersample == 8
                    and page.samplesperpixel == 3
                )
                if not direct:
                    return None
                return {
                    "offsets": np.asarray(page.dataoffsets, dtype=np.int64),
                    "bytecounts": np.asarray(page.databytecounts, dtype=np.int64),
                    "tables": page.jpegtables,
                    "tile_size": (int(page.tilewidth), int(page.tilelength)),
                    "image_size": (int(page.imagewidth), int(page.imagelength)),
                    "colorspace": "ycbcr" if page.photometric == PHOTOMETRIC_YCBCR else "rgb",
                }
    except (tifffile.TiffFileError, ValueError, OSError):
        return None
    return None


class DirectTiffTileReader:
    """Reads square regions of one JPEG TIFF level; owns one file descriptor; one per thread."""

    kind = "tifffile"

    def __init__(self, path: Path, structure: dict, downsample: float) -> None:
        self.path = path
        self.downsample = float(downsample)
        self._offsets: np.ndarray = structure["offsets"]
        self._bytecounts: np.ndarray = structure["bytecounts"]
        self._tables: bytes | None = structure["tables"]
        self._colorspace: str = structure["colorspace"]
        self.tile_w, self.tile_h = structure["tile_size"]
        self.width, self.height = structure["image_size"]
        self._across = -(-self.width // self.tile_w)
        self._fd: int | None = os.open(str(path), os.O_RDONLY | getattr(os, "O_BINARY", 0))

    @classmethod
    def open(
        cls, path: str | Path, level_size: tuple[int, int], downsample: float
    ) -> "DirectTiffTileReader | None":
        """A reader for the page of `level_size`, or None when OpenSlide must decode it."""
        structure = find_jpeg_page(path, level_size)
        return None if structure is None else cls(Path(path), structure, downsample)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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
                tile = self._decode(ly // th * self._across + lx // tw)
                if tile is not None and tile.shape == (th, tw, 3):
                    return tile
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
                if tile is None:
                    continue  # a missing tile stays white, as OpenSlide leaves it transparent
                # the part of this tile inside both the image and the request, in level pixels
                ax0, ay0 = max(col * tw, x0), max(row * th, y0)
                ax1 = min(col * tw + min(tw, tile.shape[1]), x1)
                ay1 = min(row * th + min(th, tile.shape[0]), y1)
                if ax0 >= ax1 or ay0 >= ay1:
                    continue
                out[ay0 - ly : ay1 - ly, ax0 - lx : ax1 - lx] = tile[
                    ay0 - row * th : ay1 - row * th, ax0 - col * tw : ax1 - col * tw
                ]
        return out

    def _decode(self, index: int) -> np.ndarray | None:
        if self._fd is None:
            raise SlideError(f"{self.path}: tile reader is closed")
        count = int(self._bytecounts[index])
        if count == 0:
            return None
        data = os.pread(self._fd, count, int(self._offsets[index]))
        if len(data) != count:
            raise SlideError(f"{self.path}: truncated file (tile {index} is cut short)")
        try:
            tile = imagecodecs.jpeg8_decode(
                data, tables=self._tables, colorspace=self._colorspace, outcolorspace="rgb"
            )
        except Exception as exc:  # imagecodecs raises its own error classes per codec
            raise SlideError(f"{self.path}: corrupt JPEG tile {index}: {exc}") from None
        if tile.ndim != 3 or tile.shape[2] != 3:
            raise SlideError(f"{self.path}: JPEG tile {index} is not 3-channel RGB")
        return tile
