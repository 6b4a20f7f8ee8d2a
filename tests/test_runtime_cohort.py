"""Cohorts through `fwrd-run`: folders, failures that do not stop the others, shards, resume, bad input."""

from __future__ import annotations

import csv
import shutil

import pytest
import tifffile
from click.testing import CliRunner

from fwrd.cli.run import command
from fwrd.errors import FwrdError, InputNotFound
from fwrd.runtime.cohort import parse_shard, select_shard
from fwrd.slide.discover import find_slides


def _run(*args: str):
    return CliRunner().invoke(command, [str(a) for a in args] + ["--quiet", "--threads", "1"])


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def mixed_cohort(synthetic_cohort, tmp_path):
    """The synthetic slides plus a non-slide, and a slide whose level-0 tiles are corrupt."""
    folder = tmp_path / "slides"
    shutil.copytree(synthetic_cohort.slides_dir, folder)
    (folder / "notes.svs").write_text("not a slide")
    data = bytearray(synthetic_cohort.slides[0].path.read_bytes())
    with tifffile.TiffFile(synthetic_cohort.slides[0].path) as tif:
        for offset in tif.pages[0].dataoffsets:
            data[offset:offset + 32] = b"\xff" * 32
    (folder / "corrupt.svs").write_bytes(bytes(data))
    return folder


def test_cohort_goes_on_past_bad_slides(mixed_cohort, standin_model, tmp_path):
    out = tmp_path / "out"
    result = _run(mixed_cohort, "--model", standin_model, "--out", out, "--workers", "2")
    assert result.exit_code == 1
    assert "2 of 5 slides failed" in result.output and "Traceback" not in result.output
    rows = {r["slide"]: r for r in _rows(out / "slides.csv")}
    assert set(rows) == {"corrupt", "normal_001", "notes", "tumor_001", "tumor_002"}
    assert rows["notes"]["status"] == "failed" and "not a slide" in rows["notes"]["error"]
    assert rows["corrupt"]["status"] == "failed" and "corrupt JPEG tile" in rows["corrupt"]["error"]
    for name in ("normal_001", "tumor_001", "tumor_002"):
        assert rows[name]["status"] == "ok" and float(rows[name]["score"]) >= 0
        assert (out / name / "summary.json").is_file()
    assert not (out / "corrupt" / "summary.json").exists()  # never looks complete
    assert float(rows["tumor_001"]["score"]) > 0 and float(rows["normal_001"]["score"]) == 0.0


def test_shards_split_the_cohort(synthetic_cohort, standin_model, tmp_path):
    out = tmp_path / "out"
    for index in range(2):
        result = _run(synthetic_cohort.slides_dir, "--model", standin_model, "--out", out, "--shard", f"{index}/2")
        assert result.exit_code == 0, result.output
    first = [r["slide"] for r in _rows(out / "slides.shard-0-of-2.csv")]
    second = [r["slide"] for r in _rows(out / "slides.shard-1-of-2.csv")]
    assert first == ["normal_001", "tumor_002"] and second == ["tumor_001"]
    assert not (out / "slides.csv").exists()


def test_resume_leaves_complete_slides_alone(synthetic_cohort, standin_model, tmp_path):
    out = tmp_path / "out"
    slide = synthetic_cohort.slides[2].path
    assert _run(slide, "--model", standin_model, "--out", out).exit_code == 0
    stamp = (out / slide.stem / "tiles.csv").stat().st_mtime_ns
    result = _run(slide, "--model", standin_model, "--out", out, "--resume")
    assert result.exit_code == 0
    assert (out / slide.stem / "tiles.csv").stat().st_mtime_ns == stamp
    assert _rows(out / "slides.csv")[0]["status"] == "ok"


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "--model", "{model}"], "no such file or folder"),
        (["{text}", "--model", "{model}"], "not a slide OpenSlide can read"),
        (["{slide}", "--model", "{text}"], "not an ONNX model"),
        (["{slide}", "--model", "{model}", "--engine", "{model}"], "exactly one of --model"),
        (["{slide}"], "exactly one of --model"),
        (["{slide}", "--model", "{model}", "--out", "{text}"], "exists and is not a folder"),
        (["{slide}", "--model", "{model}", "--shard", "3/2"], "need 0 <= i < N"),
        (["{mask}", "--model", "{model}"], "no tissue found"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(synthetic_cohort, standin_model, tmp_path, args, message):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    values = {"missing": tmp_path / "nope.svs", "model": standin_model, "text": text,
              "slide": synthetic_cohort.slides[2].path, "mask": synthetic_cohort.slides[0].mask}
    extra = [] if "--out" in args else ["--out", tmp_path / "out"]
    result = _run(*[a.format(**values) for a in args], *extra)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("Error:") == 1


def test_find_slides_and_shards(synthetic_cohort, tmp_path):
    slides = find_slides([synthetic_cohort.slides_dir])
    assert [p.stem for p in slides] == ["normal_001", "tumor_001", "tumor_002"]
    assert find_slides([slides[1], synthetic_cohort.slides_dir]) == slides  # no duplicates
    with pytest.raises(InputNotFound):
        find_slides([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FwrdError, match="no slides in this folder"):
        find_slides([tmp_path / "empty"])
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(slides[0], twin / slides[0].name)
    with pytest.raises(FwrdError, match="two slides are named 'normal_001'"):
        find_slides([synthetic_cohort.slides_dir, twin])
    items = [f"s{i}" for i in range(10)]
    parts = [select_shard(items, (i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(items) and parts[0] == ["s0", "s3", "s6", "s9"]
    assert parse_shard(None) is None and parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x/2", "1", "-1/2"):
        with pytest.raises(FwrdError):
            parse_shard(bad)
