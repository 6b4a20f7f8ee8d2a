"""One tiled TIFF page (a pyramid level) as its directory describes it, checked before any pixel is decoded.

Both tile readers (direct and OpenSlide) need the file's own account of a level: where each tile's bytes
are, how large a tile is, which codec. A file's claims must never size an allocation, so they are
checked here first against limits no real slide reaches and against the file itself:

- a tile side above MAX_TILE_SIDE (real slides use 240-1024 px; a 224 KB file that claims 32768 px
  tiles would make every reader allocate 3-4 GB per tile),
- a level above MAX_CLAIMED_PIXELS (a 10^6 x 10^6 claim: gigabytes of heatmap and grid when planning),
- tile bytes beyond the end of the file (truncated),
- a tile whose byte count is 0 (never written): `missing_in` finds those a read touches, and the
  readers refuse the read (`missing`) instead of painting glass where the file has no pixels.

    level = find_tiff_level("slide.svs", (w, h))   # None when no tiled page has that size
    level.describe(17)                              # "tile 17 (column 3, row 2) of the 4096x4096 level"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from fwrd.errors import SlideError

MAX_TILE_SIDE = 4096  # px: 48 MB of RGB per tile; real slides use 240-1024
# other formats' "tiles" can be whole low-resolution levels (an NDPI level without restart markers is one
# JPEG): there only what OpenSlide can hold at all is refused (2^28 px: 1 GiB of its ARGB buffer)
MAX_OTHER_TILE_PIXELS = 1 << 28
TIFF_PAGE_VENDORS = ("aperio", "generic-tiff")  # OpenSlide vendors whose levels are plain tiled TIFF pages
MAX_CLAIMED_PIXELS = 1 << 36  # 68.7 G px (262144^2); the largest whole-slide scans are ~20 G px

JPEG = 7
JPEG_2000 = (33003, 33004, 33005, 34712)  # Aperio YCbCr / lossy / RGB, and the standard tag value


@dataclass(frozen=True)
class TiffLevel:
    """The tiles of one tiled page: byte ranges, tile and image size (px), codec and colour tags."""

    path: Path
    page: int
    image_size: tuple[int, int]  # (width, height)
    tile_size: tuple[int, int]  # (width, height)
    offsets: np.ndarray  # int64 per tile, row-major
    bytecounts: np.ndarray  # int64 per tile; 0 = never written
    compression: int
    photometric: int
    planar: int
    bits: int
    samples: int
    jpeg_tables: bytes | None

    @property
    def across(self) -> int:
        return -(-self.image_size[0] // self.tile_size[0])

    @property
    def down(self) -> int:
        return -(-self.image_size[1] // self.tile_size[1])

    def describe(self, index: int) -> str:
        """Names a tile the way a user can find it: index, column and row, and which level."""
        w, h = self.image_size
        return f"tile {index} (column {index % self.across}, row {index // self.across}) of the {w}x{h} level"

    def tiles_in(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Indices of the tiles that pixels [x0, x1) x [y0, y1) of this level touch (clipped to the image)."""
        w, h = self.image_size
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            return np.zeros(0, np.int64)
        tw, th = self.tile_size
        cols = np.arange(x0 // tw, (x1 - 1) // tw + 1)
        rows = np.arange(y0 // th, (y1 - 1) // th + 1)
        return (rows[:, None] * self.across + cols[None, :]).ravel().astype(np.int64)

    def missing_in(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The tiles of that area that the file never wrote (byte count 0)."""
        tiles = self.tiles_in(x0, y0, x1, y1)
        return tiles[self.bytecounts[tiles] == 0]

    def missing(self, index: int) -> SlideError:
        """The error for a tile the file never wrote: painting it white would score glass, not tissue."""
        return SlideError(f"{self.path}: {self.describe(index)} is missing from the file (TileByteCounts 0)")


def check_tile_size(path: Path, tile_w: int, tile_h: int, where: str, vendor: str = "generic-tiff") -> None:
    """SlideError when a declared tile is larger than any real slide's (the file would size the allocation):
    sides over MAX_TILE_SIDE in TIFF-page formats, over MAX_OTHER_TILE_PIXELS in the others."""
    if vendor in TIFF_PAGE_VENDORS:
        if not (0 < tile_w <= MAX_TILE_SIDE and 0 < tile_h <= MAX_TILE_SIDE):
            raise SlideError(f"{path}: {where} declares {tile_w}x{tile_h} px tiles; refusing tiles over "
                             f"{MAX_TILE_SIDE} px (a damaged or hostile file)")
    elif not (0 < tile_w and 0 < tile_h and tile_w * tile_h <= MAX_OTHER_TILE_PIXELS):
        raise SlideError(f"{path}: {where} declares {tile_w}x{tile_h} px tiles; refusing tiles over "
                         f"{MAX_OTHER_TILE_PIXELS / 1e6:.0f} M px (a damaged or hostile file)")


def check_level_size(path: Path, width: int, height: int, where: str) -> None:
    """SlideError when a level claims more pixels than any real slide has."""
    if width <= 0 or height <= 0 or width * height > MAX_CLAIMED_PIXELS:
        raise SlideError(f"{path}: {where} claims {width}x{height} px; refusing levels over "
                         f"{MAX_CLAIMED_PIXELS / 1e9:.0f} G px (a damaged or hostile file)")


def find_tiff_level(path: str | Path, level_size: tuple[int, int]) -> TiffLevel | None:
    """The tiled page of `level_size` (w, h), checked (module docstring); None when the file is not a TIFF
    tifffile parses or no tiled page has that size. SlideError for a page that breaks the limits."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with tifffile.TiffFile(str(path)) as tif:
            for index, page in enumerate(tif.pages):
                if not page.is_tiled or (page.imagewidth, page.imagelength) != tuple(level_size):
                    continue
                return _level(path, index, page, file_size)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError):
        return None
    return None


def _level(path: Path, index: int, page: tifffile.TiffPage, file_size: int) -> TiffLevel:
    where = f"TIFF page {index}"
    check_tile_size(path, int(page.tilewidth), int(page.tilelength), where)
    check_level_size(path, int(page.imagewidth), int(page.imagelength), where)
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    level = TiffLevel(
        path=path, page=index, image_size=(int(page.imagewidth), int(page.imagelength)),
        tile_size=(int(page.tilewidth), int(page.tilelength)), offsets=offsets, bytecounts=counts,
        compression=int(page.compression), photometric=int(page.photometric), planar=int(page.planarconfig),
        bits=int(page.bitspersample), samples=int(page.samplesperpixel), jpeg_tables=page.jpegtables,
    )
    if len(offsets) != len(counts) or len(offsets) < level.across * level.down or page.tiledepth > 1:
        raise SlideError(f"{path}: {where} lists {len(offsets)} tiles for a {level.across}x{level.down} "
                         "grid (a damaged file)")
    beyond = np.flatnonzero((counts > 0) & (offsets + counts > file_size))
    if len(beyond):
        raise SlideError(f"{path}: truncated file ({level.describe(int(beyond[0]))} ends past the end of "
                         f"the file, {file_size} bytes)")
    return level


def refuse_missing_by_tissue(level: TiffLevel, downsample: float, mask: np.ndarray, mask_downsample: float) -> None:
    """SlideError naming the first tile of `level` (the reading level, `downsample` level-0 px per px) that the
    file never wrote and that lies in or next to tissue (`mask`, one mask pixel of slack around the tile).

    Checked on the plan, not only when reading: OpenSlide shows a missing tile as transparent at every
    level, so the tissue mask (white there) drops it and no grid tile would ever read it. A missing tile
    with glass all around (a sparse file's background) is left alone.
    """
    missing = np.flatnonzero(level.bytecounts[: level.across * level.down] == 0)
    (tw, th), (h, w) = level.tile_size, mask.shape
    scale = downsample / mask_downsample  # mask pixels per level pixel
    for index in missing:
        col, row = int(index) % level.across, int(index) // level.across
        c0, r0 = max(int(col * tw * scale) - 1, 0), max(int(row * th * scale) - 1, 0)
        c1, r1 = min(int(np.ceil((col + 1) * tw * scale)) + 1, w), min(int(np.ceil((row + 1) * th * scale)) + 1, h)
        if mask[r0:r1, c0:c1].any():
            raise SlideError(f"{level.path}: {level.describe(int(index))} is missing from the file "
                             "(TileByteCounts 0) next to tissue; painting it white would score glass")
