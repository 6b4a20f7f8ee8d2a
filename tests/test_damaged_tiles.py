"""Damaged and missing tiles inside the tissue fail the slide in one line naming the tile, on every reader
path (issue 21.2 and 21.6): never a silently degraded score."""

from __future__ import annotations

import csv

import imagecodecs
import numpy as np
import openslide
import pytest
import tifffile
from click.testing import CliRunner

from fwrd.cli.run import command
from fwrd.config import FWRDConfig
from fwrd.errors import SlideError
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.settings import RunSettings
from fwrd.slide.reader import open_slide
from fwrd.slide.tile_reader import open_tile_reader
from hostile_files import damage_tile, tile_layout

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35)  # the stand-in model's


@pytest.fixture(scope="module")
def damaged(synthetic_cohort, tmp_path_factory):
    """{how: (slide, index, column, row)}: tumor_001 with one level-0 tile under the grid garbled, half
    zeroed or dropped. The garble is random bytes (no 0xFF, so no marker); whether libjpeg then runs out
    of data depends on the tile, so the garbled tile is the busiest grid tile whose garble OpenSlide
    refuses (its rule is what the readers must match; a garble it decodes is invisible to both)."""
    path = synthetic_cohort.slides[0].path
    with open_slide(path) as slide:
        points = plan_slide(slide, CONFIG, RunSettings()).points
    _, _, (tw, th), across = tile_layout(path)
    busiest = np.argsort(-np.bincount((points[:, 1] // th) * across + points[:, 0] // tw), kind="stable")
    folder = tmp_path_factory.mktemp("damaged")
    made = {}
    for how in ("garbled", "half-zeroed", "missing"):
        for index in busiest[:20]:
            target = damage_tile(path, folder / f"{how}.svs", int(index), how)
            if how != "garbled" or _openslide_refuses(target, int(index) % across, int(index) // across):
                made[how] = (target, int(index), int(index) % across, int(index) // across)
                break
    return made


def _openslide_refuses(path, col, row) -> bool:
    with openslide.OpenSlide(str(path)) as slide:
        try:
            slide.read_region((col * 256, row * 256), 0, (256, 256))
        except openslide.OpenSlideError:
            return True
    return False


@pytest.mark.parametrize("how", ["garbled", "half-zeroed"])
def test_libjpeg_turbo_alone_decodes_the_damage_silently(damaged, how):
    # why the readers need OpenSlide's rule: the decoder they use says nothing about these tiles
    path, index, col, row = damaged[how]
    assert _openslide_refuses(path, col, row)
    offsets, counts, _, _ = tile_layout(path)
    data = path.read_bytes()[offsets[index] : offsets[index] + counts[index]]
    with tifffile.TiffFile(path) as tif:
        tables = tif.pages[0].jpegtables
    pixels = imagecodecs.jpeg8_decode(data, tables=tables, colorspace="ycbcr", outcolorspace="rgb")
    assert pixels.shape == (256, 256, 3)


@pytest.mark.parametrize("how", ["garbled", "half-zeroed"])
@pytest.mark.parametrize("direct", [True, False])
def test_a_damaged_tile_fails_the_read_naming_it(damaged, how, direct):
    path, index, col, row = damaged[how]
    with open_tile_reader(path, 0, prefer_direct=direct) as reader:
        assert reader.kind == ("tifffile" if direct else "openslide")
        with pytest.raises(SlideError) as failure:
            reader.read(col * 256 - 64, row * 256, 512)  # a window that spans the damaged tile
    message = str(failure.value)
    assert f"damaged tile data in tile {index} (column {col}, row {row}) of the 2048x2048 level" in message
    assert "Corrupt JPEG data" in message and "\n" not in message


@pytest.mark.parametrize("direct", [True, False])
def test_a_missing_tile_fails_the_read_naming_it(damaged, direct):
    path, index, col, row = damaged["missing"]
    with open_tile_reader(path, 0, prefer_direct=direct) as reader:
        reader.read(0, 0, 256)  # other tiles read as before
        with pytest.raises(SlideError, match=rf"tile {index} \(column {col}, row {row}\) of the 2048x2048 level is "
                                             r"missing from the file \(TileByteCounts 0\)"):
            reader.read(col * 256, row * 256, 256)


@pytest.mark.parametrize("how", ["garbled", "half-zeroed", "missing"])
@pytest.mark.parametrize("reader", ["auto", "openslide"])
def test_fwrd_run_fails_the_slide_in_one_line(damaged, standin_model, tmp_path, how, reader):
    path, index, _, _ = damaged[how]
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "tumor_001.svs").write_bytes(path.read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(command, [str(slides), "--model", str(standin_model), "--out", str(out),
                                          "--quiet", "--threads", "1", "--reader", reader])
    assert result.exit_code != 0 and "Traceback" not in result.output
    with open(out / "slides.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["status"] == "failed" and f"tile {index} (column" in row["error"], row
    assert "\n" not in row["error"]
    assert not (out / "tumor_001" / "summary.json").exists()


def test_a_missing_tile_in_glass_is_left_alone(synthetic_cohort, standin_model, tmp_path):
    # a sparse file's background: nothing scored is near it, so nothing is guessed
    path = synthetic_cohort.slides[0].path
    with open_slide(path) as slide:
        plan = plan_slide(slide, CONFIG, RunSettings())
    mask, scale = plan.mask, 256 / plan.mask_downsample
    _, _, _, across = tile_layout(path)
    glass = next(i for i in range(across * across)
                 if not mask[max(int((i // across) * scale) - 1, 0) : int((i // across + 1) * scale) + 1,
                             max(int((i % across) * scale) - 1, 0) : int((i % across + 1) * scale) + 1].any())
    slides = tmp_path / "slides"
    slides.mkdir()
    damage_tile(path, slides / "tumor_001.svs", glass, "missing")
    result = CliRunner().invoke(command, [str(slides), "--model", str(standin_model), "--out", str(tmp_path / "out"),
                                          "--quiet", "--threads", "1"])
    assert result.exit_code == 0, result.output
