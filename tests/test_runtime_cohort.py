"""Cohorts through `fwrd-run`: folders, failures that do not stop the others, shards, resume, bad input."""

from __future__ import annotations

import csv
import shutil

import pytest
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


def test_slides_csv_always_lists_every_slide_of_the_folder(mixed_cohort, standin_model, tmp_path):
    # issue 11.4: shards wrote only per-shard tables (an older slides.csv stayed), and a run over some
    # slides rewrote slides.csv with only those; now every run rebuilds it from the folder
    out = tmp_path / "out"
    out.mkdir()
    (out / "slides.csv").write_text("slide,score,status,error\nold_slide,0.9,ok,\n")  # an older run's table
    first = _run(mixed_cohort, "--model", standin_model, "--out", out, "--shard", "0/2")
    assert first.exit_code == 1  # corrupt and notes fail
    rows = {r["slide"]: r["status"] for r in _rows(out / "slides.csv")}
    assert rows == {"corrupt": "failed", "notes": "failed", "tumor_002": "ok"}
    second = _run(mixed_cohort, "--model", standin_model, "--out", out, "--shard", "1/2")
    assert second.exit_code == 0, second.output
    # the other shard's failures are still listed: they are recorded in the folder, not in memory
    rows = {r["slide"]: r for r in _rows(out / "slides.csv")}
    assert {k: r["status"] for k, r in rows.items()} == {
        "corrupt": "failed", "normal_001": "ok", "notes": "failed", "tumor_001": "ok", "tumor_002": "ok"}
    assert "not a slide" in rows["notes"]["error"]
    assert not list(out.glob("slides.shard-*"))
    # scoring one slide again keeps the others' rows
    again = _run(mixed_cohort / "tumor_001.svs", "--model", standin_model, "--out", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert [r["slide"] for r in _rows(out / "slides.csv")] == ["corrupt", "normal_001", "notes", "tumor_001", "tumor_002"]


def test_concurrent_writers_of_slides_csv_wait_for_the_lock(synthetic_cohort, standin_model, tmp_path):
    import subprocess
    import sys
    import time

    from fwrd.runtime.outputs.slides_table import folder_lock

    out = tmp_path / "out"
    assert _run(synthetic_cohort.slides[2].path, "--model", standin_model, "--out", out).exit_code == 0
    (out / "slides.csv").unlink()
    code = f"from fwrd.runtime.outputs.slides_table import update_slides_table; update_slides_table({str(out)!r})"
    with folder_lock(out):
        writer = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(1.5)
        assert writer.poll() is None and not (out / "slides.csv").exists()  # waiting for the lock
    assert writer.wait(timeout=60) == 0
    assert [r["slide"] for r in _rows(out / "slides.csv")] == ["normal_001"]


def test_outputs_are_kept_unless_resume_or_overwrite(synthetic_cohort, standin_model, tmp_path):
    # issue 14.4: a second run into a folder with outputs silently re-scored (removing summary.json)
    out = tmp_path / "out"
    slide = synthetic_cohort.slides[2].path
    first = _run(slide, "--model", standin_model, "--out", out)
    assert first.exit_code == 0
    assert f"outputs: {out / slide.stem}/ (tiles.csv, " in first.output and "summary.json" in first.output
    stamp = (out / slide.stem / "summary.json").stat().st_mtime_ns
    refused = _run(slide, "--model", standin_model, "--out", out)
    assert refused.exit_code != 0 and refused.output.count("Error:") == 1
    assert "--resume" in refused.output and "--overwrite" in refused.output and slide.stem in refused.output
    assert (out / slide.stem / "summary.json").stat().st_mtime_ns == stamp
    both = _run(slide, "--model", standin_model, "--out", out, "--resume", "--overwrite")
    assert both.exit_code != 0 and "not both" in both.output
    again = _run(slide, "--model", standin_model, "--out", out, "--overwrite")
    assert again.exit_code == 0 and (out / slide.stem / "summary.json").stat().st_mtime_ns != stamp


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
    if message not in ("not a slide OpenSlide can read", "no tissue found"):  # found while scoring
        assert not (tmp_path / "out").exists()  # issue 14.5: nothing created before the inputs are checked


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "nan"], "not a finite number"),
        (["--threshold", "inf"], "not a finite number"),
        (["--threshold", "-inf"], "not a finite number"),
        (["--mpp", "inf"], "not a finite number"),
        (["--mpp", "nan"], "not a finite number"),
    ],
)
def test_non_finite_numbers_are_refused_before_anything_loads(synthetic_cohort, tmp_path, args, message):
    # issue 11.7: --threshold nan ran the whole inference, then failed per slide
    result = _run(synthetic_cohort.slides[2].path, "--model", tmp_path / "missing.onnx", "--out", tmp_path / "out",
                  *args)
    assert result.exit_code == 2 and message in result.output and "missing.onnx" not in result.output
    assert not (tmp_path / "out").exists()


def test_checkpoint_or_onnx_where_they_do_not_belong(synthetic_cohort, standin_model, tmp_path):
    # issue 14.6: --model model.pt said INVALID_PROTOBUF
    import torch

    checkpoint = tmp_path / "model.pt"
    torch.save({"format": "fwrd-checkpoint", "weights": torch.zeros(3)}, checkpoint)
    slide = synthetic_cohort.slides[2].path
    as_model = _run(slide, "--model", checkpoint, "--out", tmp_path / "a")
    assert as_model.exit_code != 0 and as_model.output.count("Error:") == 1
    assert "PyTorch checkpoint" in as_model.output and "fwrd-export" in as_model.output
    assert "--backend torch" in as_model.output and "PROTOBUF" not in as_model.output
    for engine, what in ((checkpoint, "PyTorch checkpoint"), (standin_model, "ONNX model")):
        result = _run(slide, "--engine", engine, "--out", tmp_path / "b")
        assert result.exit_code != 0 and what in result.output and "not a TensorRT engine" in result.output
        assert "--engine rd.plan" in result.output and "one GPU" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


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
