"""The formats table of docs/formats.md, row by row, on files these tests write (issue 20): which reader
decodes each, pixel parity of the direct reader with `openslide.read_region` for every codec it decodes,
JPEG 2000 through OpenSlide, and an unsupported codec named as such. A small pyramid (1024 px, three
levels, tissue from `make_synthetic_slide`) is written in each layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import imagecodecs
import numpy as np
import openslide
import pytest
import tifffile
from click.testing import CliRunner

from fwrd.cli.run import command
from fwrd.errors import SlideError
from fwrd.slide.reader import open_slide, rgba_to_rgb_on_white
from fwrd.slide.synthetic import make_synthetic_slide
from fwrd.slide.tile_reader import open_tile_reader
from hostile_files import set_compression

MPP = 0.243
TILE = 256
APERIO = "Aperio Image Library v12.0.15"


@pytest.fixture(scope="module")
def levels(tmp_path_factory) -> list[np.ndarray]:
    """RGB pyramid levels (1024, 512, 256 px) of a synthetic tumor slide."""
    source = make_synthetic_slide(tmp_path_factory.mktemp("src") / "src.svs", width=1024, height=1024, seed=5).path
    with tifffile.TiffFile(source) as tif:
        return [tif.pages[i].asarray() for i in (0, 2, 3)]  # page 1 is Aperio's thumbnail


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    """JPEG's full-range RGB -> YCbCr (what Aperio's 33003 codestreams hold)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def _j2k_tiles(image: np.ndarray) -> list[bytes]:
    h, w = image.shape[:2]
    tiles = []
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            tile = np.zeros((TILE, TILE, 3), np.uint8)
            part = image[y : y + TILE, x : x + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            tiles.append(imagecodecs.jpeg2k_encode(tile, level=0, codecformat="j2k"))  # reversible: lossless
    return tiles


def write_svs(path: Path, levels: list[np.ndarray], codec: str, bigtiff: bool = False) -> Path:
    """Aperio SVS: JPEG with YCbCr or RGB photometric, or JPEG 2000 (33003 YCbCr / 33005 RGB codestreams)."""
    w0, h0 = levels[0].shape[1], levels[0].shape[0]
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        for k, image in enumerate(levels):
            h, w = image.shape[:2]
            desc = f"{APERIO} \r\n{w0}x{h0} [0,0 {w0}x{h0}] ({TILE}x{TILE})"
            desc += f" JPEG Q=90|AppMag = 40|MPP = {MPP}" if k == 0 else f" -> {w}x{h} JPEG Q=90"
            extra = {"subfiletype": 1} if k else {}
            if codec in ("ycbcr", "rgb"):
                args = {"compressionargs": {"level": 90, "outcolorspace": codec}}
                tw.write(image, tile=(TILE, TILE), photometric="rgb", compression="jpeg", metadata=None,
                         description=desc, **args, **extra)
            else:
                data = _ycbcr(image) if codec == "33003" else image
                tw.write(iter(_j2k_tiles(data)), shape=image.shape, dtype=np.uint8, tile=(TILE, TILE),
                         photometric="rgb", compression=int(codec), metadata=None, description=desc, **extra)
    return path


def _resolution(downsample: float) -> dict:
    per_cm = 1e4 / (MPP * downsample)
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def write_tiff(path: Path, levels: list[np.ndarray], bigtiff: bool) -> Path:
    """Generic tiled TIFF, one IFD per level (Camelyon16's layout when pyramidal and BigTIFF)."""
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        for k, image in enumerate(levels):
            tw.write(image, tile=(TILE, TILE), photometric="rgb", compression="jpeg", metadata=None,
                     compressionargs={"level": 90}, **({"subfiletype": 1} if k else {}), **_resolution(2.0**k))
    return path


def write_ome(path: Path, levels: list[np.ndarray]) -> Path:
    """OME-TIFF: level 0 in the main IFD, the others in its SubIFDs (OpenSlide sees level 0 only)."""
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        tw.write(levels[0], subifds=len(levels) - 1, tile=(TILE, TILE), photometric="rgb", compression="jpeg",
                 metadata={"axes": "YXS", "PhysicalSizeX": MPP, "PhysicalSizeY": MPP}, **_resolution(1.0))
        for k, image in enumerate(levels[1:], start=1):
            tw.write(image, subfiletype=1, tile=(TILE, TILE), photometric="rgb", compression="jpeg",
                     **_resolution(2.0**k))
    return path


@pytest.fixture(scope="module")
def formats(levels, tmp_path_factory) -> dict[str, Path]:
    """One file per row of the formats table (docs/formats.md), all in one folder."""
    folder = tmp_path_factory.mktemp("formats")
    made = {
        "svs_jpeg_ycbcr": write_svs(folder / "svs_jpeg_ycbcr.svs", levels, "ycbcr"),
        "svs_jpeg_rgb": write_svs(folder / "svs_jpeg_rgb.svs", levels, "rgb"),
        "svs_j2k_33003": write_svs(folder / "svs_j2k_33003.svs", levels, "33003"),
        "svs_j2k_33005": write_svs(folder / "svs_j2k_33005.svs", levels, "33005"),
        "svs_bigtiff": write_svs(folder / "svs_bigtiff.svs", levels, "ycbcr", bigtiff=True),
        "tiff_pyramid": write_tiff(folder / "tiff_pyramid.tif", levels, bigtiff=True),
        "tiff_single_level": write_tiff(folder / "tiff_single_level.tif", levels[:1], bigtiff=False),
        "ome_tiff": write_ome(folder / "ome_tiff.ome.tif", levels),
    }
    return made


# (file, reader fwrd-run uses, levels OpenSlide shows, OpenSlide vendor)
ROWS = [
    ("svs_jpeg_ycbcr", "tifffile", 3, "aperio"),
    ("svs_jpeg_rgb", "tifffile", 3, "aperio"),
    ("svs_j2k_33003", "openslide", 3, "aperio"),
    ("svs_j2k_33005", "openslide", 3, "aperio"),
    ("svs_bigtiff", "tifffile", 3, "aperio"),
    ("tiff_pyramid", "tifffile", 3, "generic-tiff"),
    ("tiff_single_level", "tifffile", 1, "generic-tiff"),
    ("ome_tiff", "tifffile", 1, "generic-tiff"),
]

# level-0 (x, y, size) reads: aligned on file tiles, unaligned, straddling the edge, partly outside
REQUESTS = [(0, 0, 256), (256, 512, 256), (37, 11, 300), (900, 880, 256), (-20, -30, 128)]


@pytest.mark.parametrize("name, reader, level_count, vendor", ROWS)
def test_each_format_opens_with_the_reader_the_table_names(formats, name, reader, level_count, vendor):
    with open_slide(formats[name]) as slide:
        assert (slide.level_count, slide.vendor) == (level_count, vendor)
        assert slide.mpp == pytest.approx(MPP, rel=1e-3)
    with open_tile_reader(formats[name], 0) as tiles:
        assert tiles.kind == reader


@pytest.mark.parametrize("name", [row[0] for row in ROWS if row[1] == "tifffile"])
def test_direct_reader_pixels_equal_openslide_read_region(formats, name):
    """Every codec the direct reader decodes (JPEG as YCbCr and as RGB, in every layout it is chosen for)."""
    path = formats[name]
    with tifffile.TiffFile(path) as tif:  # the two JPEG colour rules: YCbCr (6) and RGB (2) photometric
        assert tif.pages[0].photometric == {"svs_jpeg_rgb": 2}.get(name, 6)
    with openslide.OpenSlide(str(path)) as reference, open_tile_reader(path, 0) as direct:
        assert direct.kind == "tifffile"
        for x, y, size in REQUESTS:
            expected = rgba_to_rgb_on_white(np.asarray(reference.read_region((x, y), 0, (size, size))))
            np.testing.assert_array_equal(direct.read(x, y, size), expected, err_msg=f"{name} {(x, y, size)}")


@pytest.mark.parametrize("name, tolerance", [("svs_j2k_33005", 0), ("svs_j2k_33003", 3)])
def test_jpeg_2000_goes_through_openslide_with_the_written_pixels(formats, levels, name, tolerance):
    # 33005 holds RGB (lossless here: exact); 33003 YCbCr, which OpenSlide converts back (rounding)
    with open_tile_reader(formats[name], 0) as reader:
        assert reader.kind == "openslide"
        got = reader.read(0, 0, 1024).astype(int)
    assert np.abs(got - levels[0].astype(int)).max() <= tolerance


def test_an_unsupported_codec_is_named(formats, tmp_path):
    odd = set_compression(formats["tiff_pyramid"], tmp_path / "odd.tif", 52479)
    with pytest.raises(SlideError, match=r"odd.tif: unsupported codec: TIFF compression 52479 "):
        open_slide(odd)


def test_fwrd_run_scores_every_format(formats, standin_model, tmp_path):
    folder = next(iter(formats.values())).parent
    set_compression(formats["tiff_pyramid"], folder / "unsupported.tif", 52479)
    out = tmp_path / "out"
    result = CliRunner().invoke(command, [str(folder), "--model", str(standin_model), "--out", str(out),
                                          "--quiet", "--threads", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    with open(out / "slides.csv", newline="") as handle:
        rows = {row["slide"]: row for row in csv.DictReader(handle)}
    assert rows.pop("unsupported")["error"].split(": ", 1)[1].startswith("unsupported codec: TIFF compression 52479")
    for name, reader, _, _ in ROWS:
        stem = formats[name].stem
        assert rows[stem]["status"] == "ok", rows[stem]
        assert json.loads((out / stem / "summary.json").read_text())["reader"] == reader
