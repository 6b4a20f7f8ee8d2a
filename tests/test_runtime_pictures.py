"""overlay.png and heatmap.png: H&E left visible below the threshold, outlines, one fixed scale per
model, slide name, scale bar, labels that never overlap."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fwrd.runtime.outputs.colormap import LUT, OVERLAY_ALPHA, TUMOR_LUT, model_scale, overlay_colours
from fwrd.runtime.outputs.geojson import tumor_features
from fwrd.runtime.outputs.heatmap import CellGeometry, render_heatmap
from fwrd.runtime.outputs.legend import BAR_WIDTH, INK, TITLE_BAND, key_labels, nice_length, scale_bar_label, scale_ticks
from fwrd.runtime.outputs.overlay import OUTLINE, blend_heatmap, overlay_key, render_overlay, save_overlay

GEOMETRY = CellGeometry(width=4000, height=2000, stride=100, tile=100)  # 20 x 40 cells


def _tissue(h: int = 200, w: int = 400, seed: int = 0) -> np.ndarray:
    """A pink-and-purple 'H&E' thumbnail (10 level-0 px per pixel)."""
    rng = np.random.default_rng(seed)
    base = np.array([236, 190, 220], np.int16) - rng.integers(0, 60, (h, w, 1)).astype(np.int16)
    return np.clip(base, 0, 255).astype(np.uint8)


def _scores(high: float, seed: int = 0) -> np.ndarray:
    """Low scores everywhere, a block of high ones, NaN on the right (no tissue)."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.2, 0.9, (20, 40)).astype(np.float32)
    values[5:10, 5:12] = np.linspace(1.5, high, 35).reshape(5, 7)
    values[:, 30:] = np.nan
    return values


def _key_height(image: Image.Image, key: Image.Image) -> Image.Image:
    return image.crop((0, image.height - key.height, key.width, image.height))


def _picture(image: Image.Image, width: int, height: int) -> np.ndarray:
    """The slide picture inside the frame: below the title band, centred."""
    left = (image.width - width) // 2
    return np.asarray(image)[TITLE_BAND:TITLE_BAND + height, left:left + width]


# -- colours -----------------------------------------------------------------------------------------
def test_model_scale_is_fixed_and_holds_the_threshold():
    assert model_scale(1.21) == model_scale(1.21)
    for threshold in (-0.4, 0.0, 0.35, 1.21, 2.01, 2.9, 3.0, 4.7):
        scale = model_scale(threshold)
        assert scale.lo <= min(0.0, threshold) and scale.lo <= threshold < scale.hi and scale.hi >= 3.0
    assert (model_scale(1.21).lo, model_scale(1.21).hi) == (0.0, 3.0) == (model_scale(2.01).lo, model_scale(2.01).hi)
    with pytest.raises(ValueError):
        model_scale(float("nan"))


def test_overlay_colours_leave_low_scores_alone_and_strengthen_with_the_score():
    scale = model_scale(1.0)
    values = np.array([np.nan, 0.0, 0.99, 1.0, 2.0, 3.0, 9.0])
    rgb, alpha = overlay_colours(values, scale)
    assert list(alpha[:3]) == [0.0, 0.0, 0.0]
    assert alpha[3] == pytest.approx(OVERLAY_ALPHA[0]) and alpha[5] == alpha[6] == pytest.approx(OVERLAY_ALPHA[1])
    assert alpha[3] < alpha[4] < alpha[5]
    assert tuple(rgb[3]) == tuple(TUMOR_LUT[0]) and tuple(rgb[5]) == tuple(TUMOR_LUT[-1]) == tuple(rgb[6])


# -- overlay.png -------------------------------------------------------------------------------------
def test_tissue_below_the_threshold_is_left_exactly_as_scanned():
    thumb, values = _tissue(), _scores(2.8)
    scale = model_scale(1.2)
    out = blend_heatmap(thumb, values, GEOMETRY, scale)
    cells = np.kron(np.nan_to_num(values, nan=-1.0), np.ones((10, 10)))  # one cell = 10 x 10 thumbnail px
    below = cells < 1.2
    np.testing.assert_array_equal(out[below], thumb[below])
    changed = np.any(out != thumb, axis=2)
    assert changed[~below].all()
    # strength follows the score: the highest cell moves further from the tissue than the lowest
    shift = np.abs(out.astype(int) - thumb.astype(int)).sum(axis=2)
    hi_cell, lo_cell = np.unravel_index(np.nanargmax(values), values.shape), (5, 5)
    assert shift[hi_cell[0] * 10 + 5, hi_cell[1] * 10 + 5] > shift[lo_cell[0] * 10 + 5, lo_cell[1] * 10 + 5]


def test_cells_land_on_their_squares_whatever_the_thumbnail_size():
    geometry = CellGeometry(width=400, height=200, stride=100, tile=100)
    values = np.full((2, 4), 0.1, np.float32)
    values[1, 2] = 2.5
    thumb = np.full((20, 40, 3), 200, np.uint8)  # 10 level-0 px per thumbnail px
    changed = np.any(blend_heatmap(thumb, values, geometry, model_scale(1.0)) != 200, axis=2)
    expected = np.zeros((20, 40), bool)
    expected[10:20, 20:30] = True
    np.testing.assert_array_equal(changed, expected)


