"""The image size a JPEG or JPEG 2000 tile claims, read from its header without decoding it.

A decoder allocates what the header says: a 100 KB tile whose JPEG frame header claims 20000 x 20000
px costs 1.2 GB (65500^2: 12 GiB) before a single pixel is checked. TIFF stores tiles at exactly the
page's TileWidth x TileLength (OpenSlide refuses any other size as a "dimensional mismatch"), so a
tile is checked against that size before it is handed to a decoder.

    check_tile_header(head, 7, (256, 256), path, "tile 3 (column 3, row 0) of the 4096x4096 level")
"""

from __future__ import annotations

import struct

from fwrd.errors import SlideError
from fwrd.slide.tiff_level import JPEG, JPEG_2000

# JPEG start-of-frame markers: baseline, extended, progressive, lossless (Huffman and arithmetic)
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: markers without a length
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"  # start of codestream, then the image and tile size segment
MAX_J2K_TILES = 4096  # JPEG 2000 tiles inside one TIFF tile (OpenJPEG allocates per tile; files use 1)


class HeaderError(ValueError):
    """The header does not parse or is not in the bytes given."""


def jpeg_frame_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG stream's frame header (SOFn); HeaderError when there is none."""
    if data[:2] != b"\xff\xd8":
        raise HeaderError("no JPEG start-of-image marker")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise HeaderError(f"no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            raise HeaderError("no frame header before the scan")
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in SOF_MARKERS:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    raise HeaderError("frame header not found in the bytes read")


def j2k_frame_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG 2000 codestream (raw, as Aperio stores it, or inside a JP2 box);
    HeaderError when there is none or it would hold more than MAX_J2K_TILES tiles."""
    start = data.find(J2K_SOC_SIZ)
    if start < 0 or start + 42 > len(data):
        raise HeaderError("no JPEG 2000 image and tile size segment")
    xsiz, ysiz, xo, yo, xt, yt, xto, yto = struct.unpack(">8I", data[start + 8 : start + 40])
    width, height = xsiz - xo, ysiz - yo
    if xsiz <= xo or ysiz <= yo or xt == 0 or yt == 0:
        raise HeaderError("JPEG 2000 size segment is inconsistent")
    tiles = -(-(xsiz - xto) // xt) * -(-(ysiz - yto) // yt)
    if tiles > MAX_J2K_TILES:
        raise HeaderError(f"JPEG 2000 codestream declares {tiles} tiles")
    return width, height


def check_tile_header(head: bytes, compression: int, tile_size: tuple[int, int], path: object, tile: str) -> None:
    """SlideError unless the JPEG / JPEG 2000 header in `head` claims exactly `tile_size` (w, h).
    Other codecs (LZW, deflate, ...) size their output from the TIFF tags alone: nothing to check."""
    if compression == JPEG:
        parse, codec = jpeg_frame_size, "JPEG"
    elif compression in JPEG_2000:
        parse, codec = j2k_frame_size, "JPEG 2000"
    else:
        return
    try:
        width, height = parse(head)
    except HeaderError as exc:
        raise SlideError(f"{path}: corrupt {codec} {tile}: {exc}") from None
    if (width, height) != tuple(tile_size):
        raise SlideError(f"{path}: the {codec} header of {tile} claims {width}x{height} px in a "
                         f"{tile_size[0]}x{tile_size[1]} px tile (a damaged or hostile file)")
