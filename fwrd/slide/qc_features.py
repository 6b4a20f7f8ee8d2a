"""QC's per-tile numbers, computed where the pixels already are: on each work unit's decoded window.

The decode workers call `tile_features(window, offsets, tile, glass, thresholds)` on the window they have just
read, at the model's resolution (fwrd.slide.resample.model_view), so QC never reads the slide again. Its cost
is what keeps it affordable next to decoding, so every step is a table look-up or a pass over the window,
never a loop over tiles:

- Colour, by look-up. The window's pixels index tables built once per slide (`colour_tables`, cached by the
  glass colour): white balance by the glass (a tinted scan reads like a neutral one), optical density per
  channel (exact, one 256-entry table each: no logarithm per pixel), and, on the colour quantised to 6 bits
  per channel, the class bits:
  - ink: saturation >= `ink_saturation` and a hue outside `hne_hue` (haematoxylin's blue-purple through
    eosin's pink to red; green, cyan, blue, yellow are ink);
  - dark: near black (max channel <= 60) and unsaturated (< 0.35): debris, black ink (dark haematoxylin is
    saturated purple);
  - grey: unsaturated (< 0.12) and neither glass nor black (60 < max channel < 190): a bubble's refraction
    rim, a glass or coverslip edge (stained tissue is never grey).
  - pale: less saturated than nearly all stained tissue (< PALE_SATURATION, 0.2), in the same brightness range
    (grey is pale too): what is seen through an air bubble (the stain washed out) and a bubble's rim blended
    into dense dark tissue, which JPEG leaves too coloured for grey. Loose, faint stroma holds
    some pale pixels too, so fwrd.slide.qc judges them against the slide's own share.
  A pixel is tissue when its optical density (summed over R, G, B, relative to the glass) is >= TISSUE_OD.
- Solid: ink counts where it fills at least half of a 9 x 9 neighbourhood (marker strokes are solid; the
  bluish pixels at the edges of real nuclei are scattered), dark where it fills 30 % of 3 x 3 (specks of a
  few pixels count), grey and pale where they fill a third of 3 x 3 (a bubble's rim is a line 1-3 pixels wide).
  Filters run only on windows that hold such pixels at all.
- Sharpness relative to contrast: the mean energy of the Laplacian of the grey level (the finest detail)
  over the local contrast (the grey level's squared difference from its mean over LOCAL pixels: contrast at
  the scale of cells), in blocks of about BLOCK pixels; a tile's sharpness is the lower median over its
  blocks that hold tissue. A focus miss removes the finest detail but keeps most of the contrast, so the
  ratio falls whatever the tissue holds; absolute Laplacian energy would instead call sparse stroma (few,
  sharp nuclei) blurred next to dense tumour. Local contrast, not the variance: the step between two
  regions (tumour beside stroma) is contrast that no focus miss removes, and it made border tiles read as
  blurred. Blocks, not the whole tile: a tile half out of focus would read as sharp, and coarse structure
  would dominate a whole tile's contrast (benchmarks/results/qc-artifacts-cpu-amd-epyc-2c.md: blur on
  real H&E 76 % -> 92 % flagged).
- Sums per tile: every map is first summed over cells of `gcd(tile, block, offsets)` pixels (one reshape),
  then each tile and block is read off a summed-area table of the cells (overlapping tiles cost one look-up
  each). Tiles off a common lattice (never the case for fwrd-run's grids) take a per-pixel table instead.
- Colour in optical density: the shares of the red and of the green channel in the tissue's optical density.
  By Beer-Lambert a thicker layer of the same tissue (a fold: two layers) multiplies every channel's optical
  density alike, so these shares say what the tissue is stained like whatever its thickness, and fwrd.slide.qc
  compares a tile's optical density with that of the slide's tissue of the same colour.

Per tile (FEATURES): shares of ink, dark, grey and tissue pixels; over its tissue pixels the mean optical
density (sum over R, G, B) and the red and green shares of it; the sharpness and its lowest block's
(`sharpness_min`: the border of a focus miss, what the blur edge rule also reads); the share of pale pixels;
and the share of dark pixels and speck rims (`dark_reach`: within DARK_REACH pixels of a dark core of
DARK_CORE pixels, what the dirt edge rule counts, since the few pixels of a speck beyond a tile's edge
share their chroma with the tissue in JPEG).

    feats = tile_features(window, offsets, tile=64, glass=(244, 243, 246), thresholds=QCThresholds())
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fwrd.config import QCThresholds

FEATURES = ("ink", "dark", "grey", "tissue", "od", "red_share", "green_share", "sharpness", "pale",
            "dark_reach", "sharpness_min")
# the rules behind the numbers (tables, solidity, sharpness): part of the resume key of a journal of features
FEATURE_RULES = ("lut6;solid ink9/.5 dark3/.3 grey3/.33 pale3/.33;lap/local31 lower median of 32 px blocks;"
                 "od shares r g;dark reach 2 of 5 px cores;min block sharpness;v6")
TISSUE_OD = 0.1  # optical density (sum over channels) above the glass from which a pixel is tissue
MIN_TISSUE = 0.25  # a tile needs this share of tissue pixels for its tissue statistics (else NaN)
DARK_MAX, DARK_SATURATION = 60.0, 0.35
GREY_SATURATION, GREY_RANGE = 0.12, (60.0, 190.0)
PALE_SATURATION = 0.2  # pale: less saturated than nearly all stained tissue, in GREY_RANGE (module docstring)
SOLID = {"ink": (9, 0.5), "dark": (3, 0.3), "grey": (3, 0.33), "pale": (3, 0.33)}  # side, share that makes it solid
DARK_CORE, DARK_REACH = 5, 2  # a speck's core: >= this many dark pixels (8-connected); its rim: this many px around
INK, DARK, GREY, PALE = 1, 2, 4, 8  # class bits
BITS = 6  # bits per channel of the colour tables
MIN_CELL = 4  # cells smaller than this: the per-pixel path
BLOCK = 32  # about this side (pixels) for the blocks whose sharpness makes a tile's
LOCAL = 31  # side (pixels) of the mean that local contrast is taken from


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees [0, 360) of float RGB (0 where the pixel is grey)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    span = np.where(mx > mn, mx - mn, 1.0)
    hue = np.where(mx == r, ((g - b) / span) % 6.0, np.where(mx == g, (b - r) / span + 2.0, (r - g) / span + 4.0))
    return np.where(mx > mn, hue * 60.0, 0.0)


def outside_hue_range(hue: np.ndarray, hue_range: tuple[float, float]) -> np.ndarray:
    """True where `hue` lies outside [from, to], read through 0 when from > to (245 -> 360 -> 30)."""
    lo, hi = hue_range
    inside = (hue >= lo) | (hue <= hi) if lo > hi else (hue >= lo) & (hue <= hi)
    return ~inside


@dataclass(frozen=True)
class ColourTables:
    """Per-slide look-up tables (see the module docstring)."""

    od: np.ndarray  # float32 [3, 256]: optical density of each channel value, relative to the glass
    classes: np.ndarray  # uint8 [2 ** (3 BITS)]: INK | DARK | GREY | PALE bits of each quantised colour


@functools.lru_cache(maxsize=16)
def colour_tables(glass: tuple[float, float, float], ink_saturation: float,
                  hne_hue: tuple[float, float]) -> ColourTables:
    """The tables for a slide whose glass has colour `glass` (built once: 2^18 colours, a few ms)."""
    gain = 255.0 / np.maximum(np.asarray(glass, np.float64), 1.0)
    values = np.arange(256, dtype=np.float64)
    balanced = np.minimum(values[None, :] * gain[:, None], 255.0)
    od = (math.log10(255.0) - np.log10(np.maximum(balanced, 1.0))).astype(np.float32)
    step = 1 << (8 - BITS)
    centre = np.arange(1 << BITS, dtype=np.float64) * step + (step - 1) / 2.0
    r, g, b = np.meshgrid(*(np.minimum(centre * gain[c], 255.0) for c in range(3)), indexing="ij")
    rgb = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)
    mx, mn = rgb.max(axis=1), rgb.min(axis=1)
    saturation = (mx - mn) / np.maximum(mx, 1.0)
    ink = (saturation >= ink_saturation) & outside_hue_range(hue_degrees(rgb), hne_hue)
    dark = (mx <= DARK_MAX) & (saturation < DARK_SATURATION)
    between = (mx > GREY_RANGE[0]) & (mx < GREY_RANGE[1])
    grey = (saturation < GREY_SATURATION) & between
    pale = (saturation < PALE_SATURATION) & between
    classes = (ink * INK | dark * DARK | grey * GREY | pale * PALE).astype(np.uint8)
    return ColourTables(od, classes)


def _solid(mask: np.ndarray, side: int, share: float) -> np.ndarray:
    """Pixels of `mask` whose side x side neighbourhood is at least `share` mask."""
    if not mask.any():
        return mask
    return mask & (ndimage.uniform_filter(mask.astype(np.float32), size=side, mode="nearest") >= share - 1e-6)


def _reach(dark: np.ndarray) -> np.ndarray:
    """`dark` and the pixels within DARK_REACH of a dark core (a component of at least DARK_CORE pixels): a
    speck's rim. JPEG shares chroma between neighbouring pixels, so the few pixels of a speck that spill over a
    tile's edge take the tissue's hue and fail the unsaturated test, though the speck's core beside them passed."""
    if not dark.any():
        return dark
    labels, _ = ndimage.label(dark, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    core = sizes[labels] >= DARK_CORE
    if not core.any():
        return dark
    return dark | ndimage.binary_dilation(core, structure=np.ones((2 * DARK_REACH + 1,) * 2, bool))


def _laplace_energy(grey: np.ndarray) -> np.ndarray:
    """Squared 5-point Laplacian of `grey` (edges repeated)."""
    p = np.pad(grey, 1, mode="edge")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * grey
    return lap * lap


def _local_contrast(grey: np.ndarray) -> np.ndarray:
    """Squared difference of `grey` from its mean over LOCAL x LOCAL pixels: contrast at the scale of cells,
    without the steps between regions of tissue."""
    return (grey - ndimage.uniform_filter(grey, size=LOCAL, mode="nearest")) ** 2


def pixel_maps(window: np.ndarray, tables: ColourTables) -> dict[str, np.ndarray]:
    """The per-pixel maps of a uint8 RGB window [h, w, 3] whose sums make the features."""
    r, g, b = window[..., 0], window[..., 1], window[..., 2]
    shift = 8 - BITS
    index = ((r >> shift).astype(np.int32) << (2 * BITS)) | ((g >> shift).astype(np.int32) << BITS) | (b >> shift)
    classes = tables.classes[index]
    od_red, od_green = tables.od[0][r], tables.od[1][g]
    od = od_red + od_green + tables.od[2][b]
    tissue = od >= TISSUE_OD
    grey = r.astype(np.float32) + g + b
    dark = _solid(classes & DARK > 0, *SOLID["dark"])
    maps = {
        "ink": _solid(classes & INK > 0, *SOLID["ink"]),
        "dark": dark,
        "grey": _solid(classes & GREY > 0, *SOLID["grey"]),
        "pale": _solid(classes & PALE > 0, *SOLID["pale"]),
        "tissue": tissue,
    }
    t = tissue.astype(np.float32)
    maps.update({
        "od": od * t, "od_red": od_red * t, "od_green": od_green * t,
        "fine": _laplace_energy(grey) * t, "local": _local_contrast(grey) * t, "dark_reach": _reach(dark),
    })
    return maps


def _cell_side(offsets: np.ndarray, tile: int) -> int:
    """The largest cell side that divides the tile and every offset's distance from the first."""
    rel = (offsets - offsets.min(axis=0)).ravel()
    return int(np.gcd.reduce(np.concatenate([rel, [tile]]).astype(np.int64)))


def _summed_table(values: np.ndarray, cell: int) -> np.ndarray:
    """Summed-area table of `values` summed over cells of `cell` pixels (float64 [h / cell + 1, w / cell + 1])."""
    h, w = values.shape
    cells = values.reshape(h // cell, cell, w // cell, cell).sum(axis=(1, 3), dtype=np.float64)
    table = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1), np.float64)
    np.cumsum(np.cumsum(cells, axis=0), axis=1, out=table[1:, 1:])
    return table


