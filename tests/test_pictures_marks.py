"""What the pictures say beyond the scores: tissue that was not scored, a demo model's stamp, any slide name."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from fwrd.config import FWRDConfig
from fwrd.runtime.outputs.colormap import model_scale
from fwrd.runtime.outputs.heatmap import CellGeometry, render_heatmap
from fwrd.runtime.outputs.legend import STAMP, STAMP_BAND, TITLE_BAND, frame, unicode_text
from picture_marks import red_bands
from fwrd.runtime.outputs.overlay import (
    DEMO_STAMP,
    UNSCORED,
    TissueMask,
    demo_stamp,
    key_entries,
    render_overlay,
)

SCALE = model_scale(2.0)


def _slide():
    """A 1024 x 1024 slide, thumbnail 1024 px: tissue in the middle; the grid scored its left half only."""
    thumb = np.full((1024, 1024, 3), 245, np.uint8)
    thumb[256:768, 256:768] = (230, 170, 210)
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True  # downsample 64
    geometry = CellGeometry(1024, 1024, stride=64, tile=64)
    values = np.full(geometry.shape, np.nan, np.float32)
    values[4:12, 4:8] = 0.5  # scored below threshold
    return thumb, mask, geometry, values


def _picture(stamp=None, title="slide", tissue=True):
    thumb, mask, geometry, values = _slide()
    image = render_overlay(thumb, values, geometry, SCALE, title=title, mpp=0.25,
                           tissue=TissueMask(mask, 64.0) if tissue else None, stamp=stamp)
    return np.asarray(image)


def test_unscored_tissue_is_hatched_and_scored_benign_is_not():
    thumb, *_ = _slide()
    image = _picture()
    top = TITLE_BAND
    picture = image[top:top + 1024, (image.shape[1] - 1024) // 2:][:, :1024]
    benign = picture[300:700, 300:500]  # scored, below threshold: H&E as scanned
    unscored = picture[300:700, 560:760]  # tissue, no tile scored
    glass = picture[100:200, 100:200]  # no tissue: untouched
    np.testing.assert_array_equal(benign, thumb[300:700, 300:500])
    np.testing.assert_array_equal(glass, thumb[100:200, 100:200])
    changed = (unscored != thumb[300:700, 560:760]).any(axis=2)
    assert 0.2 < changed.mean() < 0.5  # a hatch: 2 of every 6 diagonals
    hatch = unscored[changed]
    assert (hatch[:, 2] > hatch[:, 0]).all()  # bluer than the pink it covers
    # without the mask (older callers) nothing is hatched
    plain = _picture(tissue=False)[top:top + 1024, (image.shape[1] - 1024) // 2:][:, :1024]
    np.testing.assert_array_equal(plain[300:700, 560:760], thumb[300:700, 560:760])


def test_the_key_names_every_kind_of_area():
    meanings = [text for _, text in key_entries()]
    assert any("not scored" in text for text in meanings)
    assert any("below threshold" in text for text in meanings) and any("tumor region" in text for text in meanings)
    hatched = np.asarray(dict((text, swatch) for swatch, text in key_entries())[meanings[1]])
    assert (hatched == UNSCORED).all(axis=2).sum() == 0 and len(np.unique(hatched.reshape(-1, 3), axis=0)) > 2
    # the key wraps: more entries than fit one row still all show, and the key grows downwards
    from fwrd.runtime.outputs.legend import colour_key

    bar = np.zeros((512, 3), np.uint8)
    one = colour_key(SCALE, bar, "caption", key_entries()[:1])
    many = colour_key(SCALE, bar, "caption", key_entries() * 3)
    assert many.height > one.height and many.width == one.width


def test_demo_models_are_stamped():
    assert demo_stamp(FWRDConfig(teacher_weights="random")) == DEMO_STAMP
    assert demo_stamp(FWRDConfig(teacher_weights="imagenet")) is None
    stamped, plain = _picture(stamp=DEMO_STAMP), _picture()
    band = stamped[TITLE_BAND:TITLE_BAND + 20, :400]
    assert (band == STAMP).all(axis=2).mean() > 0.3  # a red band under the title
    assert not (plain[:TITLE_BAND + 20] == STAMP).all(axis=2).any()
    assert stamped.shape[0] > plain.shape[0]
    values = np.full((4, 4), 0.5, np.float32)
    heat = np.asarray(render_heatmap(values, SCALE, title="s", stamp=DEMO_STAMP))
    assert (heat[TITLE_BAND:TITLE_BAND + 20] == STAMP).all(axis=2).any()


def test_any_unicode_slide_name_renders_without_missing_glyph_boxes():
    """Every character drawn is one the chosen font has; what no font has is written as its code point."""
    from fwrd.runtime.outputs.legend import _has_glyph

    assert unicode_text("tumor_001", 18)[0] == "tumor_001"
    for name in ("Gewebe_Präparat_é", "ściółka", "case_\U0001F52C_01", "标本_07", "\U0010FFFD"):
        text, face = unicode_text(name, 18)
        assert all(_has_glyph(face, c) for c in text), (name, text)
        plain = text
        for c in set(name):
            plain = plain.replace(f"<U+{ord(c):04X}>", c)
        assert plain == name  # only whole characters replaced, by their code point
    assert unicode_text("\U0010FFFD", 18)[0] == "<U+10FFFD>"
    emoji, face = unicode_text("case_\U0001F52C_01", 18)
    drawn = Image.new("RGB", (600, 40), "white")
    ImageDraw.Draw(drawn).text((0, 0), emoji, fill="black", font=face)
    assert (np.asarray(drawn) < 128).any()
    canvas = frame(Image.new("RGB", (300, 200), "white"), "ściółka_\U0001F52C", "sub", Image.new("RGB", (560, 40)))
    assert canvas.width >= 560



def test_several_stamps_stack_as_bands():
    from fwrd.runtime.outputs.overlay import review_stamp

    assert review_stamp("ok", "") is None
    assert review_stamp("review", "QC excluded 40% of the scored tissue") == (
        "REVIEW: QC excluded 40% of the scored tissue")
    two, one = _picture(stamp=[DEMO_STAMP, "REVIEW: QC excluded 40% of the scored tissue"]), _picture(stamp=DEMO_STAMP)
    assert two.shape[0] == one.shape[0] + STAMP_BAND
    assert (red_bands(two), red_bands(one), red_bands(_picture())) == (2, 1, 0)
