"""Quality control: which tiles show an artifact (pen ink, dirt, an air bubble, a fold, blur) instead of tissue.

FW-RD is an anomaly detector: whatever is not normal tissue scores high, artifacts included. These rules find
the artifacts so that the calls can leave them out (fwrd.runtime gates the calls; docs/qc.md has the
measurements behind every threshold). Two steps, so that a tile can be judged against its own slide:

1. `tile_features(window, offsets, tile, glass, thresholds)` (fwrd.slide.qc_features): per-tile numbers,
   computed by the decode workers on the pixels they have just decoded at the model's resolution (no second
   read of the slide): shares of ink, dark (near black), grey (bubble rims) and tissue pixels, and over the
   tissue pixels the mean optical density, its colour (the red and green channels' shares of it) and a
   sharpness ratio.
2. `judge(features, thresholds)`: the kind of each tile, in the priority order of KINDS: `pen`, `dirt`,
   `bubble` (share of ink / dark / grey pixels; or of pale pixels, far above the slide's median share of them:
   `pale_bubble`), then against the slide's own tissue (the median over its tiles with enough tissue and none of
   the first three kinds):
   - `fold`: at least `fold_thickness` times the optical density of the slide's tissue of the same colour
     (`same_colour_od`) and at least `fold_min_darkness` times the slide's median. Two layers of tissue add
     their optical densities, and by Beer-Lambert a thicker layer keeps its colour in optical density, so a
     fold is tissue as dark as two layers of tissue of its own colour. A denser tissue (tumour, epidermis)
     is dark because it is stained differently (more haematoxylin), so it is compared with tissue of its own
     colour, which is as dark as itself; a colour that fewer than MIN_COLOUR_TILES tiles share is judged
     against tissue of a merely similar colour (RARE_COLOUR_SPREAD x the radius), and only when clearly two
     layers thick (`fold_link_thickness`);
   - `blur`: sharpness below `blur_ratio` of the slide's, so a uniformly soft scan is not rejected whole.
   On the slide's grid, `on_grid` then grows every kind into the touching tiles that meet its edge threshold
   (`pen_edge_fraction`, `dirt_edge_fraction`, `bubble_edge_fraction` or `bubble_pale_edge_fraction`,
   `fold_edge_thickness`,
   `blur_edge_ratio`: hysteresis, as an edge detector does), drops fold regions of fewer than
   `fold_min_tiles` tiles (a lone dense tile is more likely dense tissue; a piece that unscored tiles link to
   a region of that size counts with it, and so do pieces linked to one another whose every tile is clearly
   two layers thick), and `fill_enclosed` marks tiles
   enclosed by bubble tiles (the washed-out inside of a bubble).

    feats = tile_features(window, offsets, tile=64, glass=(244, 243, 246))     # float32 [N, len(FEATURES)]
    verdict = judge(all_feats, QCThresholds())                                # codes: 0 ok, k: KINDS[k - 1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fwrd.config import QCThresholds
from fwrd.slide.qc_features import FEATURES

OK = "ok"
# What `judge` and `on_grid` do, by name: it is in the key of finished outputs (fwrd.runtime.settings), so a
# --resume after the rules change redoes the calls instead of keeping those of the old rules. Change it with them.
JUDGING_RULES = ("judge: colour-referenced fold, block blur, pale bubble vs slide; on_grid: all kinds grow, "
                 "fold_min_tiles with unscored bridge, bubbles filled; dirt edge by dark_reach; "
                 "fold pieces linked when clear, rare colour by 2x radius; blur edge by min block; v5")
KINDS = ("pen", "dirt", "bubble", "fold", "blur")  # priority when a tile shows several
MIN_REFERENCE_TILES = 16  # fewer tiles than this on a slide: no slide reference, fold and blur not judged
MIN_COLOUR_TILES = 8  # a tile's colour needs this many reference tiles near it for the fold rule to judge it
COLOUR_CELLS = 2  # colour cells per `fold_colour_radius`: tiles within that many cells count as near
RARE_COLOUR_SPREAD = 2  # a colour fewer than MIN_COLOUR_TILES share: the reference of this x the radius


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
    reference: dict[str, float | None]  # the slide's own tissue: median od and sharpness
    reference_tiles: int  # tiles the reference was taken over (0: too few, fold and blur not judged)
    # per kind, bool per tile: meets the kind's edge threshold (`on_grid` grows into it); and "fold_clear": at least
    # `fold_link_thickness` x its colour's optical density (pieces of a fold split by a lumen: `drop_small`)
    weak: dict[str, np.ndarray]


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
    pale, pale_edge = pale_bubble(column["pale"], (codes == 0) & (column["tissue"] >= 0.5), thresholds)
    codes[(codes == 0) & pale] = code_of("bubble")
    weak = {"pen": column["ink"] >= thresholds.pen_edge_fraction,
            "dirt": column["dark_reach"] >= thresholds.dirt_edge_fraction,
            "bubble": (column["grey"] >= thresholds.bubble_edge_fraction) | pale_edge,
            "fold": np.zeros(len(f), bool), "fold_clear": np.zeros(len(f), bool), "blur": np.zeros(len(f), bool)}
    stats = ("od", "sharpness")
    tissue_stats = [FEATURES.index(name) for name in ("od", "red_share", "green_share", "sharpness")]
    usable = (codes == 0) & np.all(np.isfinite(f[:, tissue_stats]), axis=1) & (column["tissue"] >= 0.5)
    count = int(usable.sum())
    if count < MIN_REFERENCE_TILES:
        return Verdict(codes, {name: None for name in stats}, 0, weak)
    ref = {name: float(np.median(column[name][usable])) for name in stats}
    colour = np.stack([column["red_share"], column["green_share"]], axis=1)
    same = same_colour_od(colour, column["od"], usable, thresholds.fold_colour_radius)
    # a rare colour: tissue of a merely similar colour (RARE_COLOUR_SPREAD x the radius) is the reference, so
    # only a tile clearly two layers thick (fold_link_thickness) is a fold
    rare = np.isnan(same)
    wider = same_colour_od(colour, column["od"], usable, RARE_COLOUR_SPREAD * thresholds.fold_colour_radius)
    with np.errstate(invalid="ignore"):
        dark_enough = column["od"] >= thresholds.fold_min_darkness * ref["od"]
        clear = np.where(rare, column["od"] >= thresholds.fold_link_thickness * wider,
                         column["od"] >= thresholds.fold_link_thickness * same) & dark_enough
        fold = ((column["od"] >= thresholds.fold_thickness * same) & dark_enough) | clear
        weak["fold"] = ((column["od"] >= thresholds.fold_edge_thickness * same) & dark_enough) | clear
        weak["fold_clear"] = clear
        blur = column["sharpness"] < thresholds.blur_ratio * ref["sharpness"]
        # a tile on a focus miss's border: weaker overall, or one of its blocks as blurred as a blur tile (the
        # lower median of a tile 80 % in the miss can still be a block with a sharp strip on two sides)
        weak["blur"] = ((column["sharpness"] < thresholds.blur_edge_ratio * ref["sharpness"])
                        | (column["sharpness_min"] < thresholds.blur_ratio * ref["sharpness"]))
    codes[(codes == 0) & fold] = code_of("fold")
    codes[(codes == 0) & blur] = code_of("blur")
    return Verdict(codes, ref, count, weak)


def pale_bubble(pale: np.ndarray, usable: np.ndarray, thresholds: QCThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per tile, whether its share of pale pixels (washed out, hardly stained) makes it `bubble` (bool [N]),
    and whether it is enough beside a `bubble` tile (bool [N]): at least `bubble_pale_fraction` (beside one:
    `bubble_pale_edge_fraction`) and `bubble_pale_excess` times the median over the slide's `usable` tiles (the
    median: a higher percentile rises with the bubbles themselves). Seen through a bubble the stain is washed
    out, and its rim, blended into dense dark tissue, is no longer grey but still far paler than stained
    tissue; tissue seldom is, and a slide whose tissue often is (faded, pale stroma) raises its own bar. Fewer
    than MIN_REFERENCE_TILES usable tiles: no reference, none judged."""
    if int(usable.sum()) < MIN_REFERENCE_TILES:
        return np.zeros(len(pale), bool), np.zeros(len(pale), bool)
    above = pale >= thresholds.bubble_pale_excess * float(np.median(pale[usable]))
    return above & (pale >= thresholds.bubble_pale_fraction), above & (pale >= thresholds.bubble_pale_edge_fraction)


