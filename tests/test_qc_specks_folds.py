"""QC's third round on dirt and folds: the rim of a speck spilling over a tile's edge, whose few pixels JPEG's
shared chroma gives the tissue's hue, makes a tile touching dirt dirt too (`dark_reach`); and the pieces of a
fold that a lumen splits count together when every tile of them is clearly two layers thick
(`fold_link_thickness`), while dense clean tissue split the same way stays small."""

from __future__ import annotations

import numpy as np

from fwrd.config import QCThresholds
from fwrd.slide.qc import KINDS, code_of, drop_small, judge, on_grid
from fwrd.slide.qc_features import FEATURES, tile_features

FOLD, DIRT = code_of("fold"), code_of("dirt")
GLASS = (255.0, 255.0, 255.0)


def _two_tiles() -> np.ndarray:
    """Two 64 px tiles of pink tissue side by side."""
    return np.tile(np.array([205, 130, 175], np.uint8), (64, 128, 1))


def _grid_codes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    thresholds = QCThresholds()
    features = tile_features(rgb, np.array([[0, 0], [64, 0]]), 64, GLASS, thresholds)
    verdict = judge(features, thresholds)
    weak = {kind: hits.reshape(1, 2) for kind, hits in verdict.weak.items()}
    return features, on_grid(verdict.codes.reshape(1, 2), weak, np.ones((1, 2), bool), thresholds)


def test_a_specks_rim_over_the_tile_edge_makes_the_touching_tile_dirt():
    rgb = _two_tiles()
    rgb[20:32, 56:64] = 35  # the speck's core, grey-black, in the left tile
    rgb[20:32, 64:66] = (44, 20, 42)  # its edge in the right tile, tinted by the chroma it shares with tissue
    features, codes = _grid_codes(rgb)
    dark, reach = FEATURES.index("dark"), FEATURES.index("dark_reach")
    assert features[1, dark] * 64 * 64 < 3  # the right tile holds too few dark pixels for the edge rule
    assert features[1, reach] * 64 * 64 >= 20  # ... but the speck's rim: 2 px around its core
    assert (codes == DIRT).all()


def test_small_dark_blobs_reach_no_further_than_themselves():
    rgb = _two_tiles()
    rgb[30:32, 62:64] = 35  # 4 dark pixels (a speck's core needs 5) at the left tile's edge
    features, codes = _grid_codes(rgb)
    dark, reach = FEATURES.index("dark"), FEATURES.index("dark_reach")
    assert np.array_equal(features[:, reach], features[:, dark])
    assert not (codes == DIRT).any()


def _split_fold() -> tuple[np.ndarray, np.ndarray]:
    """A pair and a lone fold tile, a lumen (unscored tiles) between them: three tiles, no region of three."""
    codes = np.zeros((5, 7), np.uint8)
    scored = np.ones((5, 7), bool)
    codes[1, 1] = codes[2, 1] = FOLD
    scored[1:3, 2] = False
    codes[1, 3] = FOLD
    return codes, scored


def test_fold_pieces_split_by_a_lumen_count_together_when_every_tile_is_clearly_doubled():
    codes, scored = _split_fold()
    clear = codes == FOLD
    assert (drop_small(codes, "fold", 3, bridge=~scored, clear=clear) == codes).all()
    weak = {kind: np.zeros(codes.shape, bool) for kind in KINDS} | {"fold_clear": clear}
    assert (on_grid(codes, weak, scored, QCThresholds()) == codes).all()
    doubt = clear.copy()
    doubt[2, 1] = False  # one tile only a little darker than its colour (dense tissue, a fold's pale edge)
    assert not (drop_small(codes, "fold", 3, bridge=~scored, clear=doubt) == FOLD).any()
    across_tissue = np.ones_like(scored)  # scored tissue between them that the rule found no fold in: no link
    assert not (drop_small(codes, "fold", 3, bridge=~across_tissue, clear=clear) == FOLD).any()


def _tissue_features(seed: int, n: int = 40) -> tuple[np.ndarray, dict[str, int]]:
    """Features of `n` sharp tiles of one colour and about the same optical density (the slide's tissue)."""
    features = np.zeros((n, len(FEATURES)), np.float32)
    column = {name: i for i, name in enumerate(FEATURES)}
    features[:, column["tissue"]] = 1.0
    features[:, column["od"]] = np.random.default_rng(seed).uniform(0.95, 1.05, n)
    features[:, column["red_share"]], features[:, column["green_share"]] = 0.25, 0.47
    features[:, column["sharpness"]] = 1.0
    return features, column


def test_judge_marks_clear_fold_tiles_against_their_colour():
    features, column = _tissue_features(0)
    features[0, column["od"]], features[1, column["od"]] = 1.7, 1.4  # doubled; darker, less than doubled
    verdict = judge(features, QCThresholds())
    assert verdict.codes[0] == verdict.codes[1] == FOLD
    assert verdict.weak["fold_clear"][0] and not verdict.weak["fold_clear"][1]


def test_a_tile_of_a_rare_colour_is_a_fold_only_when_clearly_doubled():
    features, column = _tissue_features(1)
    features[:2, column["red_share"]] = 0.272  # a colour no reference tile shares within fold_colour_radius
    features[0, column["od"]], features[1, column["od"]] = 1.75, 1.4
    verdict = judge(features, QCThresholds())
    assert verdict.codes[0] == FOLD and verdict.weak["fold_clear"][0]
    assert verdict.codes[1] == 0 and not verdict.weak["fold"][1]  # 1.4 x: enough for a common colour, not here