def _box_sums(table: np.ndarray, offsets: np.ndarray, side: int, cell: int) -> np.ndarray:
    """Sums over the boxes [y, y + side) x [x, x + side) at `offsets` (x, y), read off a `_summed_table`."""
    x, y, k = offsets[:, 0] // cell, offsets[:, 1] // cell, side // cell
    return table[y + k, x + k] - table[y, x + k] - table[y + k, x] + table[y, x]


def _blocks(offsets: np.ndarray, tile: int) -> tuple[np.ndarray, int, int]:
    """The top-lefts of each tile's sharpness blocks ([N * k * k, 2], tile by tile), their side and k."""
    k = max(1, tile // BLOCK)
    side = tile // k
    steps = np.arange(k, dtype=np.int64) * side
    grid = np.stack(np.meshgrid(steps, steps, indexing="xy"), axis=-1).reshape(-1, 2)
    return (offsets[:, None, :] + grid[None, :, :]).reshape(-1, 2), side, k


def _sharpness(tables: dict[str, np.ndarray], blocks: np.ndarray, side: int, k: int,
               cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tile, the lower median and the minimum over its blocks with at least MIN_TISSUE tissue of their
    Laplacian energy over local contrast (NaN without such a block): a tile half out of focus reads as out of
    focus by the lower median; the minimum is what a tile on a focus miss's border shows (`sharpness_min`)."""
    s = {name: _box_sums(tables[name], blocks, side, cell).reshape(-1, k * k) for name in ("tissue", "fine", "local")}
    count = s["tissue"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = s["fine"] / np.maximum(s["local"], count)  # contrast below 1 grey level: no contrast to judge
    ratio = np.where(count >= MIN_TISSUE * side * side, ratio, np.inf)
    ranked = np.sort(ratio, axis=1)  # blocks without tissue last
    usable = np.isfinite(ranked).sum(axis=1)
    pick = np.maximum((usable - 1) // 2, 0)
    lower_median = ranked[np.arange(len(ranked)), pick]
    return np.where(usable > 0, lower_median, np.nan), np.where(usable > 0, ranked[:, 0], np.nan)


def tile_features(window: np.ndarray, offsets: np.ndarray, tile: int, glass: Sequence[float],
                  thresholds: QCThresholds) -> np.ndarray:
    """float32 [N, len(FEATURES)]: the QC numbers of the tiles at `offsets` (x, y, window pixels; module
    docstring)."""
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    out = np.full((len(offsets), len(FEATURES)), np.nan, np.float32)
    if len(offsets) == 0:
        return out
    blocks, side, k = _blocks(offsets, tile)
    cell = math.gcd(_cell_side(offsets, tile), side)
    if cell < MIN_CELL:
        cell = 1
    x0, y0 = offsets.min(axis=0)  # only the part of the window the tiles cover
    x1, y1 = offsets.max(axis=0) + tile
    window = np.ascontiguousarray(window[y0:y1, x0:x1, :3])
    offsets, blocks = offsets - (x0, y0), blocks - (x0, y0)
    colours = colour_tables(tuple(float(v) for v in glass), float(thresholds.ink_saturation),
                            tuple(float(v) for v in thresholds.hne_hue))
    maps = pixel_maps(window, colours)
    tables: dict[str, np.ndarray] = {}
    for name, m in maps.items():  # a map that is another's array (no speck core: dark_reach is dark) is summed once
        twin = next((k for k in tables if maps[k] is m), None)
        tables[name] = tables[twin] if twin is not None else _summed_table(m, cell)
    sums = {name: _box_sums(table, offsets, tile, cell) for name, table in tables.items()
            if name not in ("fine", "local")}
    area = float(tile * tile)
    for column, name in enumerate(("ink", "dark", "grey", "tissue")):
        out[:, column] = sums[name] / area
    with np.errstate(invalid="ignore", divide="ignore"):
        sharpness, sharpness_min = _sharpness(tables, blocks, side, k, cell)
        stats = (sums["od"] / sums["tissue"], sums["od_red"] / sums["od"], sums["od_green"] / sums["od"], sharpness)
    enough = out[:, 3] >= MIN_TISSUE
    for column, values in enumerate(stats, start=4):
        out[enough, column] = values[enough]
    out[enough, FEATURES.index("sharpness_min")] = sharpness_min[enough]
    out[:, FEATURES.index("dark_reach")] = sums["dark_reach"] / area
    out[:, FEATURES.index("pale")] = sums["pale"] / area
    return out