def same_colour_od(colour: np.ndarray, od: np.ndarray, usable: np.ndarray, radius: float) -> np.ndarray:
    """Per tile, the median optical density of the `usable` tiles of about its colour (float64 [N]; NaN where
    fewer than MIN_COLOUR_TILES such tiles, or the tile has no colour). `colour` [N, 2] is a point in the
    plane of optical-density shares; near means in a cell (`radius` / COLOUR_CELLS wide) at most COLOUR_CELLS
    cells from the tile's own, a disk of about `radius`. Cells keep it linear in the tiles: the tiles of a
    cell share one reference."""
    out = np.full(len(od), np.nan)
    known = np.all(np.isfinite(colour), axis=1) & np.isfinite(od)
    if radius <= 0 or not (known & usable).any():
        return out
    cells = np.floor(colour[known] / (radius / COLOUR_CELLS)).astype(np.int64)
    span = int(cells.max()) + 2 * COLOUR_CELLS + 1  # shares lie in [0, 1]: a few hundred cells a side
    key = (cells[:, 0] + COLOUR_CELLS) * span + (cells[:, 1] + COLOUR_CELLS)
    ref = usable[known]
    order = np.argsort(key[ref], kind="stable")
    ref_keys, ref_od = key[ref][order], od[known][ref][order]
    groups, starts = np.unique(ref_keys, return_index=True)
    bounds = dict(zip(groups.tolist(), zip(starts.tolist(), np.append(starts[1:], len(ref_keys)).tolist())))
    steps = [dx * span + dy for dx in range(-COLOUR_CELLS, COLOUR_CELLS + 1)
             for dy in range(-COLOUR_CELLS, COLOUR_CELLS + 1) if dx * dx + dy * dy <= COLOUR_CELLS ** 2]
    wanted, inverse = np.unique(key, return_inverse=True)
    medians = np.full(len(wanted), np.nan)
    for i, k in enumerate(wanted.tolist()):
        parts = [ref_od[slice(*bounds[k + step])] for step in steps if k + step in bounds]
        values = np.concatenate(parts) if parts else np.zeros(0)
        if len(values) >= MIN_COLOUR_TILES:
            medians[i] = np.median(values)
    out[known] = medians[inverse.ravel()]
    return out