def test_overlay_outlines_the_geojson_regions_and_names_the_slide():
    thumb, values = _tissue(), _scores(2.8)
    scale = model_scale(1.2)
    features = tumor_features(values, GEOMETRY, scale.threshold, mpp=0.25)
    assert len(features) == 1
    image = render_overlay(thumb, values, GEOMETRY, scale, title="tumor_042", features=features, mpp=0.25)
    plain = render_overlay(thumb, values, GEOMETRY, scale, title="tumor_042", features=[], mpp=0.25)
    outline = np.all(_picture(image, 800, 400) == OUTLINE, axis=2)  # enlarged 2x to at least 768 px
    assert outline.sum() > 100 and not np.all(_picture(plain, 800, 400) == OUTLINE, axis=2).any()
    # the outline runs along the region's edge: the region spans cells x 5..12, y 5..10 of 40 x 20
    ys, xs = np.nonzero(outline)
    assert abs(xs.min() - 5 * 20) <= 2 and abs(xs.max() - 12 * 20) <= 2
    assert abs(ys.min() - 5 * 20) <= 2 and abs(ys.max() - 10 * 20) <= 2
    other = render_overlay(thumb, values, GEOMETRY, scale, title="normal_007", features=features, mpp=0.25)
    band = (0, 0, image.width, 30)
    assert np.asarray(image.crop(band)).min() < 100  # the name is written in dark ink
    assert not np.array_equal(np.asarray(image.crop(band)), np.asarray(other.crop(band)))


def test_key_is_identical_on_every_slide_of_a_model(tmp_path):
    scale = model_scale(1.21)
    key = overlay_key(scale)
    slides = [(_tissue(seed=s), _scores(high, seed=s)) for s, high in ((0, 1.6), (1, 2.9), (2, 6.0))]
    slides.append((_tissue(seed=3), np.full((20, 40), 0.5, np.float32)))  # a normal slide
    keys = []
    for n, (thumb, values) in enumerate(slides):
        save_overlay(tmp_path / f"{n}.png", thumb, values, GEOMETRY, scale, title=f"slide {n}",
                     features=tumor_features(values, GEOMETRY, scale.threshold, None), mpp=0.243)
        keys.append(np.asarray(_key_height(Image.open(tmp_path / f"{n}.png"), key)))
    for other in keys[1:]:
        np.testing.assert_array_equal(other, keys[0])
    np.testing.assert_array_equal(keys[0], np.asarray(key))
    assert not np.array_equal(np.asarray(overlay_key(model_scale(2.0))), keys[0])  # the threshold is shown


@pytest.mark.parametrize("threshold", [0.0, 0.35, 0.5, 0.99, 1.0, 1.21, 2.01, 2.5, 2.99, 3.0, 3.7])
def test_key_labels_never_overlap(threshold):
    scale = model_scale(threshold)
    boxes = [box for _, box in key_labels(scale, ImageDraw.Draw(Image.new("RGB", (1, 1))))]
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[2] <= overlay_key(scale).width
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert scale_ticks(scale)[0] == scale.lo and scale_ticks(scale)[-1] == scale.hi


def test_scale_bar_is_a_round_length_drawn_to_scale():
    assert nice_length(1.0, 205) == 200 and nice_length(4.0, 100) == 200 and nice_length(0.5, 150) == 50
    assert nice_length(20.0, 120) == 2000 and scale_bar_label(2000) == "2 mm" and scale_bar_label(50) == "50 um"
    thumb, values = np.full((200, 400, 3), 230, np.uint8), np.full((20, 40), np.nan, np.float32)
    image = _picture(render_overlay(thumb, values, GEOMETRY, model_scale(1.0), title="x", mpp=0.25), 800, 400)
    # 4000 px at 0.25 um/px over 800 drawn pixels: 1.25 um/px; a fifth of the width (160 px) -> 200 um = 160 px
    assert np.all(image == INK, axis=2).sum(axis=1).max() == 160
    no_mpp = _picture(render_overlay(thumb, values, GEOMETRY, model_scale(1.0), title="x", mpp=None), 800, 400)
    assert not np.all(no_mpp == INK, axis=2).any()


# -- heatmap.png -------------------------------------------------------------------------------------
def test_heatmap_png_uses_the_model_scale_on_every_slide():
    scale = model_scale(1.21)
    a, b = _scores(1.6, seed=0), _scores(5.0, seed=1)
    a[0, 0] = b[0, 0] = 1.5  # the same score ...
    img_a = np.asarray(render_heatmap(a, scale, title="a", cell_um=24.3))
    img_b = np.asarray(render_heatmap(b, scale, title="b", cell_um=24.3))
    assert img_a.shape == img_b.shape
    left = (img_a.shape[1] - 40 * 12) // 2  # 40 cells enlarged 12x (to >= 512 px)
    colour_a, colour_b = img_a[TITLE_BAND + 2, left + 2], img_b[TITLE_BAND + 2, left + 2]
    np.testing.assert_array_equal(colour_a, colour_b)  # ... the same colour, whatever else is on the slide
    np.testing.assert_array_equal(colour_a, LUT[round(1.5 / 3.0 * 255)])
    key_rows = 110
    np.testing.assert_array_equal(img_a[-key_rows:], img_b[-key_rows:])
    assert BAR_WIDTH < img_a.shape[1]
