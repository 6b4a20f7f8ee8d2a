"""Strict CSV readers: detections, reference.csv, slide scores, detection folders."""

from __future__ import annotations

import pytest

from fwrd.errors import DataError, InputNotFound
from fwrd.evaluation.detections import (
    find_detection_files,
    read_detections,
    read_reference,
    read_slide_scores,
)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_detections_rows_blank_lines_and_decimals(tmp_path):
    d = read_detections(write(tmp_path / "a.csv", "0.9,100,200\n\n0.25, 3.5 ,7\n"))
    assert d.probs.tolist() == [0.9, 0.25]
    assert d.x.tolist() == [100, 3.5] and d.y.tolist() == [200, 7]
    assert len(read_detections(write(tmp_path / "empty.csv", ""))) == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("Confidence,X,Y\n0.9,1,2\n", "header"),
        ("0.9,1\n", "malformed"),
        ("0.9,1,2,3\n", "malformed"),
        ("0.9;1;2\n", "malformed"),
        ("0.9,1,2\n0.5,abc,3\n", r"b.csv:2: malformed"),
        ("nan,1,2\n", "malformed"),
        ("0.5,-3,2\n", "negative"),
    ],
)
def test_bad_detection_rows_name_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_detections(write(tmp_path / "b.csv", text))


def test_missing_detection_file(tmp_path):
    with pytest.raises(InputNotFound):
        read_detections(tmp_path / "nope.csv")


def test_reference_is_case_insensitive_with_bom_and_extra_columns(tmp_path):
    ref = read_reference(write(tmp_path / "r.csv", "\ufeffTest_001,Tumor,Macro,None\ntest_002,Normal\n\n"))
    assert ref == {"test_001": ("Test_001", True), "test_002": ("test_002", False)}


@pytest.mark.parametrize("text", ["image,type\nTest_001,Tumor\n", "a,Tumor\nA,Normal\n", "a\n", ""])
def test_bad_reference(tmp_path, text):
    with pytest.raises(DataError):
        read_reference(write(tmp_path / "r.csv", text))


def test_slide_scores_from_fwrd_run_and_from_a_submission(tmp_path):
    run = read_slide_scores(write(
        tmp_path / "slides.csv",
        'slide,score,status,error\na,0.5,ok,\nb,,failed,"corrupt, truncated"\n',
    ))
    assert run["a"].score == 0.5 and run["b"].score is None
    assert run["b"].status == "failed" and run["b"].error == "corrupt, truncated"
    sub = read_slide_scores(write(tmp_path / "sub.csv", "Test_001,0.9\ntest_002,0.1\n"))
    assert sub["test_001"].score == 0.9 and sub["test_001"].name == "Test_001"
    for bad in ("a,0.5\na,0.6\n", "a,high\n", "slide,prob\na,1\n", "a\n"):
        with pytest.raises(DataError):
            read_slide_scores(write(tmp_path / "bad.csv", bad))


def test_detection_folders_flat_and_fwrd_run_layout(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    write(flat / "Test_001.csv", "")
    write(flat / "test_002.csv", "")
    assert {k: v[0] for k, v in find_detection_files(flat).items()} == {"test_001": "Test_001", "test_002": "test_002"}
    run = tmp_path / "run"
    (run / "tumor_001").mkdir(parents=True)
    write(run / "tumor_001" / "detections.csv", "")
    write(run / "slides.csv", "slide,score,status,error\n")  # not a slide's detections
    assert list(find_detection_files(run)) == ["tumor_001"]
    write(flat / "TEST_001.csv", "")
    with pytest.raises(DataError, match="two detection files"):
        find_detection_files(flat)
    with pytest.raises(InputNotFound):
        find_detection_files(tmp_path / "none")