def on_grid(codes: np.ndarray, weak: dict[str, np.ndarray], scored: np.ndarray,
            thresholds: QCThresholds, cells_per_tile: float = 1.0) -> np.ndarray:
    """The slide's grid codes (uint8 [rows, cols], from `judge`) after the rules that look at neighbours: every
    kind grows from its tiles into the touching tiles that meet its edge threshold (`weak`, bool grids per kind:
    hysteresis, as an edge detector does), fold regions of fewer than `fold_min_tiles` tiles are dropped, and
    tiles enclosed by bubble tiles become bubble. Artifacts are extended regions that fade at their borders
    (a stroke's edge, the paler end of a fold, the rim of a focus miss, the specks around a dirty patch), so a
    tile beside one needs less evidence; a lone dense tile, by contrast, is more likely dense tissue than a
    fold. `cells_per_tile`: grid cells in a tile's area ((tile / stride)^2: overlapping tiles make more cells of
    the same region)."""
    out = codes
    for kind in KINDS:
        out = grow(out, weak[kind], scored, kind)
    out = drop_small(out, "fold", math.ceil(thresholds.fold_min_tiles * cells_per_tile - 1e-9), bridge=~scored,
                     clear=weak.get("fold_clear"))
    return fill_enclosed(out, scored)


def grow(codes: np.ndarray, weak: np.ndarray, scored: np.ndarray, kind: str) -> np.ndarray:
    """Grid codes (uint8 [rows, cols]) with the unflagged scored `weak` cells that connect to `kind` cells
    (8-neighbours, through such cells) set to `kind`."""
    strong = codes == code_of(kind)
    if not strong.any():
        return codes
    candidates = weak & scored & (codes == 0)
    grown = ndimage.binary_propagation(strong, structure=np.ones((3, 3), bool), mask=strong | candidates)
    out = codes.copy()
    out[grown & ~strong] = code_of(kind)
    return out


def drop_small(codes: np.ndarray, kind: str, minimum: int, bridge: np.ndarray | None = None,
               clear: np.ndarray | None = None) -> np.ndarray:
    """Grid codes (uint8 [rows, cols]) with the regions of `kind` cells (8-neighbours) of fewer than `minimum`
    cells set back to ok, unless `bridge` (bool grid: the unscored cells) links them to a region of at least
    `minimum` cells: cells of `bridge` touching a `kind` cell join what they touch, so a piece cut off from a
    region by a gap of up to two cells with no evidence either way (a lumen, a tear: too little tissue to
    score) is judged with that region. Small pieces linked only to one another stay small, unless every cell
    of them is `clear` (bool grid: clear evidence on its own) and they make `minimum` cells together."""
    cells = codes == code_of(kind)
    if minimum <= 1 or not cells.any():
        return codes
    square = np.ones((3, 3), bool)
    labels, _ = ndimage.label(cells, structure=square)
    big = cells & (np.bincount(labels.ravel())[labels] >= minimum)
    if bridge is not None and (big.any() or clear is not None):
        joined, count = ndimage.label(cells | (bridge & ndimage.binary_dilation(cells, structure=square)),
                                      structure=square)
        linked = np.zeros(count + 1, bool)
        linked[joined[big]] = True
        if clear is not None:
            size = np.bincount(joined[cells], minlength=count + 1)
            doubt = np.bincount(joined[cells & ~clear], minlength=count + 1)
            linked |= (size >= minimum) & (doubt == 0)
        big = cells & linked[joined]
    out = codes.copy()
    out[cells & ~big] = code_of(OK)
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
