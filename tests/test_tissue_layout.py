"""The tissue mask does not depend on the file's layout (fwrd.slide.thumbnail): the same pixels written as a
single level, a x2 or a x4 pyramid give the same mask and grid, at the reference's resolution, streamed."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.slide import reader as reader_module
from fwrd.slide import thumbnail as thumbnail_module
from fwrd.slide.grid import tile_grid
from fwrd.slide.reader import open_slide
from fwrd.slide.synthetic import make_synthetic_slide
from fwrd.slide.thumbnail import low_resolution, reference_downsample, stream_shrink, thumbnail
from fwrd.slide.tissue import tissue_mask

SIDE = 2048  # a multiple of 64: every layout covers whole mask pixels


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """One slide (dark tumour nuclei: G <= 50 at level 0) written as a single level and as x2 / x4 pyramids."""
    root = tmp_path_factory.mktemp("layouts")
    return {pyramid: make_synthetic_slide(root / pyramid / "same.svs", width=SIDE, height=SIDE, mpp=0.243,
                                          pyramid=pyramid, seed=5, tumor_scale=1.5).path
            for pyramid in ("single", "x2", "x4")}


def _mask_and_grid(path):
    with open_slide(path) as slide:
        mask, ds = tissue_mask(slide)
        return mask, ds, tile_grid(mask, ds, slide.dimensions, 256, 64), slide.level_count


def test_same_mask_and_grid_whatever_the_pyramid(layouts):
    results = {name: _mask_and_grid(path) for name, path in layouts.items()}
    assert [results[n][3] for n in ("single", "x2", "x4")] == [1, 4, 3]  # x2 stops at downsample 8, x4 at 16
    reference_mask, reference_ds, reference_grid, _ = results["x2"]
    assert reference_ds == 64.0 and reference_mask.shape == (SIDE // 64, SIDE // 64)
    for name in ("single", "x4"):
        mask, ds, grid, _ = results[name]
        assert ds == reference_ds and mask.shape == reference_mask.shape
        jaccard = (mask & reference_mask).sum() / (mask | reference_mask).sum()
        moved = len(set(map(tuple, grid)) ^ set(map(tuple, reference_grid)))
        # the pyramid's levels are JPEG'd again: a mask pixel on the tissue border may flip, nothing more
        assert jaccard >= 0.99 and moved <= 0.01 * len(reference_grid), (name, jaccard, moved)


def test_resolution_follows_the_slide_mpp(tmp_path):
    slide_20x = make_synthetic_slide(tmp_path / "s20.svs", width=1024, height=768, mpp=0.5, seed=1).path
    bare = make_synthetic_slide(tmp_path / "bare.svs", width=1024, height=768, mpp=None, seed=1).path
    with open_slide(slide_20x) as slide:
        assert reference_downsample(slide) == 31.0  # 15.55 um/px / 0.5
        mask, ds = tissue_mask(slide)
        assert ds == 31.0 and mask.shape == (25, 34)  # ceil(768 / 31), ceil(1024 / 31)
    with open_slide(bare) as slide:
        assert reference_downsample(slide) == 64.0


def test_streaming_reads_chunks_and_matches_one_read(layouts, monkeypatch):
    """A single-level file is never read whole: small chunks give the image one large read gives."""
    with open_slide(layouts["single"]) as slide:
        whole, _ = low_resolution(slide)
        calls = []
        real = slide.read_region

        def spy(location, level, size):
            calls.append(size)
            return real(location, level, size)

        monkeypatch.setattr(thumbnail_module, "CHUNK", 640)
        monkeypatch.setattr(slide, "read_region", spy)
        chunked = stream_shrink(slide, 0, 64.0)
    assert max(max(size) for size in calls) <= 640 and len(calls) > 9
    np.testing.assert_array_equal(chunked, whole)


def test_a_large_single_level_slide_is_never_read_whole(layouts, monkeypatch):
    """read_level refuses large levels; mask and overlay thumbnail of a single-level slide never ask for one."""
    monkeypatch.setattr(reader_module, "MAX_LEVEL_PIXELS", 1_000_000)  # level 0 here is 4.2 MP
    with open_slide(layouts["single"]) as slide:
        mask, ds = tissue_mask(slide)
        picture = thumbnail(slide, 1024)
    assert mask.any() and ds == 64.0
    assert picture.shape == (1024, 1024, 3)  # 2048 / 2
