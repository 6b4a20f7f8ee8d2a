"""Dense scoring's plan and tile rule: every grid point in exactly one region's core, regions aligned and
bounded, and the window weights equal to the per-tile weights."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.config import FWRDConfig
from fwrd.errors import FwrdError
from fwrd.model.anomaly_map import upsample_mean_weights
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.regions import ALIGN, cell_points, default_margin, default_side, plan_regions, smallest_side
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.window_scores import scores_at, window_scores, window_weights
from fwrd.slide.reader import open_slide

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35)


def _plan(path, stride, config=CONFIG):
    with open_slide(path) as slide:
        return plan_slide(slide, config, RunSettings(stride=stride))


@pytest.mark.parametrize("stride, side, margin, fixed", [(16, 256, 32, False), (16, 256, 64, True), (48, 320, 32, False),
                                                         (64, 640, 96, False), (24, 224, 0, True)])
def test_every_point_once_inside_a_bounded_aligned_region(synthetic_cohort, stride, side, margin, fixed):
    plan = _plan(synthetic_cohort.slides[0].path, stride)
    regions = plan_regions(plan, side, margin, fixed=fixed)
    assert sorted(map(tuple, regions.points)) == sorted(map(tuple, plan.points))  # each exactly once
    assert regions.region_starts[0] == 0 and regions.region_starts[-1] == len(plan.points)
    assert np.all(np.diff(regions.region_starts) > 0)
    assert np.all(regions.origins % ALIGN == 0) and np.all(regions.sizes % ALIGN == 0)
    assert np.all(regions.sizes <= side) and (not fixed or np.all(regions.sizes == side))
    r = np.repeat(np.arange(regions.regions), np.diff(regions.region_starts))
    # every tile window lies in its region with at least the margin of context on every side
    assert np.all(regions.offsets >= margin)
    assert np.all(regions.offsets + plan.tile + margin <= regions.sizes[r])
    np.testing.assert_array_equal(regions.origins[r] + regions.offsets, regions.points)  # level 0 = level here


def test_level1_regions_are_in_level_pixels(synthetic_cohort):
    plan = _plan(synthetic_cohort.slides[0].path, 16, CONFIG.replace(mpp=0.486))
    assert plan.level == 1
    regions = plan_regions(plan, 256, 32)
    r = np.repeat(np.arange(regions.regions), np.diff(regions.region_starts))
    np.testing.assert_array_equal(regions.origins[r] + 2 * regions.offsets, regions.points)
    assert np.all(regions.origins % (2 * ALIGN) == 0)


def test_without_keeps_region_geometry(synthetic_cohort):
    regions = plan_regions(_plan(synthetic_cohort.slides[0].path, 16), 256, 32)
    done = np.zeros(len(regions.points), bool)
    first = slice(regions.region_starts[0], regions.region_starts[1])
    done[first] = True  # region 0 finished
    done[regions.region_starts[1]] = True  # region 1 partly
    left = regions.without(done)
    assert left.regions == regions.regions - 1
    np.testing.assert_array_equal(left.origins, regions.origins[1:])
    np.testing.assert_array_equal(left.sizes, regions.sizes[1:])
    assert len(left.points) == len(regions.points) - done.sum()
    assert left.region_starts[1] == regions.region_starts[2] - regions.region_starts[1] - 1


def test_cell_size_and_too_small_regions(synthetic_cohort):
    assert cell_points(256, 64, 16, 32) == 8  # 7 * 16 + 64 + 2 * 32 = 240, snapped outwards: 256
    assert cell_points(1024, 256, 64, 128) == 9  # 8 * 64 + 256 + 2 * 128 = 1024 exactly
    assert cell_points(1024, 256, 48, 128) == 11  # 10 * 48 + 256 + 256 = 992; 16 more when a cell starts off 32
    assert smallest_side(64, 16, 32) == 160  # a point at x = 16 (mod 32): [-32, 128)
    with pytest.raises(FwrdError, match="--region 96 is too small for 64 px tiles with a 32 px margin: use at least 160"):
        plan_regions(_plan(synthetic_cohort.slides[0].path, 16), 96, 32)
    with pytest.raises(FwrdError, match="multiples of 32"):
        plan_regions(_plan(synthetic_cohort.slides[0].path, 16), 250, 32)


def test_default_geometry_by_tile_size():
    """The margins the seam measurements chose (README, Dense scoring) and the region sides per backend."""
    assert [default_margin(t) for t in (32, 64, 128, 256, 512)] == [128, 128, 128, 96, 96]
    assert [default_side(t, gpu=False) for t in (64, 128, 256)] == [1536, 1536, 2560]
    assert [default_side(t, gpu=True) for t in (64, 256, 1024)] == [4096, 4096, 8192]


@pytest.mark.parametrize("tile, stride", [(64, 4), (64, 8), (64, 16), (256, 16), (32, 16)])
def test_window_weights_are_the_per_tile_weights_moved(tile, stride):
    side = tile // stride
    w = window_weights(np.array([0, stride, 3 * stride]), tile, stride, side + 4)
    reference = upsample_mean_weights(side, tile)
    np.testing.assert_allclose(w[0, :side], reference, atol=1e-15)
    np.testing.assert_allclose(w[1, 1:side + 1], reference, atol=1e-15)
    np.testing.assert_allclose(w[2, 3:side + 3], reference, atol=1e-15)
    assert w[0, side:].sum() == 0 and w[2, :3].sum() == 0
    half = window_weights(np.array([stride / 2]), tile, stride, side + 1)[0]  # between samples: interpolated
    assert half.sum() == pytest.approx(1.0) and half @ np.arange(side + 1) == pytest.approx(0.5 + (side - 1) / 2)
    with pytest.raises(ValueError, match="do not fit"):
        window_weights(np.array([5 * stride]), tile, stride, side + 4)


def test_window_scores_equal_the_mean_of_each_windows_own_upsample():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    tile, region = 64, (96, 160)
    maps = [rng.random((region[0] // s, region[1] // s)).astype(np.float32) for s in (4, 8, 16)]
    xs, ys = np.array([0, 16, 48, 96]), np.array([0, 32])
    got = window_scores(maps, tile, xs, ys)
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            total = 0.0
            for m, s in zip(maps, (4, 8, 16)):
                block = torch.from_numpy(m[y // s:(y + tile) // s, x // s:(x + tile) // s].astype(np.float64))
                total += F.interpolate(block[None, None], size=(tile, tile), mode="bilinear",
                                       align_corners=True).mean().item()
            assert got[j, i] == pytest.approx(total, rel=1e-6)
    offsets = np.array([[48, 32], [0, 0], [48, 0]])
    np.testing.assert_array_equal(scores_at(maps, tile, offsets), [got[1, 2], got[0, 0], got[0, 2]])
