"""Every `fwrd-eval` entry point is as strict as `fwrd-eval RUN_DIR` (issue 21.5): `froc --detections RUN`
counted a failed or missing slide as "no detections" (FROC 1.0 -> 0.5 with a note), and `slides --scores`
took a slides.csv that mixed two models or two thresholds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fwrd.runtime.outputs.slides_table import update_slides_table
from test_eval_cli import cohort, fails_cleanly, invoke  # noqa: F401  (the module's cohort fixture)


def _failed(run: Path, name: str = "normal_002") -> Path:
    update_slides_table(run, failures=[(name, Path(f"slides/{name}.tif"), "corrupt JPEG tile")])
    return run


@pytest.fixture
def run(cohort, tmp_path) -> Path:  # noqa: F811
    return shutil.copytree(cohort / "run", tmp_path / "run")


def _froc(cohort, run, *extra):  # noqa: F811
    return invoke("froc", "--detections", run, "--masks", cohort / "masks", *extra)


def test_froc_on_a_run_refuses_a_failed_slide_as_the_run_command_does(cohort, run, tmp_path):  # noqa: F811
    _failed(run)
    reference = ("--slides", cohort / "reference.csv")
    fails_cleanly(_froc(cohort, run, *reference, "--out", tmp_path / "a"), "normal_002 (failed: corrupt JPEG tile)",
                  "--exclude")
    fails_cleanly(_froc(cohort, run, "--out", tmp_path / "b"), "normal_002 (failed")  # without a reference too
    fails_cleanly(invoke(run, "--reference", cohort / "reference.csv", "--masks", cohort / "masks", "--out",
                         tmp_path / "d"), "normal_002 (failed")  # what `fwrd-eval RUN_DIR` always said
    done = _froc(cohort, run, *reference, "--exclude", "normal_002", "--out", tmp_path / "c")
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "c" / "froc.json").read_text())["excluded"] == ["normal_002"]


def test_froc_on_a_run_refuses_a_reference_slide_the_run_never_scored(cohort, run, tmp_path):  # noqa: F811
    shutil.rmtree(run / "normal_002")
    update_slides_table(run)
    fails_cleanly(_froc(cohort, run, "--slides", cohort / "reference.csv", "--out", tmp_path / "a"),
                  "have no score, e.g. normal_002", "--exclude")
    assert not (tmp_path / "a").exists()
    assert _froc(cohort, run, "--slides", cohort / "reference.csv", "--exclude", "normal_002",
                 "--out", tmp_path / "b").exit_code == 0


def test_slides_refuses_a_table_of_two_models(cohort, run, tmp_path):  # noqa: F811
    summary = json.loads((run / "tumor_002" / "summary.json").read_text())
    (run / "tumor_002" / "summary.json").write_text(json.dumps({**summary, "run_key": "k2"}))
    fails_cleanly(invoke("slides", "--scores", run / "slides.csv", "--reference", cohort / "reference.csv",
                         "--out", tmp_path / "o"), "different models or settings")


def test_every_entry_point_refuses_a_run_called_at_two_thresholds(cohort, run, tmp_path):  # noqa: F811
    for name, threshold in (("tumor_001", 0.35), ("tumor_002", 0.5)):
        summary = json.loads((run / name / "summary.json").read_text())
        (run / name / "summary.json").write_text(json.dumps({**summary, "threshold": threshold}))
    reference = cohort / "reference.csv"
    out = ("--out", tmp_path / "o")
    for result in (invoke("slides", "--scores", run / "slides.csv", "--reference", reference, *out),
                   invoke(run, "--reference", reference, *out),
                   _froc(cohort, run, "--slides", reference, *out)):
        fails_cleanly(result, "different thresholds", "tumor_001: 0.35", "tumor_002: 0.5")


def test_slides_refuses_a_run_table_away_from_its_folder(cohort, tmp_path):  # noqa: F811
    alone = tmp_path / "slides.csv"
    shutil.copy(cohort / "run" / "slides.csv", alone)
    fails_cleanly(invoke("slides", "--scores", alone, "--reference", cohort / "reference.csv", "--out", tmp_path / "x"),
                  "not beside it", "fwrd-eval RUN_DIR")
    submission = tmp_path / "task1.csv"  # a headerless Camelyon16 file has no run to check against
    submission.write_text("tumor_001,0.9\ntumor_002,0.4\nnormal_001,0.5\nnormal_002,0.1\n")
    assert invoke("slides", "--scores", submission, "--reference", cohort / "reference.csv",
                  "--out", tmp_path / "o").exit_code == 0


def test_a_status_other_than_ok_is_never_evaluated(cohort, tmp_path):  # noqa: F811
    from fwrd.errors import DataError
    from fwrd.evaluation.detections import SlideScore
    from fwrd.evaluation.slide_status import usable_slides

    reference = {"a": ("a", True), "b": ("b", False)}
    rows = {"a": SlideScore("a", 0.9, "ok"), "b": SlideScore("b", 0.2, "busy", "scored elsewhere")}
    with pytest.raises(DataError, match=r"b \(busy: scored elsewhere\)"):
        usable_slides(rows, reference)
    assert [key for key, *_ in usable_slides(rows, reference, exclude=["B"])] == ["a"]
    # a QC `review` slide counts only when the user says so, and is never silently dropped
    rows["b"] = SlideScore("b", 0.2, "review", "pen marks")
    with pytest.raises(DataError, match=r"marked review by QC \(b\).*--review include"):
        usable_slides(rows, reference)
    assert [key for key, *_ in usable_slides(rows, reference, review="include")] == ["a", "b"]
    assert [key for key, *_ in usable_slides(rows, reference, review="exclude")] == ["a"]
