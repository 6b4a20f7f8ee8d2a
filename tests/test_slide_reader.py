"""fwrd.slide.reader: metadata of both synthetic formats, pixels, levels, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fwrd.errors import FwrdError, InputNotFound, SlideError
from fwrd.slide.reader import open_slide, rgba_to_rgb_on_white, snap_downsample
from fwrd.slide.synthetic import make_synthetic_slide


def test_svs_metadata(synthetic_cohort):
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        assert slide.vendor == "aperio"
        assert slide.mpp == pytest.approx(0.243)
        assert slide.name == "tumor_001"
        assert slide.dimensions == (2048, 2048)
        assert slide.level_dimensions == [(2048, 2048), (1024, 1024), (512, 512), (256, 256)]
        assert slide.level_downsamples == [1.0, 2.0, 4.0, 8.0]
        assert slide.level_count == 4


def test_generic_tiff_metadata(synthetic_tif):
    with open_slide(synthetic_tif.path) as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx(0.243, rel=1e-6)
        assert slide.dimensions == (1000, 776)


def test_mpp_override_and_missing_mpp(tmp_path, synthetic_tif):
    with open_slide(synthetic_tif.path, mpp=0.5) as slide:
        assert slide.mpp == 0.5
    for fmt in ("svs", "tif"):
        made = make_synthetic_slide(tmp_path / f"nompp.{fmt}", width=256, height=256, fmt=fmt, tumor=False, mpp=None)
        with open_slide(made.path) as slide:
            assert slide.mpp is None
            with pytest.raises(SlideError, match="no microns per pixel"):
                slide.level_for_mpp(0.25)
    with pytest.raises(FwrdError, match="positive"):
        open_slide(synthetic_tif.path, mpp=-1)


def test_read_region_shape_and_white_outside(synthetic_cohort):
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        inside = slide.read_region((1000, 1000), 0, (64, 32))
        assert inside.shape == (32, 64, 3) and inside.dtype == np.uint8
        outside = slide.read_region((3000, 3000), 0, (16, 16))
        assert (outside == 255).all()
        straddle = slide.read_region((2040, 0), 0, (16, 4))
        assert (straddle[:, 8:] == 255).all()
        level = slide.read_level(3)
        assert level.shape == (256, 256, 3)
        with pytest.raises(SlideError, match="level 9 does not exist"):
            slide.read_region((0, 0), 9, (4, 4))


def test_rgba_composited_on_white():
    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [100, 100, 100, 128]]], dtype=np.uint8)
    rgb = rgba_to_rgb_on_white(rgba)
    assert rgb[0, 0].tolist() == [10, 20, 30]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 2].tolist() == [177, 177, 177]  # 100 * 128/255 + 255 * 127/255


def test_level_selection(synthetic_cohort):
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        assert slide.level_for_downsample(1.0) == 0
        assert slide.level_for_downsample(3.0) == 1
        assert slide.level_for_downsample(4.0) == 2
        assert slide.level_for_downsample(3.97) == 2  # 1% slack
        assert slide.level_for_downsample(100.0) == 3
        assert slide.level_for_mpp(0.243) == 0
        assert slide.level_for_mpp(0.5) == 1  # 0.486 is within 10%
        assert slide.level_for_mpp(1.9) == 3  # 1.944
        with pytest.raises(SlideError, match="no level at 0.35"):
            slide.level_for_mpp(0.35)


def test_snap_downsample():
    assert snap_downsample(63.67) == 64.0  # padded pyramid (camelyon16.md)
    assert snap_downsample(2.0012) == 2.0
    assert snap_downsample(3.0) == 3.0


def test_read_level_refuses_huge(synthetic_cohort, monkeypatch):
    import fwrd.slide.reader as reader

    monkeypatch.setattr(reader, "MAX_LEVEL_PIXELS", 1000)
    with open_slide(synthetic_cohort.slides[0].path) as slide, pytest.raises(SlideError, match="refusing"):
        slide.read_level(0)


def test_bad_inputs(tmp_path, synthetic_cohort):
    with pytest.raises(InputNotFound):
        open_slide(tmp_path / "missing.svs")
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    with pytest.raises(SlideError, match="not a slide OpenSlide can read"):
        open_slide(text)
    with pytest.raises(SlideError, match="folder"):
        open_slide(tmp_path)
    data = synthetic_cohort.slides[0].path.read_bytes()
    truncated = tmp_path / "truncated.svs"
    for keep, message in ((0.5, "a TIFF, but truncated"), (0.99, "corrupt or truncated slide")):
        truncated.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(SlideError, match=message):
            open_slide(truncated)


def test_closed_slide_refuses_reads(tmp_path, synthetic_cohort):
    copy = tmp_path / "copy.svs"
    shutil.copy(synthetic_cohort.slides[2].path, copy)
    slide = open_slide(copy)
    slide.close()
    slide.close()  # twice is fine
    with pytest.raises(SlideError, match="closed"):
        slide.read_region((0, 0), 0, (4, 4))


def test_slide_and_patch_modules_never_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, fwrd.slide, fwrd.slide.synthetic, fwrd.training.patches, fwrd.cli.patches, fwrd.cli.synth; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
