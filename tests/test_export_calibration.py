"""Tiles that verify and calibrate an export: labelled synthetic tissue, the user's slides, noise."""

import numpy as np
import pytest

from fwrd.config import FWRDConfig
from fwrd.errors import InputNotFound
from fwrd.export.calibration import labelled_synthetic_tiles, noise_tiles, slide_tissue_tiles


def test_labelled_synthetic_tiles_have_both_classes():
    tiles, is_tumor = labelled_synthetic_tiles(FWRDConfig(tile_size=64), per_class=5, seed=1)
    assert tiles.shape == (10, 64, 64, 3) and tiles.dtype == np.uint8
    assert is_tumor.sum() == 5
    # tumor texture is darker than normal tissue in the synthetic slides
    assert tiles[is_tumor].mean() < tiles[~is_tumor].mean()


def test_calibration_slides_give_tissue_tiles_at_the_model_resolution(synthetic_cohort):
    config = FWRDConfig(tile_size=64, mpp=0.486)  # level 1 of the 0.243 um/px cohort
    tiles = slide_tissue_tiles([synthetic_cohort.slides_dir], config, count=7, seed=0)
    assert tiles.shape == (7, 64, 64, 3)
    assert tiles.mean() < 240, "tissue, not white glass"


def test_calibration_path_errors(tmp_path):
    with pytest.raises(InputNotFound):
        slide_tissue_tiles([tmp_path / "nope.svs"], FWRDConfig(tile_size=64), count=2)


def test_noise_is_deterministic():
    config = FWRDConfig(tile_size=32)
    assert np.array_equal(noise_tiles(config, 2, seed=3), noise_tiles(config, 2, seed=3))
