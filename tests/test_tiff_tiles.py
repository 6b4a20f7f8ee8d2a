"""The direct JPEG tile decoder gives OpenSlide's pixels exactly, and is chosen only where it can."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fwrd.errors import InputNotFound, SlideError
from fwrd.slide.tile_reader import OpenSlideTileReader, TileReader, native_tile_size, open_tile_reader
from fwrd.slide.tiff_tiles import DirectTiffTileReader, find_jpeg_page


def _requests(width: int, height: int, file_tile: int, ds: int) -> list[tuple[int, int, int]]:
    """(x, y, size) in level-0 pixels: aligned, unaligned, spanning tiles, edges, outside."""
    w, h = width // ds, height // ds
    t = file_tile
    level_reqs = [
        (0, 0, t), (t, t, t),  # aligned: one file tile each
        (0, 0, 2 * t),  # aligned, four file tiles
        (37, 11, t), (t - 5, 3, 64),  # unaligned
        (w - t // 2, h - t // 2, t),  # straddles the right/bottom edge (padded edge tiles)
        (w - 40, 0, 64), (0, h - 7, 32),  # partial edge tiles
        (-20, -30, 64),  # starts outside
        (w + 10, h + 10, 32),  # entirely outside
    ]
    return [(x * ds, y * ds, s) for x, y, s in level_reqs]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_direct_equals_openslide_tif(synthetic_tif, level):
    direct = open_tile_reader(synthetic_tif.path, level)
    general = open_tile_reader(synthetic_tif.path, level, prefer_direct=False)
    assert (direct.kind, general.kind) == ("tifffile", "openslide")
    try:
        for x, y, size in _requests(1000, 776, 128, 2**level):
            a, b = direct.read(x, y, size), general.read(x, y, size)
            assert a.shape == b.shape == (size, size, 3) and a.dtype == np.uint8
            np.testing.assert_array_equal(a, b, err_msg=f"level {level} read {(x, y, size)}")
    finally:
        direct.close()
        general.close()


@pytest.mark.parametrize("level", [0, 1])
def test_direct_equals_openslide_svs(synthetic_cohort, level):
    path = synthetic_cohort.slides[0].path
    with open_tile_reader(path, level) as direct, open_tile_reader(path, level, prefer_direct=False) as general:
        assert direct.kind == "tifffile"
        for x, y, size in _requests(2048, 2048, 256, 2**level):
            np.testing.assert_array_equal(direct.read(x, y, size), general.read(x, y, size))


def test_readers_satisfy_protocol(synthetic_cohort):
    path = synthetic_cohort.slides[2].path
    for prefer in (True, False):
        reader = open_tile_reader(path, 0, prefer_direct=prefer)
        assert isinstance(reader, TileReader)
        reader.close()
        reader.close()  # safe twice


def test_aligned_read_decodes_one_tile(synthetic_cohort, monkeypatch):
    reader = open_tile_reader(synthetic_cohort.slides[0].path, 0)
    calls = []
    original = reader._decode
    monkeypatch.setattr(reader, "_decode", lambda i: calls.append(i) or original(i))
    reader.read(512, 256, 256)
    assert calls == [1 * 8 + 2]  # row 1, column 2 of an 8-tile-wide level
    calls.clear()
    reader.read(500, 256, 256)
    assert len(calls) == 2
    reader.close()


def test_native_tile_size(synthetic_cohort, synthetic_tif):
    assert native_tile_size(synthetic_cohort.slides[0].path, 0) == (256, 256)
    assert native_tile_size(synthetic_tif.path, 2) == (128, 128)
    with pytest.raises(SlideError, match="level 7"):
        native_tile_size(synthetic_tif.path, 7)


def test_non_jpeg_levels_fall_back_to_openslide(tmp_path, synthetic_tif):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    path = tmp_path / "lzw.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(image, tile=(128, 128), photometric="rgb", compression="lzw", metadata=None)
    assert find_jpeg_page(path, (400, 300)) is None
    with open_tile_reader(path, 0) as reader:
        assert isinstance(reader, OpenSlideTileReader)
        np.testing.assert_array_equal(reader.read(10, 20, 64), image[20:84, 10:74])
    # the mask (deflate, single channel) is read by OpenSlide as grey RGB
    with open_tile_reader(synthetic_tif.mask, 0) as reader:
        assert reader.kind == "openslide"
        grey = reader.read(0, 0, 128)
        assert (grey[..., 0] == grey[..., 1]).all() and set(np.unique(grey)) <= {0, 255}


def test_errors(tmp_path, synthetic_tif):
    with pytest.raises(InputNotFound):
        open_tile_reader(tmp_path / "nope.tif", 0)
    with pytest.raises(SlideError, match="level 5 does not exist"):
        open_tile_reader(synthetic_tif.path, 5)
    # garbage in one tile's bytes: a clear SlideError, not a crash
    broken = tmp_path / "broken.tif"
    data = bytearray(synthetic_tif.path.read_bytes())
    with tifffile.TiffFile(synthetic_tif.path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data[offset : offset + count] = b"\x00" * count
    broken.write_bytes(bytes(data))
    reader = open_tile_reader(broken, 0)
    assert isinstance(reader, DirectTiffTileReader)
    with pytest.raises(SlideError, match=r"corrupt JPEG tile 0 \(column 0, row 0\) of the 1000x776 level: no JPEG"):
        reader.read(0, 0, 128)
    reader.close()


def _split_tables(jpeg: bytes) -> tuple[bytes, bytes]:
    """(tables-only stream, abbreviated image stream) of a JPEG: how Aperio stores its tiles."""
    import struct

    i, tables, rest = 2, b"", b""
    while True:
        marker = jpeg[i : i + 2]
        if marker == b"\xff\xda":  # start of scan: entropy-coded data follows
            return b"\xff\xd8" + tables + b"\xff\xd9", b"\xff\xd8" + rest + jpeg[i:]
        length = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        segment = jpeg[i : i + 2 + length]
        if marker in (b"\xff\xdb", b"\xff\xc4"):  # quantisation and Huffman tables
            tables += segment
        else:
            rest += segment
        i += 2 + length


@pytest.mark.parametrize("photometric, jpeg_space", [("ycbcr", "ycbcr"), ("rgb", "rgb")])
def test_shared_jpeg_tables(tmp_path, photometric, jpeg_space):
    """Tiles without their own tables (JPEGTables tag, as in Aperio SVS) decode like OpenSlide."""
    import imagecodecs

    image = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    tiles, tables = [], None
    for y in range(0, 200, 64):
        for x in range(0, 300, 64):
            tile = np.zeros((64, 64, 3), np.uint8)
            part = image[y : y + 64, x : x + 64]
            tile[: part.shape[0], : part.shape[1]] = part
            encoded = imagecodecs.jpeg8_encode(tile, level=90, colorspace="rgb", outcolorspace=jpeg_space)
            tables, abbreviated = _split_tables(encoded)
            tiles.append(abbreviated)
    path = tmp_path / "tables.tif"
    tifffile.imwrite(path, iter(tiles), shape=(200, 300, 3), dtype=np.uint8, tile=(64, 64), photometric=photometric,
                     compression="jpeg", extratags=[(347, 7, len(tables), tables, True)], metadata=None)
    assert find_jpeg_page(path, (300, 200)).jpeg_tables == tables
    with open_tile_reader(path, 0) as direct, open_tile_reader(path, 0, prefer_direct=False) as general:
        assert direct.kind == "tifffile"
        for x, y, size in [(0, 0, 64), (10, 20, 100), (250, 150, 64)]:
            np.testing.assert_array_equal(direct.read(x, y, size), general.read(x, y, size))
