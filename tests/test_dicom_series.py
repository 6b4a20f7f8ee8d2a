"""DICOM WSI as series: the instances of one series (levels, label, overview) are one slide, named after
their folder, scored end to end through OpenSlide 4 (tests/dicom_wsi.py writes the series with pydicom)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from fwrd.errors import DataError
from fwrd.slide.discover import find_slides, slide_name
from fwrd.slide.identity import slide_identity
from fwrd.slide.reader import open_slide

from dicom_wsi import write_series


@pytest.fixture(scope="module")
def dicom_cohort(synthetic_cohort, tmp_path_factory):
    """cohort/case.17/ (a series: 2 levels, label, overview, 0.243 um/px) beside cohort/normal_001.svs."""
    root = tmp_path_factory.mktemp("dicom") / "cohort"
    source = synthetic_cohort.slides[0].path
    with open_slide(source) as slide:
        level0 = slide.read_region((0, 0), 0, slide.dimensions)
    write_series(root / "case.17", level0, mpp=0.243, levels=2)
    shutil.copy(synthetic_cohort.slides[2].path, root / "normal_001.svs")
    return root


def test_a_series_is_one_slide_named_after_its_folder(dicom_cohort):
    series = dicom_cohort / "case.17"
    assert find_slides([dicom_cohort]) == [series.resolve(), (dicom_cohort / "normal_001.svs").resolve()]
    assert find_slides([series]) == [series.resolve()]
    assert find_slides([series / "label.dcm"]) == [series.resolve()]  # an instance stands for its series
    assert find_slides([series / "label.dcm", series / "level1.dcm", series]) == [series.resolve()]
    assert slide_name(series) == "case.17"  # not "case": a series folder is often named by a UID
    with open_slide(series) as slide:
        assert slide.name == "case.17" and slide.vendor == "dicom"
        assert slide.level_count == 2 and slide.dimensions == (2048, 2048) and slide.mpp == pytest.approx(0.243)
    identity = slide_identity(series)
    assert identity.startswith("v2-series:") and identity == slide_identity(series)


def test_two_series_in_one_folder_are_refused(dicom_cohort, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(dicom_cohort / "case.17", mixed)
    with open_slide(mixed) as slide:
        level0 = slide.read_region((0, 0), 1, (256, 256))
    write_series(tmp_path / "other", level0, mpp=0.5, levels=1)
    shutil.copy(tmp_path / "other" / "level0.dcm", mixed / "other_level0.dcm")
    with pytest.raises(DataError, match="2 DICOM series.*folder of its own"):
        find_slides([mixed])


def test_dicom_series_scored_end_to_end(dicom_cohort, standin_model, tmp_path):
    from fwrd.cli.run import command

    out = tmp_path / "out"
    result = CliRunner().invoke(command, [str(dicom_cohort), "--model", str(standin_model), "--out", str(out),
                                          "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "case.17", "normal_001", "slides.csv"]
    summary = json.loads((out / "case.17" / "summary.json").read_text())
    assert summary["slide"] == "case.17" and summary["tiles_scored"] > 20 and summary["reader"] == "openslide"
    assert summary["slide_dimensions"] == [2048, 2048] and summary["mpp"] == pytest.approx(0.243)
    rows = (out / "slides.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("case.17,") and ",ok," in rows[1]
    heatmap = np.load(out / "case.17" / "heatmap.npy")
    assert np.isfinite(heatmap).sum() == summary["tiles_scored"]
    again = CliRunner().invoke(command, [str(dicom_cohort / "case.17" / "level0.dcm"), "--model", str(standin_model),
                                         "--out", str(out), "--resume"])
    assert again.exit_code == 0 and "skipped" in again.output
