"""Quality control: which tiles show an artifact (pen ink, dirt, an air bubble, a fold, blur) instead of tissue.

FW-RD is an anomaly detector: whatever is not normal tissue scores high, artifacts included. These rules find
the artifacts so that the calls can leave them out (fwrd.runtime gates the calls; docs/qc.md has the
measurements behind every threshold). Two steps, so that a tile can be judged against its own slide:

1. `tile_features(window, offsets, tile, glass)`: per-tile numbers, computed by the decode workers on the pixels
   they have just decoded at the model's resolution (no second read of the slide). The window is first
   white-balanced by the slide's glass colour, so a tinted scan reads like a neutral one. Per pixel:
   - tissue: optical density (sum over R, G, B, relative to the glass) >= TISSUE_OD;
   - ink: saturation >= `ink_saturation` and a hue outside `hne_hue` (haematoxylin's blue-purple through
     eosin's pink to red; green, cyan, blue, yellow are ink), kept where ink is solid (at least half of a
     9 x 9 neighbourhood): marker strokes are solid, while the few bluish pixels at nuclear edges of real
     H&E are scattered;
   - dark: near black (max channel <= 60) and unsaturated (< 0.35), solid over 3 x 3: debris, black ink
     (dark haematoxylin is saturated purple);
   - grey: unsaturated (< 0.12) and neither glass nor black (60 < max channel < 190), solid over 5 x 5: the
     refraction rim of an air bubble, a glass or coverslip edge (stained tissue is never grey);
   - sharpness: the energy of the Laplacian (its square) of the grey image.
   Per tile, all from summed-area tables (overlapping tiles cost one lookup each): the share of ink, dark,
   grey and tissue pixels, and over its tissue pixels the mean optical density, the mean saturation, the
   relative spread (std / mean) of optical density and the mean sharpness (FEATURES).
2. `judge(features, thresholds)`: the kind of each tile, in the priority order of KINDS: `pen`, `dirt`,
   `bubble` (share of ink / dark / grey pixels), then against the slide's own tissue (the median over its
   tiles with enough tissue and none of the first three kinds):
   - `fold`: darker by `fold_darkness`, more saturated by `fold_saturation`, with no more relative spread
     (x `fold_spread`): a second layer of the same tissue adds optical density everywhere, which darkens and
     saturates and narrows the spread, while a denser tissue (tumour) darkens by adding dark nuclei, which
     widens it;
   - `blur`: sharpness below `blur_ratio` of the slide's, so a uniformly soft scan is not rejected whole.
   `fill_enclosed` then marks tiles enclosed by bubble tiles (the washed-out inside of a bubble).

    feats = tile_features(window, offsets, tile=64, glass=(244, 243, 246))     # float32 [N, len(FEATURES)]
    verdict = judge(all_feats, QCThresholds())                                # codes: 0 ok, k: KINDS[k - 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fwrd.config import QCThresholds

OK = "ok"
KINDS = ("pen", "dirt", "bubble", "fold", "blur")  # priority when a tile shows several
FEATURES = ("ink", "dark", "grey", "tissue", "od", "saturation", "spread", "sharpness")
TISSUE_OD = 0.1  # optical density (sum over channels) above the glass from which a pixel is tissue
MIN_TISSUE = 0.25  # a tile needs this share of tissue pixels for its tissue statistics (else NaN)
MIN_REFERENCE_TILES = 16  # fewer tiles than this on a slide: no slide reference, fold and blur not judged
DARK_MAX, DARK_SATURATION = 60.0, 0.35
GREY_SATURATION, GREY_RANGE = 0.12, (60.0, 190.0)
SOLID = {"ink": (9, 0.5), "dark": (3, 0.7), "grey": (5, 0.6)}  # neighbourhood side, share that makes it solid


def code_of(kind: str) -> int:
    """The integer code of a kind (0 for ok)."""
    return 0 if kind == OK else KINDS.index(kind) + 1


def kind_names(codes: np.ndarray) -> np.ndarray:
    """Codes -> their names (`ok`, `pen`, ...)."""
    names = np.array((OK,) + KINDS)
    return names[np.asarray(codes, np.intp)]


def white_balance(rgb: np.ndarray, glass: Sequence[float]) -> np.ndarray:
    """float32 RGB scaled so that the glass colour becomes white (0..255): a tinted scan reads as neutral."""
    gain = 255.0 / np.maximum(np.asarray(glass, np.float32), 1.0)
    return np.minimum(rgb.astype(np.float32) * gain, 255.0)


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees [0, 360) of float RGB (0 where the pixel is grey)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    span = np.where(mx > mn, mx - mn, 1.0)
    hue = np.where(mx == r, ((g - b) / span) % 6.0, np.where(mx == g, (b - r) / span + 2.0, (r - g) / span + 4.0))
    return np.where(mx > mn, hue * 60.0, 0.0)


def outside_hue_range(hue: np.ndarray, hue_range: tuple[float, float]) -> np.ndarray:
    """True where `hue` lies outside [from, to], read through 0 when from > to (235 -> 360 -> 30)."""
    lo, hi = hue_range
    inside = (hue >= lo) | (hue <= hi) if lo > hi else (hue >= lo) & (hue <= hi)
    return ~inside


def _solid(mask: np.ndarray, side: int, share: float) -> np.ndarray:
    """Pixels of `mask` whose side x side neighbourhood is at least `share` mask."""
    if not mask.any():
        return mask
    return mask & (ndimage.uniform_filter(mask.astype(np.float32), size=side, mode="nearest") >= share - 1e-6)


@dataclass
class PixelMaps:
    """Per-pixel maps of one window (see the module docstring)."""

    ink: np.ndarray
    dark: np.ndarray
    grey: np.ndarray
    tissue: np.ndarray
    od: np.ndarray  # optical density, summed over channels, relative to the glass
    saturation: np.ndarray
    sharpness: np.ndarray  # squared Laplacian


def pixel_maps(window: np.ndarray, glass: Sequence[float], thresholds: QCThresholds) -> PixelMaps:
    """The per-pixel maps of a uint8 RGB window [h, w, 3]."""
    rgb = white_balance(window[..., :3], glass)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]  # channel by channel: reductions over a last axis of 3 are slow
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    saturation = (mx - mn) / np.maximum(mx, 1.0)
    od = 3.0 * np.log10(255.0) - np.log10(np.maximum(r, 1.0) * np.maximum(g, 1.0) * np.maximum(b, 1.0))
    coloured = saturation >= thresholds.ink_saturation
    ink = np.zeros(mx.shape, bool)
    if coloured.any():
        ink[coloured] = outside_hue_range(hue_degrees(rgb[coloured]), thresholds.hne_hue)
    dark = (mx <= DARK_MAX) & (saturation < DARK_SATURATION)
    grey = (saturation < GREY_SATURATION) & (mx > GREY_RANGE[0]) & (mx < GREY_RANGE[1])
    grey_level = (r + g + b) / 3.0
    laplace = ndimage.laplace(grey_level, mode="nearest")
    sharpness = laplace * laplace
    return PixelMaps(
        ink=_solid(ink, *SOLID["ink"]), dark=_solid(dark, *SOLID["dark"]), grey=_solid(grey, *SOLID["grey"]),
        tissue=od >= TISSUE_OD, od=od, saturation=saturation, sharpness=sharpness,
    )


def _box_sums(values: np.ndarray, offsets: np.ndarray, tile: int) -> np.ndarray:
    """Sum of `values` over each tile [y, y + tile) x [x, x + tile) at `offsets` (x, y), by a summed-area table
    (integers for masks, float64 otherwise)."""
    dtype = np.int32 if values.dtype == bool else np.float64
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype)
    np.cumsum(np.cumsum(values, axis=0, dtype=dtype), axis=1, out=table[1:, 1:])
    x, y = offsets[:, 0], offsets[:, 1]
    return table[y + tile, x + tile] - table[y, x + tile] - table[y + tile, x] + table[y, x]


def tile_features(
    window: np.ndarray, offsets: np.ndarray, tile: int, glass: Sequence[float], thresholds: QCThresholds,
) -> np.ndarray:
    """float32 [N, len(FEATURES)]: the QC numbers of the tiles at `offsets` (x, y, in window pixels).

    Every number is a sum over the tile read off a summed-area table, so overlapping tiles cost one table
    lookup each: shares of ink, dark, grey and tissue pixels; over the tissue pixels the mean optical density,
    mean saturation, relative spread (std / mean) of optical density and mean Laplacian energy (sharpness).
    """
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    out = np.full((len(offsets), len(FEATURES)), np.nan, np.float32)
    if len(offsets) == 0:
        return out
    x0, y0 = offsets.min(axis=0)  # only the part of the window the tiles cover
    x1, y1 = offsets.max(axis=0) + tile
    window = window[y0:y1, x0:x1]
    offsets = offsets - (x0, y0)
    maps = pixel_maps(window, glass, thresholds)
    area = float(tile * tile)
    for column, mask in enumerate((maps.ink, maps.dark, maps.grey, maps.tissue)):
        out[:, column] = _box_sums(mask, offsets, tile) / area
    tissue = maps.tissue.astype(np.float64)
    count = _box_sums(tissue, offsets, tile)
    od = maps.od * tissue
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_od = _box_sums(od, offsets, tile) / count
        var_od = np.maximum(_box_sums(od * maps.od, offsets, tile) / count - mean_od ** 2, 0.0)
        stats = (mean_od, _box_sums(maps.saturation * tissue, offsets, tile) / count,
                 np.sqrt(var_od) / mean_od, _box_sums(maps.sharpness * tissue, offsets, tile) / count)
    enough = out[:, 3] >= MIN_TISSUE
    for column, values in enumerate(stats, start=4):
        out[enough, column] = values[enough]
    return out


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
