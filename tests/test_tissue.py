"""Tissue masks: numpy Otsu, the NCRF/FW-RD rule, and the level it is computed on."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.slide.annotations import load_asap_xml, rasterize
from fwrd.slide.reader import open_slide
from fwrd.slide.tissue import otsu_threshold, saturation, tissue_mask, tissue_mask_from_rgb


def test_otsu_bimodal_uint8():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(50, 5, 5000), rng.normal(200, 5, 3000)]).clip(0, 255).astype(np.uint8)
    t = otsu_threshold(values)
    low, high = values[:5000], values[5000:]
    assert low.max() <= t < high.min()  # anywhere in the gap splits the modes perfectly
    assert (values > t).sum() == 3000


def test_otsu_matches_exhaustive_search():
    # Otsu = the split maximising between-class variance; check against brute force on a skewed histogram
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.integers(10, 60, 700), rng.integers(90, 250, 300)]).astype(np.uint8)
    best, best_t = -1.0, None
    for t in range(values.min(), values.max()):
        lo, hi = values[values <= t].astype(float), values[values > t].astype(float)
        if len(lo) and len(hi):
            v = len(lo) * len(hi) * (lo.mean() - hi.mean()) ** 2
            if v > best:
                best, best_t = v, t
    assert otsu_threshold(values) == best_t


def test_otsu_float_and_constant():
    values = np.r_[np.full(100, 0.1), np.full(50, 0.8)].astype(np.float32)
    t = otsu_threshold(values)
    assert 0.1 <= t < 0.8 and (values > t).sum() == 50
    assert otsu_threshold(np.full(10, 7, np.uint8)) == 7.0
    with pytest.raises(ValueError):
        otsu_threshold(np.array([], np.uint8))


def test_saturation():
    rgb = np.array([[[255, 0, 0], [128, 128, 128], [0, 0, 0], [200, 100, 150]]], dtype=np.uint8)
    np.testing.assert_allclose(saturation(rgb)[0], [1.0, 0.0, 0.0, 0.5])


def test_tissue_rule_on_synthetic_image():
    rng = np.random.default_rng(0)
    image = np.full((100, 100, 3), 240, dtype=np.uint8)  # glass
    image += rng.integers(0, 4, image.shape, dtype=np.uint8)
    image[20:60, 20:60] = (225, 150, 200)  # pink tissue
    image[70:80, 70:90] = (30, 30, 60)  # saturated but dark: a pen mark, not tissue
    image[5:10, 80:95] = (200, 200, 200)  # grey dust: unsaturated, not tissue
    mask = tissue_mask_from_rgb(image)
    assert mask[20:60, 20:60].all()
    assert not mask[70:80, 70:90].any()
    assert not mask[5:10, 80:95].any()
    assert mask.sum() == 40 * 40
    with pytest.raises(ValueError):
        tissue_mask_from_rgb(image.astype(np.float32))


def test_tissue_mask_of_slide(synthetic_cohort):
    tumor = synthetic_cohort.slides[0]
    with open_slide(tumor.path) as slide:
        mask, ds = tissue_mask(slide)  # the reference's resolution: downsample 64 at 0.243 um/px ...
        fine, fine_ds = tissue_mask(slide, 8.0)  # ... or what is asked: level 3 of the 4, read as it is
    assert mask.shape == (32, 32) and ds == 64.0 and mask.dtype == bool
    assert fine.shape == (256, 256) and fine_ds == 8.0
    coverage = mask.mean()
    assert 0.15 < coverage < 0.8
    assert not mask[0, :].any() and not mask[:, 0].any()  # the border is glass
    tumor_px = rasterize(load_asap_xml(tumor.xml), mask.shape, ds)
    assert mask[tumor_px].mean() > 0.98  # tumor lies in tissue
