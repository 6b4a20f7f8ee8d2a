"""Planning a slide: reading level, tissue grid, file-aligned work units (fwrd.runtime.plan)."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.config import FWRDConfig
from fwrd.errors import SlideError
from fwrd.runtime.plan import block_side, plan_slide, reading_level
from fwrd.runtime.settings import RunSettings
from fwrd.slide.grid import tile_grid
from fwrd.slide.reader import open_slide
from fwrd.slide.synthetic import make_synthetic_slide
from fwrd.slide.tissue import tissue_mask

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35)


def test_block_side():
    assert block_side(64, 64, 256) == 256  # 16 model tiles per file tile
    assert block_side(256, 256, 256) == 256  # one file tile per model tile
    assert block_side(256, 64, 256) == 768  # dense grid: >= 4x the 192 px overlap
    assert block_side(256, 32, 256) == 1024
    assert block_side(512, 512, 240) == 720  # a multiple of the file tile, >= the model tile
    assert block_side(64, 64, None) == 256
    assert block_side(1024, 16, 256) == 2048  # capped


def _check_units(plan, expected_points):
    got = plan.points
    assert len(got) == len(expected_points)
    assert {tuple(p) for p in got} == {tuple(p) for p in expected_points}  # each grid point exactly once
    assert len({tuple(p) for p in got}) == len(got)
    starts = plan.unit_starts
    assert starts[0] == 0 and starts[-1] == len(got) and np.all(np.diff(starts) > 0)
    nw, nh = plan.native
    assert np.all(plan.unit_origins[:, 0] % nw == 0) and np.all(plan.unit_origins[:, 1] % nh == 0)
    for u in range(plan.units):
        offs = plan.offsets[starts[u]:starts[u + 1]]
        pts = plan.points[starts[u]:starts[u + 1]]
        assert offs.min() >= 0 and offs.max() + plan.tile <= plan.unit_sides[u]
        np.testing.assert_array_equal(plan.unit_origins[u] + offs, pts)  # level 0: offsets are pixels


@pytest.mark.parametrize("stride", [None, 32])
def test_units_partition_the_tissue_grid(synthetic_cohort, stride):
    settings = RunSettings(stride=stride)
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        plan = plan_slide(slide, CONFIG, settings)
        mask, ds = tissue_mask(slide)
        expected = tile_grid(mask, ds, slide.dimensions, 64, stride or 64, settings.min_tissue)
    assert plan.level == 0 and plan.native == (256, 256) and plan.grid_total == len(expected)
    assert plan.geometry.stride == (stride or 64) and plan.geometry.tile == 64
    _check_units(plan, expected)
    if stride is None:
        assert plan.unit_sides.max() <= 256  # aligned 64 px tiles: one file tile per window
    rest = plan.without(np.arange(len(plan.points)) % 3 == 0)
    _check_units(rest, plan.points[np.arange(len(plan.points)) % 3 != 0])
    assert rest.grid_total == plan.grid_total


def test_odd_sized_tif_with_small_file_tiles(synthetic_tif):
    with open_slide(synthetic_tif.path) as slide:
        plan = plan_slide(slide, CONFIG.replace(tile_size=96), RunSettings(stride=48))
        assert plan.native == (128, 128)
        mask, ds = tissue_mask(slide)
        _check_units(plan, tile_grid(mask, ds, slide.dimensions, 96, 48, 0.25))
        assert (plan.points + 96 <= np.array(slide.dimensions)).all()


def test_reading_level_follows_the_model_resolution(synthetic_cohort, tmp_path):
    path = synthetic_cohort.slides[0].path
    with open_slide(path) as slide:
        assert reading_level(slide, CONFIG) == 0
        assert reading_level(slide, CONFIG.replace(mpp=0.486)) == 1
        assert reading_level(slide, CONFIG.replace(mpp=None, level=2)) == 2
        assert reading_level(slide, CONFIG.replace(mpp=5.0)) == 3  # coarser than every level: shrunk from 1.944
        with pytest.raises(SlideError, match=r"levels are 0.243, 0.486, 0.972, 1.94 um/px.*0.1 um/px.*never enlarges"):
            reading_level(slide, CONFIG.replace(mpp=0.1))
        with pytest.raises(SlideError, match="level 9"):
            reading_level(slide, CONFIG.replace(mpp=None, level=9))
    bare = make_synthetic_slide(tmp_path / "bare.svs", width=512, height=512, mpp=None, seed=2).path
    with open_slide(bare) as slide:
        with pytest.raises(SlideError, match="records no microns per pixel.*--mpp"):
            reading_level(slide, CONFIG)
        assert reading_level(slide, CONFIG.replace(mpp=None)) == 0  # a model without mpp uses its level
    with open_slide(bare, mpp=0.243) as slide:
        assert reading_level(slide, CONFIG) == 0


def test_no_tissue_and_too_small(synthetic_cohort, tmp_path):
    with open_slide(synthetic_cohort.slides[0].mask) as blank:  # the tumor mask: a slide with no tissue
        with pytest.raises(SlideError, match="no tissue found"):
            plan_slide(blank, CONFIG.replace(mpp=None), RunSettings())
    small = make_synthetic_slide(tmp_path / "small.svs", width=160, height=160, seed=1).path
    with open_slide(small) as slide:
        with pytest.raises(SlideError, match="smaller than one 256 px tile"):
            plan_slide(slide, CONFIG.replace(tile_size=256), RunSettings())
