"""QC's blur edge reads a tile's least sharp block (`sharpness_min`): a tile 80 % inside a focus miss keeps a
sharp strip on two sides, so its lower median over blocks reads as sharp as clean tissue; beside a blur tile its
blurred block is what counts. Real pixels (the vendored CMU crop), blurred as the QC benchmark paints it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fwrd.config import QCThresholds
from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide.qc import code_of, judge, on_grid
from fwrd.slide.qc_features import FEATURES, tile_features
from fwrd.slide.tissue import glass_colour

REAL = Path(__file__).parent / "data" / "cmu1_small_region_crop.jpg"
TILE, SIDE = 64, 7


def test_the_corner_of_a_focus_miss_is_blur_by_its_least_sharp_block():
    whole = np.array(Image.open(REAL).convert("RGB"))
    rgb = np.ascontiguousarray(whole[:SIDE * TILE, 320:320 + SIDE * TILE])
    box = (134, 134, 354, 354)  # 6 px into tile (2, 2): it is 82 % blurred, with a sharp strip on two sides
    paint.out_of_focus(rgb, box, sigma=5.0)
    points = np.array([(x, y) for y in range(0, SIDE * TILE, TILE) for x in range(0, SIDE * TILE, TILE)])
    thresholds = QCThresholds()
    features = tile_features(rgb, points, TILE, glass_colour(np.asarray(Image.fromarray(whole).reduce(16))),
                             thresholds)
    verdict = judge(features, thresholds)
    ref = verdict.reference["sharpness"]
    corner = 2 * SIDE + 2
    assert features[corner, FEATURES.index("sharpness")] > thresholds.blur_edge_ratio * ref  # reads sharp ...
    assert features[corner, FEATURES.index("sharpness_min")] < thresholds.blur_ratio * ref  # ... but one block is not
    scored = np.isfinite(features[:, FEATURES.index("sharpness")]).reshape(SIDE, SIDE)
    grid = on_grid(verdict.codes.reshape(SIDE, SIDE), {k: w.reshape(SIDE, SIDE) for k, w in verdict.weak.items()},
                   scored, thresholds)
    assert grid[2, 2] == code_of("blur")
    touched = np.zeros((SIDE, SIDE), bool)
    touched[2:6, 2:6] = True  # the tiles the blurred box reaches
    assert not grid[~touched].any()  # clean tissue around it stays scored
    assert (grid[2:5, 2:5] == code_of("blur")).all()
