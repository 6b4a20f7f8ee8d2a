"""Quality control: which tiles show an artifact (pen ink, dirt, an air bubble, a fold, blur) instead of tissue.

FW-RD is an anomaly detector: whatever is not normal tissue scores high, artifacts included. These rules find
the artifacts so that the calls can leave them out (fwrd.runtime gates the calls; docs/qc.md has the
measurements behind every threshold). Two steps, so that a tile can be judged against its own slide:

1. `tile_features(window, offsets, tile, glass, thresholds)` (fwrd.slide.qc_features): per-tile numbers,
   computed by the decode workers on the pixels they have just decoded at the model's resolution (no second
   read of the slide): shares of ink, dark (near black), grey (bubble rims) and tissue pixels, and over the
   tissue pixels the mean optical density, mean saturation, relative spread of optical density and a
   sharpness ratio.
2. `judge(features, thresholds)`: the kind of each tile, in the priority order of KINDS: `pen`, `dirt`,
   `bubble` (share of ink / dark / grey pixels), then against the slide's own tissue (the median over its
   tiles with enough tissue and none of the first three kinds):
   - `fold`: darker by `fold_darkness`, more saturated by `fold_saturation`, with no more relative spread
     (x `fold_spread`): a second layer of the same tissue adds optical density everywhere, which darkens and
     saturates and narrows the spread, while a denser tissue (tumour) darkens by adding dark nuclei, which
     widens it;
   - `blur`: sharpness below `blur_ratio` of the slide's, so a uniformly soft scan is not rejected whole.
   On the slide's grid, `grow_edges` then adds the tiles along a pen stroke that hold less ink than
   `pen_fraction` but at least `pen_edge_fraction` and touch a pen tile (hysteresis, as an edge detector
   does), and `fill_enclosed` marks tiles enclosed by bubble tiles (the washed-out inside of a bubble).

    feats = tile_features(window, offsets, tile=64, glass=(244, 243, 246))     # float32 [N, len(FEATURES)]
    verdict = judge(all_feats, QCThresholds())                                # codes: 0 ok, k: KINDS[k - 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fwrd.config import QCThresholds
from fwrd.slide.qc_features import FEATURES

OK = "ok"
KINDS = ("pen", "dirt", "bubble", "fold", "blur")  # priority when a tile shows several
MIN_REFERENCE_TILES = 16  # fewer tiles than this on a slide: no slide reference, fold and blur not judged


def code_of(kind: str) -> int:
    """The integer code of a kind (0 for ok)."""
    return 0 if kind == OK else KINDS.index(kind) + 1


def kind_names(codes: np.ndarray) -> np.ndarray:
    """Codes -> their names (`ok`, `pen`, ...)."""
    names = np.array((OK,) + KINDS)
    return names[np.asarray(codes, np.intp)]


@dataclass
class Verdict:
    """What QC decided for a slide's tiles."""

    codes: np.ndarray  # uint8 per tile: 0 ok, k: KINDS[k - 1]
    reference: dict[str, float | None]  # the slide's own tissue: median od, saturation, spread, sharpness
    reference_tiles: int  # tiles the reference was taken over (0: too few, fold and blur not judged)


def judge(features: np.ndarray, thresholds: QCThresholds) -> Verdict:
    """The kind of each tile (codes) from its features [N, len(FEATURES)] (module docstring, step 2)."""
    f = np.asarray(features, np.float64).reshape(-1, len(FEATURES))
    column = {name: f[:, i] for i, name in enumerate(FEATURES)}
    codes = np.zeros(len(f), np.uint8)
    rules = (("pen", column["ink"] >= thresholds.pen_fraction),
             ("dirt", column["dark"] >= thresholds.dirt_fraction),
             ("bubble", column["grey"] >= thresholds.bubble_fraction))
    for kind, hit in rules:
        codes[(codes == 0) & hit] = code_of(kind)
    stats = ("od", "saturation", "spread", "sharpness")
    usable = (codes == 0) & np.all(np.isfinite(f[:, 4:]), axis=1) & (column["tissue"] >= 0.5)
    count = int(usable.sum())
    if count < MIN_REFERENCE_TILES:
        return Verdict(codes, {name: None for name in stats}, 0)
    ref = {name: float(np.median(column[name][usable])) for name in stats}
    with np.errstate(invalid="ignore"):
        fold = ((column["od"] >= thresholds.fold_darkness * ref["od"])
                & (column["saturation"] >= ref["saturation"] + thresholds.fold_saturation)
                & (column["spread"] <= thresholds.fold_spread * ref["spread"]))
        blur = column["sharpness"] < thresholds.blur_ratio * ref["sharpness"]
    codes[(codes == 0) & fold] = code_of("fold")
    codes[(codes == 0) & blur] = code_of("blur")
    return Verdict(codes, ref, count)


def grow_edges(codes: np.ndarray, share: np.ndarray, scored: np.ndarray, minimum: float,
               kind: str = "pen") -> np.ndarray:
    """Grid codes (uint8 [rows, cols]) with the unflagged scored cells whose `share` (of ink) is >= `minimum`
    and that connect to `kind` cells (8-neighbours, through such cells) set to `kind`."""
    strong = codes == code_of(kind)
    if not strong.any():
        return codes
    weak = (share >= minimum) & scored & (codes == 0)
    grown = ndimage.binary_propagation(strong, structure=np.ones((3, 3), bool), mask=strong | weak)
    out = codes.copy()
    out[grown & ~strong] = code_of(kind)
    return out


def fill_enclosed(codes: np.ndarray, scored: np.ndarray, kind: str = "bubble") -> np.ndarray:
    """Grid codes (uint8 [rows, cols]) with the scored cells that `kind` cells enclose set to `kind`: the
    inside of a bubble is washed out, while its rim is what the grey rule sees."""
    ring = codes == code_of(kind)
    if not ring.any():
        return codes
    inside = ndimage.binary_fill_holes(ring) & ~ring & scored & (codes == 0)
    out = codes.copy()
    out[inside] = code_of(kind)
    return out
