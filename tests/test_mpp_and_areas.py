"""--mpp over recorded metadata (one warning line, both values in summary.json and on the pictures' scale bars)
and summary areas on one footing (tumour never exceeds tissue)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fwrd.runtime.outputs.areas import tissue_area_mm2, tumor_area_mm2
from fwrd.runtime.outputs.heatmap import CellGeometry
from fwrd.runtime.outputs.legend import draw_scale_bar
from fwrd.slide.reader import open_slide


def _run(args):
    from fwrd.cli.run import command

    return CliRunner().invoke(command, args)


def test_mpp_contradicting_the_slide_warns_once_and_is_recorded(synthetic_cohort, standin_model, tmp_path):
    slide = synthetic_cohort.slides[2].path  # records 0.243 um/px
    out = tmp_path / "out"
    result = _run([str(slide), "--model", str(standin_model), "--out", str(out), "--mpp", "0.25"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "--mpp 0.25 um/px replaces the 0.243 um/px normal_001.svs records" in warnings[0]
    summary = json.loads((out / "normal_001" / "summary.json").read_text())
    assert (summary["mpp"], summary["mpp_recorded"], summary["mpp_source"]) == (0.25, 0.243, "--mpp")
    assert summary["warnings"] == [warnings[0].split(": ", 2)[2]]
    # the same value as recorded, or none recorded: no warning
    same = _run([str(slide), "--model", str(standin_model), "--out", str(tmp_path / "same"), "--mpp", "0.2431"])
    assert same.exit_code == 0 and "warning:" not in same.output
    plain = json.loads(_summary(tmp_path / "plain", slide, standin_model))
    assert (plain["mpp"], plain["mpp_recorded"], plain["mpp_source"], plain["warnings"]) == (0.243, 0.243, "slide", [])


def _summary(out, slide, model):
    result = _run([str(slide), "--model", str(model), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return (out / slide.stem / "summary.json").read_text()


def test_scale_bar_says_which_resolution_it_uses():
    plain, sourced = (Image.new("RGB", (900, 300), "white") for _ in range(2))
    draw_scale_bar(plain, 2.0)
    draw_scale_bar(sourced, 2.0, "0.25 um/px from --mpp; the slide records 0.243")
    # the label (bottom-left box) is longer: the box reaches further right
    ink = [np.nonzero((np.asarray(image)[-40:] < 200).any(axis=(0, 2)))[0].max() for image in (plain, sourced)]
    assert ink[1] > ink[0] + 100


def test_scale_source_wording(synthetic_cohort):
    from fwrd.runtime.slide_job import _scale_source

    path = synthetic_cohort.slides[2].path
    with open_slide(path) as slide:
        assert _scale_source(slide) == "0.243 um/px from the slide"
    with open_slide(path, mpp=0.5) as slide:
        assert _scale_source(slide) == "0.5 um/px from --mpp; the slide records 0.243"
        assert slide.mpp_conflict() is not None


def test_tumour_area_never_exceeds_tissue():
    """A small ragged section: every cell above threshold, cells reaching past the tissue edge. The old
    cells x stride^2 area exceeded the mask's; on the mask it is at most the tissue under the cells."""
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:6] = True  # 12 mask pixels of 64 x 64 level-0 px
    mask[5, 3] = True
    geometry = CellGeometry(width=512, height=512, stride=64, tile=256)  # cells stand for squares shifted by 96
    values = np.full(geometry.shape, np.nan, np.float32)
    values[0:4, 0:4] = 3.0  # tiles over the tissue, all above threshold
    tissue = tissue_area_mm2(mask, 64.0, 0.243)
    tumor = tumor_area_mm2(mask, 64.0, values, geometry, 2.0, 0.243)
    old = 16 * (64 * 0.243) ** 2 / 1e6
    assert old > tissue  # the inconsistency the old footing gave
    assert 0 < tumor <= tissue
    # the cells' squares cover mask rows/cols 1.5..5.5 (level-0 96..352): tissue inside them, exactly
    covered = 0.0
    for i in range(8):
        for j in range(8):
            if mask[i, j]:
                ov_y = max(0.0, min((i + 1) * 64, 352) - max(i * 64, 96))
                ov_x = max(0.0, min((j + 1) * 64, 352) - max(j * 64, 96))
                covered += ov_y * ov_x
    assert tumor == pytest.approx(covered * 0.243**2 / 1e6)
    assert tumor_area_mm2(mask, 64.0, values, geometry, 5.0, 0.243) == 0.0
    assert tumor_area_mm2(mask, 64.0, values, geometry, 2.0, None) is None


def test_summary_areas_consistent_end_to_end(synthetic_cohort, standin_model, tmp_path):
    """With a threshold every tile passes, tumour area is the tissue under the grid: at most the tissue."""
    slide = synthetic_cohort.slides[0].path
    result = _run([str(slide), "--model", str(standin_model), "--out", str(tmp_path), "--quiet",
                   "--threshold", "0", "--stride", "32"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / slide.stem / "summary.json").read_text())
    assert summary["tiles_above_threshold"] == summary["tiles_scored"]
    assert 0.5 * summary["tissue_area_mm2"] < summary["tumor_area_mm2"] <= summary["tissue_area_mm2"]
