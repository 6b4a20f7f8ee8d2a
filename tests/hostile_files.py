"""Small files that lie: damaged or missing tiles, claims that would size huge allocations, odd codecs.

Each builder writes one file with tifffile / Pillow and returns its path; the files stay small (KB)
whatever they claim. Used by tests/test_damaged_tiles.py, test_reader_limits.py and test_formats.py.
"""

from __future__ import annotations

import struct
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

APERIO = "Aperio Image Library v12.0.15"


def tile_layout(path: Path, page: int = 0) -> tuple[list[int], list[int], tuple[int, int], int]:
    """(offsets, byte counts, (tile width, tile height), tiles across) of a tiled page."""
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        across = -(-p.imagewidth // p.tilewidth)
        return list(p.dataoffsets), list(p.databytecounts), (p.tilewidth, p.tilelength), across


def scan_start(jpeg: bytes) -> int:
    """Offset of the first entropy-coded byte (just after the SOS segment)."""
    sos = jpeg.find(b"\xff\xda")
    return sos + 2 + struct.unpack(">H", jpeg[sos + 2 : sos + 4])[0]


def damage_tile(src: Path, dst: Path, index: int, how: str, page: int = 0) -> Path:
    """Copy `src` to `dst` with the JPEG entropy data of tile `index` garbled (random bytes over a
    stretch of it), half zeroed (its second half set to 0), or the tile dropped (byte count 0)."""
    data = bytearray(src.read_bytes())
    offsets, counts, _, _ = tile_layout(src, page)
    start, count = offsets[index], counts[index]
    tile = data[start : start + count]
    body = scan_start(bytes(tile))
    if how == "garbled":
        n = min(400, (count - body) // 2)
        noise = np.random.default_rng(7).integers(0, 255, n, dtype=np.uint8)  # no 0xFF byte: no marker appears
        tile[body + 40 : body + 40 + n] = noise.tobytes()
    elif how == "half-zeroed":
        mid = (body + count - 2) // 2
        tile[mid : count - 2] = bytes(count - 2 - mid)
    elif how == "missing":
        _set_bytecount_zero(data, src, index, page)
        dst.write_bytes(bytes(data))
        return dst
    else:
        raise ValueError(how)
    data[start : start + count] = tile
    dst.write_bytes(bytes(data))
    return dst


def _set_bytecount_zero(data: bytearray, src: Path, index: int, page: int) -> None:
    with tifffile.TiffFile(src) as tif:
        tag = tif.pages[page].tags["TileByteCounts"]
        size = {3: 2, 4: 4, 16: 8}[int(tag.dtype)]  # SHORT, LONG, LONG8
        where = tag.valueoffset + index * size
    data[where : where + size] = bytes(size)


def _jpeg_tiles(count: int, side: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(count):
        pixels = np.clip(rng.normal(170, 30, (side, side, 3)), 0, 255).astype(np.uint8)
        tiles.append(imagecodecs.jpeg8_encode(pixels, level=80))
    return tiles


def svs_claiming_tile(path: Path, claimed_tile: int, width: int | None = None) -> Path:
    """An Aperio SVS whose level-0 TileWidth/TileLength say `claimed_tile` while each tile holds a tiny
    16 px JPEG: a few KB that would make a reader allocate claimed_tile^2 pixels per tile."""
    width = width or 2 * claimed_tile
    tiles = (-(-width // claimed_tile)) ** 2
    small = _jpeg_tiles(1, 16)[0]
    with tifffile.TiffWriter(path, bigtiff=claimed_tile > 32768) as tw:
        tw.write(iter([small] * tiles), shape=(width, width, 3), dtype=np.uint8, tile=(claimed_tile, claimed_tile),
                 photometric="rgb", compression="jpeg", metadata=None,
                 description=f"{APERIO} \r\n{width}x{width} [0,0 {width}x{width}] ({claimed_tile}x{claimed_tile}) "
                             "JPEG/RGB Q=80|AppMag = 40|MPP = 0.243")
    return path


def jpeg_claiming_size(path: Path, claimed: int, side: int = 256, tiles: int = 4) -> Path:
    """An Aperio SVS (2 x 2 tiles, and a sound coarser level) whose first tile's JPEG header says `claimed` x
    `claimed` pixels."""
    encoded = _jpeg_tiles(tiles, side)
    first = bytearray(encoded[0])
    sof = first.find(b"\xff\xc0")
    first[sof + 5 : sof + 9] = struct.pack(">HH", claimed, claimed)
    encoded[0] = bytes(first)
    width = side * 2
    with tifffile.TiffWriter(path) as tw:
        tw.write(iter(encoded), shape=(width, width, 3), dtype=np.uint8, tile=(side, side), photometric="rgb",
                 compression="jpeg", metadata=None,
                 description=f"{APERIO} \r\n{width}x{width} [0,0 {width}x{width}] ({side}x{side}) JPEG/RGB Q=80"
                             "|AppMag = 40|MPP = 0.243")
        coarse = np.full((side // 2, side // 2, 3), 200, np.uint8)  # a sound level 1: the slide opens
        tw.write(coarse, tile=(side // 2, side // 2), photometric="rgb", compression="jpeg", metadata=None,
                 subfiletype=1, description=f"{APERIO} \r\n{width}x{width} -> {side // 2}x{side // 2} JPEG/RGB Q=80")
    return path


def set_level_size(src: Path, dst: Path, width: int, height: int, page: int = 0) -> Path:
    """Copy `src` with page `page`'s ImageWidth/ImageLength rewritten (its tiles stay as they are)."""
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        order = tif.byteorder
        for name, value in (("ImageWidth", width), ("ImageLength", height)):
            tag = tif.pages[page].tags[name]
            fmt = {3: "H", 4: "I", 16: "Q"}[int(tag.dtype)]
            data[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(order + fmt, value)
    dst.write_bytes(bytes(data))
    return dst


def set_compression(src: Path, dst: Path, value: int) -> Path:
    """Copy `src` with every page's Compression tag set to `value` (a codec no reader knows, e.g. 52479)."""
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        for page in tif.pages:
            tag = page.tags["Compression"]
            data[tag.valueoffset : tag.valueoffset + 2] = struct.pack(tif.byteorder + "H", value)
    dst.write_bytes(bytes(data))
    return dst


def tiff_claiming_level(path: Path, side: int, tile: int = 4096) -> Path:
    """A generic pyramidal TIFF whose level 0 claims side x side px with tiles the file never wrote,
    over a real 512 px level: a few hundred KB of tile tables."""
    tiles = (-(-side // tile)) ** 2
    small = np.full((512, 512, 3), 230, np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(iter([b""] * tiles), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                 compression="jpeg", metadata=None)
        tw.write(small, tile=(256, 256), photometric="rgb", compression="jpeg", subfiletype=1, metadata=None)
    return path
