"""QC's fold, blur and bubble rules (fwrd.slide.qc, fwrd.slide.qc_features): a fold is tissue as dark as two
layers of tissue of its own colour, so folds painted on real H&E pixels are flagged while dense tumour (stained
differently) is not, even under a stain shift; blur is judged in blocks against local contrast, so a tile half
out of focus is flagged and a tumour border is not; a bubble's washed-out inside is filled from its rim."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fwrd.config import RETIRED_FOLD_KEYS, FWRDConfig, QCThresholds
from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide.annotations import Annotations, rasterize
from fwrd.slide.grid import tile_grid
from fwrd.slide.qc import MIN_COLOUR_TILES, code_of, fill_enclosed, judge, same_colour_od
from fwrd.slide.qc_features import FEATURES, tile_features
from fwrd.slide.synthetic_render import plan_layout, render
from fwrd.slide.tissue import glass_colour, tissue_mask_from_rgb

REAL = Path(__file__).parent / "data" / "cmu1_small_region_crop.jpg"
TILE = 64


def _synthetic(size: int, seed: int, tumours: int) -> tuple[np.ndarray, np.ndarray]:
    layout = plan_layout(np.random.default_rng([seed, 0]), size, size, tumours, False, 1.0, 1.8)
    tumour = rasterize(Annotations(tumor=layout.tumors, exclusions=[]), (size, size), 1.0)
    return render(np.random.default_rng([seed, 1]), layout, tumour), tumour


def _qc(rgb: np.ndarray):
    """Tiles (x, y), features and codes as fwrd-run computes them on the whole image as one window."""
    small = np.asarray(Image.fromarray(rgb).reduce(16))
    points = tile_grid(tissue_mask_from_rgb(small), 16, (rgb.shape[1], rgb.shape[0]), TILE, TILE)
    features = tile_features(rgb, points, TILE, glass_colour(small), QCThresholds())
    return points, features, judge(features, QCThresholds()).codes


def _share(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.array([mask[y:y + TILE, x:x + TILE].mean() for x, y in points])


def test_colour_in_optical_density_does_not_change_with_thickness():
    rgb = np.array(Image.open(REAL).convert("RGB"))
    glass = np.array(glass_colour(np.asarray(Image.fromarray(rgb).reduce(16))))
    doubled = np.clip(np.rint(glass * (rgb / glass) ** 2), 0, 255).astype(np.uint8)  # two layers of the same tissue
    offsets = np.array([(x, y) for y in range(0, 1024, TILE) for x in range(0, 1024, TILE)])
    one = tile_features(rgb, offsets, TILE, tuple(glass), QCThresholds())
    two = tile_features(doubled, offsets, TILE, tuple(glass), QCThresholds())
    od, red, green = (FEATURES.index(n) for n in ("od", "red_share", "green_share"))
    solid = one[:, FEATURES.index("tissue")] >= 0.98  # the same pixels are tissue in both
    assert solid.sum() >= 20
    assert np.allclose(two[solid, od] / one[solid, od], 2.0, atol=0.1)
    moved = np.abs(two[solid][:, [red, green]] - one[solid][:, [red, green]])
    assert np.median(moved) <= 0.01 and moved.max() <= 0.025  # up to 8-bit clipping of the darkest pixels


def test_same_colour_reference_compares_a_tile_with_tissue_of_its_own_colour():
    rng = np.random.default_rng(0)
    pale = np.column_stack([rng.normal(0.15, 0.002, 40), rng.normal(0.6, 0.002, 40)])  # eosin-rich
    dense = np.column_stack([rng.normal(0.35, 0.002, 40), rng.normal(0.45, 0.002, 40)])  # haematoxylin-rich
    lone = np.array([[0.25, 0.2]])  # a colour no other tile has
    colour = np.vstack([pale, dense, lone])
    od = np.concatenate([rng.normal(0.5, 0.02, 40), rng.normal(1.5, 0.05, 40), [3.0]])
    reference = same_colour_od(colour, od, np.ones(len(od), bool), radius=0.015)
    assert np.allclose(reference[:40], 0.5, atol=0.03) and np.allclose(reference[40:80], 1.5, atol=0.06)
    assert np.isnan(reference[-1])  # fewer than MIN_COLOUR_TILES near it: not judged
    usable = np.zeros(len(od), bool)
    usable[:MIN_COLOUR_TILES - 1] = True
    assert np.isnan(same_colour_od(colour, od, usable, radius=0.015)).all()


def test_fold_painted_on_real_he_pixels_is_flagged():
    rgb = np.array(Image.open(REAL).convert("RGB"))
    before = rgb.copy()
    folded = paint.fold(rgb, (200, 340, 470, 510))
    points, _, codes = _qc(rgb)
    fold = _share(folded, points) >= 0.5
    clean = _share(np.abs(rgb.astype(np.int16) - before).max(axis=2) > 0, points) == 0
    assert fold.sum() >= 6
    assert (codes[fold] == code_of("fold")).mean() >= 0.9
    assert (codes[clean] > 0).mean() <= 0.08


@pytest.mark.parametrize("gains", [None, (1.35, 0.7), (0.7, 1.35)])
def test_dense_tumour_is_not_a_fold_under_a_stain_shift(gains):
    rgb, tumour = _synthetic(1024, 35, 2)
    if gains is not None:
        rgb = paint.stain_shift(rgb, *gains)
    points, _, codes = _qc(rgb)
    inside = _share(tumour, points) >= 0.5
    assert inside.sum() >= 5
    assert not (codes[inside] > 0).any()
    assert not (codes == code_of("fold")).any()


def test_a_fold_doubles_tissue_only_where_tissue_lies_on_tissue():
    rgb = np.empty((64, 128, 3), np.uint8)
    rgb[:, :64], rgb[:, 64:] = (240, 238, 242), (200, 120, 170)  # glass | tissue
    before = rgb.copy()
    doubled = paint.fold(rgb, (0, 0, 128, 64), shift=(32, 0))  # each pixel gets the one 32 px to its right
    assert (rgb[:, :32] == before[:, :32]).all()  # glass over glass is glass
    assert (rgb[:, 32:64] == before[:, 64:96]).all()  # tissue over glass: one layer of tissue, no fold
    assert (rgb[:, 64:] < before[:, 64:]).all()  # tissue over tissue: darker
    assert not doubled[:, :64].any() and doubled[:, 64:].all()


def test_a_fold_on_synthetic_tissue_is_flagged():
    rgb, _ = _synthetic(1024, 22, 0)
    folded = paint.fold(rgb, (100, 300, 700, 600), shift=(-40, 60))
    points, _, codes = _qc(rgb)
    fold = _share(folded, points) >= 0.5
    assert fold.sum() >= 10 and (codes[fold] == code_of("fold")).mean() >= 0.9


def test_a_tile_half_out_of_focus_is_blur_and_a_tumour_border_is_not():
    rgb, tumour = _synthetic(1536, 23, 2)
    blurred = paint.out_of_focus(rgb, (300, 300, 1000, 1000), sigma=5.0)  # edges off the 64 px grid
    points, _, codes = _qc(rgb)
    share = _share(blurred, points)
    half = (share >= 0.5) & (share < 1.0)
    assert half.sum() >= 8
    assert (codes[share >= 0.5] == code_of("blur")).mean() >= 0.9 and (codes[half] == code_of("blur")).mean() >= 0.8
    border = (_share(tumour, points) >= 0.5) & (_share(tumour, points) < 1.0) & (share == 0)
    assert border.sum() >= 3 and not (codes[border] > 0).any()


def test_a_bubble_is_flagged_rim_and_inside():
    rgb, _ = _synthetic(1536, 24, 0)
    bubbled = paint.bubble(rgb, (760.0, 700.0), 123.0)
    points, features, codes = _qc(rgb)
    cells = points // TILE
    grid = np.zeros(tuple(cells.max(axis=0)[::-1] + 1), np.uint8)
    grid[cells[:, 1], cells[:, 0]] = codes
    scored = np.zeros(grid.shape, bool)
    scored[cells[:, 1], cells[:, 0]] = True
    filled = fill_enclosed(grid, scored)[cells[:, 1], cells[:, 0]]
    inside = _share(bubbled, points) >= 0.5
    rim = (_share(bubbled, points) > 0) & (features[:, FEATURES.index("grey")] > 0)
    assert inside.sum() >= 6 and (filled[inside] > 0).mean() >= 0.75
    assert rim.sum() >= 8 and (codes[rim] == code_of("bubble")).mean() >= 0.75  # a rim crossing a tile's corner too


def test_a_model_saved_with_the_retired_fold_settings_loads_with_the_fold_defaults():
    saved = json.loads(FWRDConfig(tile_size=64).to_json())
    for name in ("fold_thickness", "fold_min_darkness", "fold_colour_radius"):
        del saved["qc"][name]
    saved["qc"] |= {"fold_darkness": 1.5, "fold_saturation": "0.12", "fold_spread": None, "bubble_fraction": 0.03}
    assert set(RETIRED_FOLD_KEYS) <= set(saved["qc"])
    qc = FWRDConfig.from_json(json.dumps(saved)).qc
    assert qc == QCThresholds(bubble_fraction=0.03)  # its own settings kept, the fold rule at its defaults
    assert not set(RETIRED_FOLD_KEYS) & set(qc.to_dict())
