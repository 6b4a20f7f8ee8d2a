"""The tile lattice: alignment, exact tissue fractions, slide edges, and speed on Camelyon-sized slides."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fwrd.slide.grid import DEFAULT_MIN_TISSUE, footprint_fraction, lattice, tile_grid


def test_lattice_alignment_and_edges():
    xs, ys = lattice((1000, 700), tile=256, stride=64)
    assert xs.tolist() == list(range(0, 705, 64))  # 704 + 256 = 960 <= 1000 < 768 + 256
    assert ys.tolist() == list(range(0, 445, 64))
    mask = np.ones((11, 16), bool)  # downsample 64 covers the slide
    grid = tile_grid(mask, 64.0, (1000, 700), tile=256, stride=64, min_tissue=0.0)
    assert grid.dtype == np.int64 and grid.shape == (len(xs) * len(ys), 2)
    assert (grid % 64 == 0).all()
    assert (grid[:, 0] + 256 <= 1000).all() and (grid[:, 1] + 256 <= 700).all()
    order = np.lexsort((grid[:, 0], grid[:, 1]))
    np.testing.assert_array_equal(order, np.arange(len(grid)))  # row-major
    assert tile_grid(mask, 64.0, (200, 700), tile=256, stride=64).shape == (0, 2)  # narrower than a tile


def test_tissue_fraction_threshold():
    mask = np.zeros((16, 16), bool)
    mask[:, :8] = True  # tissue left of x = 512 on a 1024 x 1024 slide at downsample 64
    grid = tile_grid(mask, 64.0, (1024, 1024), tile=256, stride=64, min_tissue=0.5)
    assert sorted(set(grid[:, 0].tolist())) == [0, 64, 128, 192, 256, 320, 384]  # x + 128 <= 512
    grid = tile_grid(mask, 64.0, (1024, 1024), tile=256, stride=64, min_tissue=1.0)
    assert sorted(set(grid[:, 0].tolist())) == [0, 64, 128, 192, 256]
    assert tile_grid(mask, 64.0, (1024, 1024), 256, 64, min_tissue=0.0).shape[0] == 13 * 13
    assert 0 < DEFAULT_MIN_TISSUE < 1


def test_fraction_is_exact_for_unaligned_footprints():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 15)) < 0.4
    ds, tile = 8.0, 20
    xs, ys = np.arange(0, 100, 6), np.arange(0, 76, 7)
    frac = footprint_fraction(mask, ds, xs, ys, tile)
    full = np.repeat(np.repeat(mask, 8, axis=0), 8, axis=1).astype(float)  # level-0 view
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            assert frac[j, i] == pytest.approx(full[y : y + tile, x : x + tile].mean(), abs=1e-12)


def test_footprint_beyond_mask_counts_as_glass():
    mask = np.ones((4, 4), bool)  # covers 256 x 256 of a 320 x 320 slide (a mask cut short)
    frac = footprint_fraction(mask, 64.0, np.array([0, 128]), np.array([0]), 128)
    np.testing.assert_allclose(frac, [[1.0, 1.0]])
    frac = footprint_fraction(mask, 64.0, np.array([192]), np.array([192]), 128)
    np.testing.assert_allclose(frac, [[0.25]])


def test_camelyon_sized_slide_is_fast():
    rng = np.random.default_rng(0)
    mask = rng.random((3125, 1563)) < 0.3  # level 6 of a 100k x 200k slide
    start = time.perf_counter()
    grid = tile_grid(mask, 64.0, (100_000, 200_000), tile=256, stride=64)
    elapsed = time.perf_counter() - start
    assert len(grid) > 1_000_000
    assert elapsed < 5.0, f"tile_grid took {elapsed:.1f} s"
