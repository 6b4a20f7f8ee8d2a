"""QC's third round, bubbles over dense tissue: seen through an air bubble the stain is washed out, and its rim,
blended into dark tumour, is no longer grey; both are pale (unsaturated < 0.2, between black and glass), which
stained tissue seldom is, so a tile far paler than its slide's median is `bubble` (fwrd.slide.qc.pale_bubble)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fwrd.config import QCThresholds
from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide.qc import MIN_REFERENCE_TILES, code_of, judge
from fwrd.slide.qc_features import FEATURES, tile_features
from fwrd.slide.grid import tile_grid
from fwrd.slide.tissue import glass_colour, tissue_mask_from_rgb

DATA = Path(__file__).parent / "data"
PALE, GREY = FEATURES.index("pale"), FEATURES.index("grey")
BUBBLE = code_of("bubble")


def _grid(rgb: np.ndarray, tile: int = 64) -> np.ndarray:
    h, w = rgb.shape[:2]
    ys, xs = np.mgrid[0:h - tile + 1:tile, 0:w - tile + 1:tile]
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _dense_tumour() -> np.ndarray:
    """stardist's histo.jpg: dense tumour, every tile saturated purple (28 tiles of 64 px)."""
    return np.array(Image.open(DATA / "stardist_histo.jpg").convert("RGB"))


def test_the_washed_out_inside_of_a_bubble_over_dense_tumour_is_bubble():
    rgb = _dense_tumour()
    glass = glass_colour(rgb)
    points = _grid(rgb)
    assert len(points) >= MIN_REFERENCE_TILES
    thresholds = QCThresholds()
    clean = judge(tile_features(rgb, points, 64, glass, thresholds), thresholds)
    assert not (clean.codes == BUBBLE).any()  # dense tumour is not pale
    paint.bubble(rgb, (256.0, 160.0), 110.0)
    inside = np.flatnonzero([(x, y) in {(192, 128), (256, 128), (192, 64), (256, 64)} for x, y in points])
    features = tile_features(rgb, points, 64, glass, thresholds)
    assert (features[inside, GREY] < thresholds.bubble_fraction).all()  # no grey rim in these tiles
    assert (features[inside, PALE] >= thresholds.bubble_pale_fraction).all()
    assert (judge(features, thresholds).codes[inside] == BUBBLE).all()


def test_a_slide_whose_tissue_is_all_pale_is_not_bubble():
    rng = np.random.default_rng(3)
    faded = np.clip(rng.normal((160, 133, 166), 3, (512, 512, 3)), 0, 255).astype(np.uint8)  # faded stain
    faded[:, :40] = 244  # some glass
    thresholds = QCThresholds()
    features = tile_features(faded, _grid(faded), 64, glass_colour(faded), thresholds)
    assert np.median(features[:, PALE]) >= thresholds.bubble_pale_fraction  # every tile pale ...
    assert not (judge(features, thresholds).codes == BUBBLE).any()  # ... so none stands out as a bubble


def test_clean_real_tissue_holds_under_half_the_pale_fraction():
    rgb = np.array(Image.open(DATA / "cmu1_small_region_crop.jpg").convert("RGB"))  # loose, greyish stroma
    small = np.asarray(Image.fromarray(rgb).reduce(16))
    points = tile_grid(tissue_mask_from_rgb(small), 16, (rgb.shape[1], rgb.shape[0]), 64, 64)
    features = tile_features(rgb, points, 64, glass_colour(small), QCThresholds())
    assert len(points) >= 100
    assert features[:, PALE].max() < QCThresholds().bubble_pale_fraction / 2
