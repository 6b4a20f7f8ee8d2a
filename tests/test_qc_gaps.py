"""QC's second round on the gaps the held-out record left: a fold piece cut off from its region by tiles with
too little tissue to score is judged with that region (fwrd.slide.qc.drop_small's `bridge`), and the rim of
an air bubble crossing a tile's corner flags the tile (`bubble_fraction` 1 %) while clean real tissue stays
far under it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fwrd.config import QCThresholds
from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide.grid import tile_grid
from fwrd.slide.qc import KINDS, code_of, drop_small, judge, on_grid
from fwrd.slide.qc_features import FEATURES, tile_features
from fwrd.slide.tissue import glass_colour, tissue_mask_from_rgb

REAL = Path(__file__).parent / "data" / "cmu1_small_region_crop.jpg"
FOLD = code_of("fold")
GREY = FEATURES.index("grey")


def test_a_fold_piece_across_unscored_tiles_is_judged_with_its_region():
    codes = np.zeros((6, 9), np.uint8)
    scored = np.ones((6, 9), bool)
    codes[1:3, 1:3] = FOLD  # a region of four
    scored[1:4, 3] = False  # a lumen beside it ...
    codes[2, 4] = FOLD  # ... and across it a piece of one
    kept = drop_small(codes, "fold", 3, bridge=~scored)
    assert (kept[1:3, 1:3] == FOLD).all() and kept[2, 4] == FOLD
    assert drop_small(codes, "fold", 3)[2, 4] == 0  # without the bridge: a region of one, dropped
    weak = {kind: np.zeros((6, 9), bool) for kind in KINDS}
    assert on_grid(codes, weak, scored, QCThresholds(fold_min_tiles=3))[2, 4] == FOLD
    across_tissue = scored.copy()
    across_tissue[1:4, 3] = True  # the gap is scored tissue the rule found no fold in: the piece stays alone
    assert drop_small(codes, "fold", 3, bridge=~across_tissue)[2, 4] == 0
    wide = np.zeros((6, 12), np.uint8)
    wide[1:3, 1:3] = FOLD
    wide[2, 6] = FOLD  # three unscored cells away: too far to be the same fold
    wide_scored = np.ones((6, 12), bool)
    wide_scored[:, 3:6] = False
    assert drop_small(wide, "fold", 3, bridge=~wide_scored)[2, 6] == 0


def test_small_fold_pieces_linked_only_to_one_another_stay_small():
    codes = np.zeros((5, 7), np.uint8)
    scored = np.ones((5, 7), bool)
    codes[1, 1] = codes[2, 1] = FOLD  # a pair ...
    scored[1:3, 2] = False
    codes[1, 3] = FOLD  # ... and a lone tile across an unscored gap: three tiles, but no region of three
    assert not (drop_small(codes, "fold", 3, bridge=~scored) == FOLD).any()


def _corner_rim(rgb: np.ndarray, y0: int, inset: float) -> np.ndarray:
    """A 192 px window of `rgb` with a bubble (radius 60 px) centred up and left of the middle tile, so its
    rim crosses that tile's top-left corner `inset` px in."""
    window = rgb[y0:y0 + 192, 320:512].copy()
    radius = 60.0
    centre = 64 - radius / np.sqrt(2) + inset
    paint.bubble(window, (centre, centre), radius)
    return window


@pytest.mark.parametrize("y0, inset", [(256, 24), (384, 12)])
def test_a_bubble_rim_across_a_tiles_corner_flags_the_tile(y0, inset):
    rgb = np.array(Image.open(REAL).convert("RGB"))
    glass = glass_colour(np.asarray(Image.fromarray(rgb).reduce(16)))
    thresholds = QCThresholds()
    features = tile_features(_corner_rim(rgb, y0, inset), np.array([[64, 64]]), 64, glass, thresholds)
    grey = float(features[0, GREY])
    assert thresholds.bubble_fraction <= grey < 0.015  # under the old 1.5 %: this tile was not flagged
    assert judge(features, thresholds).codes[0] == code_of("bubble")


def test_clean_real_tissue_holds_under_half_the_bubble_fraction_of_grey():
    rgb = np.array(Image.open(REAL).convert("RGB"))
    small = np.asarray(Image.fromarray(rgb).reduce(16))
    points = tile_grid(tissue_mask_from_rgb(small), 16, (rgb.shape[1], rgb.shape[0]), 64, 64)
    features = tile_features(rgb, points, 64, glass_colour(small), QCThresholds())
    assert len(points) >= 100
    assert features[:, GREY].max() < QCThresholds().bubble_fraction / 2
