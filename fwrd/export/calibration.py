"""Tiles for checking and calibrating an export: labelled tissue from a synthetic slide, tissue from
the user's own slides (`--calibration`), and noise.

The synthetic slide gives a labelled set (tumor centre inside a tumor polygon vs footprint wholly
outside) so the gates can measure AUROC change, not just score deltas.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fwrd.config import FWRDConfig
from fwrd.errors import FwrdError
from fwrd.slide.annotations import contains, load_asap_xml
from fwrd.slide.discover import find_slides
from fwrd.slide.grid import tile_grid
from fwrd.slide.reader import Slide, open_slide
from fwrd.slide.resample import choose_reading, read_tile
from fwrd.slide.synthetic import make_synthetic_slide
from fwrd.slide.tissue import tissue_mask


def labelled_synthetic_tiles(config: FWRDConfig, per_class: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(tiles uint8 [N, T, T, 3], is_tumor bool [N]) read at the model's resolution (or level) from a fresh
    synthetic slide (0.243 um/px: a model at a coarser resolution reads it shrunk, as it reads a 40x slide)."""
    scale = config.mpp / 0.243 if config.mpp else 2.0**config.level
    tile0 = int(math.ceil(config.tile_size * scale))
    side = max(2048, 16 * tile0)
    with tempfile.TemporaryDirectory() as work:
        synthetic = make_synthetic_slide(Path(work) / "verify.svs", width=side, height=side, tumor=True, seed=seed)
        annotations = load_asap_xml(synthetic.xml)
        with open_slide(synthetic.path) as slide:
            reading = choose_reading(slide, config.tile_size, config.mpp, config.level)
            tile0 = reading.level0(reading.source)
            grid = _tissue_grid(slide, tile0)
            centres = grid + tile0 / 2.0
            tumor = contains(annotations, centres)
            corners = [grid + np.array(offset) for offset in ((0, 0), (tile0 - 1, 0), (0, tile0 - 1), (tile0 - 1, tile0 - 1))]
            outside = ~tumor & ~np.any([contains(annotations, c) for c in corners], axis=0)
            rng = np.random.default_rng(seed)
            picks = [_pick(rng, np.flatnonzero(tumor), per_class), _pick(rng, np.flatnonzero(outside), per_class)]
            if min(len(p) for p in picks) == 0:
                raise FwrdError("the synthetic verification slide gave no tumor or no normal tiles")
            chosen = np.concatenate(picks)
            tiles = np.stack([read_tile(slide, reading, *grid[i]) for i in chosen])
    is_tumor = np.r_[np.ones(len(picks[0]), bool), np.zeros(len(picks[1]), bool)]
    return tiles, is_tumor


def slide_tissue_tiles(paths: Sequence[Path], config: FWRDConfig, count: int, seed: int = 0) -> np.ndarray:
    """`count` tissue tiles spread over the slides (or slide folders) in `paths`, at the model's resolution."""
    slides = find_slides(paths)
    rng = np.random.default_rng(seed)
    tiles = []
    for n, path in enumerate(slides):
        share = count // len(slides) + (1 if n < count % len(slides) else 0)
        with open_slide(path) as slide:
            reading = choose_reading(slide, config.tile_size, config.mpp if slide.mpp else None, config.level)
            tile0 = reading.level0(reading.source)
            grid = _tissue_grid(slide, tile0)
            for i in _pick(rng, np.arange(len(grid)), share):
                tiles.append(read_tile(slide, reading, *grid[i]))
    if not tiles:
        raise FwrdError("the calibration slides hold no tissue tiles")
    return np.stack(tiles)


def noise_tiles(config: FWRDConfig, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, config.tile_size, config.tile_size, 3), dtype=np.uint8)


def _tissue_grid(slide: Slide, tile0: int) -> np.ndarray:
    mask, downsample = tissue_mask(slide)
    return tile_grid(mask, downsample, slide.dimensions, tile0, max(tile0 // 2, 1), min_tissue=0.5)


def _pick(rng: np.random.Generator, candidates: np.ndarray, count: int) -> np.ndarray:
    if len(candidates) <= count:
        return candidates
    return np.sort(rng.choice(candidates, size=count, replace=False))
