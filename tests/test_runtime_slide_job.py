"""One slide end to end with the stand-in model: correctness, alignment, outputs, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fwrd.errors import ModelError, SlideError
from fwrd.runtime.backends import open_backend
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.slide.reader import open_slide
from fwrd.slide.synthetic import make_synthetic_slide

OUTPUTS = {"tiles.csv", "heatmap.npy", "heatmap.png", "overlay.png", "detections.csv", "tumor.geojson", "summary.json"}


class Counting(Backend):
    """Wraps a backend, counts tiles, and can simulate a kill (KeyboardInterrupt) after n batches."""

    def __init__(self, inner: Backend, interrupt_after: int | None = None) -> None:
        super().__init__(inner.config, inner.metadata, inner.precision)
        self.inner, self.interrupt_after = inner, interrupt_after
        self.name, self.device = inner.name, inner.device
        self.model_sha256, self.model_path = inner.model_sha256, inner.model_path
        self.tiles = self.batches = 0

    def infer(self, tiles):
        if self.interrupt_after is not None and self.batches >= self.interrupt_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.tiles += len(tiles)
        return self.inner.infer(tiles)


@pytest.fixture(scope="module")
def backend(standin_model):
    return open_backend(standin_model, threads=1)


def _tiles_csv(path):
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, usecols=(0, 1, 2))
    return table[:, :2].astype(np.int64), table[:, 2].astype(np.float32)


@pytest.mark.parametrize("workers", [1, 3])
def test_every_tile_equals_openslide_read_run_alone(synthetic_cohort, backend, tmp_path, workers):
    slide_path = synthetic_cohort.slides[0].path
    result = score_slide(slide_path, backend, tmp_path, RunSettings(batch_size=8, workers=workers, progress=False))
    out = tmp_path / slide_path.stem
    assert result.status == "ok" and result.out_dir == out
    assert {p.name for p in out.iterdir()} == OUTPUTS  # and no journal or temp file left over
    assert (out / "tiles.csv").read_text().splitlines()[0] == "x,y,score,qc"
    coords, scores = _tiles_csv(out / "tiles.csv")
    assert len({tuple(c) for c in coords}) == len(coords) == result.summary["tiles_scored"]
    with open_slide(slide_path) as slide:
        for (x, y), score in zip(coords, scores):
            tile = slide.read_region((int(x), int(y)), 0, (64, 64))[None]
            assert abs(backend.infer(tile)[0][0] - score) <= 1e-4
    heatmap = np.load(out / "heatmap.npy")
    assert heatmap.dtype == np.float32 and heatmap.shape == (2048 // 64, 2048 // 64)
    np.testing.assert_array_equal(heatmap[coords[:, 1] // 64, coords[:, 0] // 64], scores)
    assert np.isnan(heatmap).sum() == heatmap.size - len(coords)


def test_worker_count_does_not_change_outputs(synthetic_cohort, backend, tmp_path):
    # order and layout do not depend on the workers; the stand-in's scores do not depend on the batch
    # (a real model's may, in the last bits: fwrd/runtime/outputs/tiles.py)
    slide_path = synthetic_cohort.slides[1].path
    texts = []
    for workers in (1, 4):
        settings = RunSettings(workers=workers, batch_size=5, progress=False)
        score_slide(slide_path, backend, tmp_path / str(workers), settings)
        out = tmp_path / str(workers) / slide_path.stem
        names = ("tiles.csv", "heatmap.npy", "detections.csv", "tumor.geojson")
        texts.append([(out / name).read_bytes() for name in names])
    assert texts[0] == texts[1]


def test_dense_grid_alignment_and_summary(synthetic_cohort, backend, tmp_path):
    slide_path = synthetic_cohort.slides[0].path
    settings = RunSettings(stride=32, batch_size=16, workers=2, progress=False)
    score_slide(slide_path, backend, tmp_path, settings)
    out = tmp_path / slide_path.stem
    coords, scores = _tiles_csv(out / "tiles.csv")
    assert np.all(coords % 32 == 0)
    heatmap = np.load(out / "heatmap.npy")
    assert heatmap.shape == (64, 64)
    np.testing.assert_array_equal(heatmap[coords[:, 1] // 32, coords[:, 0] // 32], scores)
    summary = json.loads((out / "summary.json").read_text())
    threshold = 0.35
    above = scores[scores >= threshold]
    assert summary["score"] == pytest.approx(float(above.mean()) if above.size else 0.0, abs=1e-6)
    assert summary["max_score"] == pytest.approx(float(scores.max()))
    assert summary["tiles_scored"] == len(scores) and summary["stride"] == 32 and summary["tile_size"] == 64
    assert summary["tumor_area_mm2"] == pytest.approx(above.size * (32 * 0.243) ** 2 / 1e6)
    assert summary["tissue_area_mm2"] > summary["tumor_area_mm2"] > 0
    assert summary["backend"] == "onnxruntime" and summary["precision"] == "fp32" and summary["batch_size"] == 16
    assert summary["model"]["sha256"] == backend.model_sha256 and summary["reader"] == "tifffile"
    assert set(summary["seconds"]) >= {"open", "tissue", "decode", "inference", "write"}
    assert summary["tiles_per_s"] > 0 and summary["versions"]["onnxruntime"]
    detections = (out / "detections.csv").read_text().splitlines()
    assert detections and len(detections[0].split(",")) == 3  # Confidence,X,Y and no header
    features = json.loads((out / "tumor.geojson").read_text())["features"]
    assert len(features) == summary["tumor_regions"] >= 1


def test_resume_skips_complete_and_continues_interrupted(synthetic_cohort, backend, tmp_path):
    slide_path = synthetic_cohort.slides[0].path
    settings = RunSettings(batch_size=8, workers=2, progress=False, resume=True)
    reference = tmp_path / "ref"
    full = score_slide(slide_path, backend, reference, settings)
    total = full.summary["tiles_scored"]

    # interrupted after 5 batches: a journal in the staging folder, no slide folder at all
    killed = Counting(backend, interrupt_after=5)
    with pytest.raises(KeyboardInterrupt):
        score_slide(slide_path, killed, tmp_path / "run", settings)
    out = tmp_path / "run" / slide_path.stem
    staging = tmp_path / "run" / f".{slide_path.stem}.partial"
    assert not out.exists() and {p.name for p in staging.iterdir()} == {"tiles.csv.part"}
    journaled = len((staging / "tiles.csv.part").read_text().splitlines()) - 2
    assert journaled >= 5 * 8 - 8  # at least the batches scored before the kill

    resumed = Counting(backend)
    result = score_slide(slide_path, resumed, tmp_path / "run", settings)
    assert result.status == "ok" and resumed.tiles == total - journaled
    assert result.summary["tiles_resumed"] == journaled and not staging.exists()
    for name in ("tiles.csv", "heatmap.npy", "detections.csv", "tumor.geojson"):
        assert (out / name).read_bytes() == (reference / slide_path.stem / name).read_bytes()

    again = Counting(backend)
    skipped = score_slide(slide_path, again, tmp_path / "run", settings)
    assert skipped.status == "skipped" and again.tiles == 0 and skipped.score == result.score
    # other settings (a threshold) are not "the same settings": rescored
    other = Counting(backend)
    rescored = score_slide(slide_path, other, tmp_path / "run", RunSettings(threshold=0.3, resume=True, progress=False))
    assert rescored.status == "ok" and other.tiles == total


def test_slide_without_resolution_needs_mpp(backend, tmp_path):
    bare = make_synthetic_slide(tmp_path / "bare.svs", width=768, height=768, mpp=None, seed=4).path
    with pytest.raises(SlideError, match="--mpp"):
        score_slide(bare, backend, tmp_path / "out", RunSettings(progress=False))
    assert not (tmp_path / "out" / "bare" / "summary.json").exists()
    result = score_slide(bare, backend, tmp_path / "out", RunSettings(mpp=0.243, progress=False))
    assert result.status == "ok" and result.summary["mpp"] == 0.243


# --- no silent wrong answers (issue 11) -----------------------------------------------------------

class Poisoned(Counting):
    """Returns NaN (or inf) for the tiles of every `every`-th batch: a broken export, fp16 overflow."""

    def __init__(self, inner: Backend, every: int = 3, value: float = np.nan) -> None:
        super().__init__(inner)
        self.every, self.value, self.poisoned = every, value, 0

    def infer(self, tiles):
        score, amap = super().infer(tiles)
        if self.batches % self.every == 0:
            score = np.full_like(score, self.value)
            self.poisoned += len(score)
        return score, amap


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_scores_fail_the_slide(synthetic_cohort, backend, tmp_path, value):
    # issue 11.1: NaN scores made the slide "ok" with score 0 (a negative call)
    slide_path = synthetic_cohort.slides[0].path
    poisoned = Poisoned(backend, value=value)
    with pytest.raises(ModelError) as caught:
        score_slide(slide_path, poisoned, tmp_path, RunSettings(batch_size=8, progress=False))
    message = str(caught.value)
    assert f"gave {poisoned.poisoned} of {poisoned.tiles} tiles" in message and "non-finite" in message
    assert str(backend.model_path) in message
    assert not (tmp_path / slide_path.stem).exists()


def test_cohort_reports_non_finite_scores_as_failed(synthetic_cohort, backend, tmp_path):
    import csv

    from fwrd.runtime.cohort import score_cohort

    results = score_cohort([synthetic_cohort.slides[0].path], Poisoned(backend), tmp_path,
                           RunSettings(batch_size=8, progress=False), log=lambda line: None)
    assert results[0].status == "failed" and "non-finite" in results[0].error
    with open(tmp_path / "slides.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["status"] == "failed" and row["score"] == "" and "non-finite" in row["error"]


def test_resume_knows_a_replaced_slide(synthetic_cohort, backend, tmp_path):
    # issue 11.2: a slide replaced under the same name kept the old scores (or mixed old and new tiles)
    slide_a, slide_b = synthetic_cohort.slides[0].path, synthetic_cohort.slides[1].path  # same size
    settings = RunSettings(batch_size=8, workers=2, progress=False, resume=True)
    reference = score_slide(slide_b, backend, tmp_path / "ref", settings)
    work = tmp_path / "slides" / "case.svs"
    work.parent.mkdir()
    work.write_bytes(slide_a.read_bytes())
    first = score_slide(work, backend, tmp_path / "run", settings)
    work.write_bytes(slide_b.read_bytes())  # a rescan copied over it
    again = Counting(backend)
    second = score_slide(work, again, tmp_path / "run", settings)
    assert second.status == "ok" and again.tiles == reference.summary["tiles_scored"]
    assert second.summary["slide_identity"] != first.summary["slide_identity"]
    for name in ("tiles.csv", "heatmap.npy", "detections.csv"):
        assert (tmp_path / "run" / "case" / name).read_bytes() == (tmp_path / "ref" / slide_b.stem / name).read_bytes()

    # interrupted on one file, resumed on another: the journal is not the new slide's
    work.write_bytes(slide_a.read_bytes())
    with pytest.raises(KeyboardInterrupt):
        score_slide(work, Counting(backend, interrupt_after=4), tmp_path / "run2", settings)
    work.write_bytes(slide_b.read_bytes())
    resumed = Counting(backend)
    result = score_slide(work, resumed, tmp_path / "run2", settings)
    assert result.summary["tiles_resumed"] == 0 and resumed.tiles == reference.summary["tiles_scored"]
    assert (tmp_path / "run2" / "case" / "tiles.csv").read_bytes() == (tmp_path / "ref" / slide_b.stem / "tiles.csv").read_bytes()


def test_failed_rescore_leaves_the_previous_outputs_whole(synthetic_cohort, backend, tmp_path, monkeypatch):
    # issue 11.3: a re-score that failed left new tiles.csv/heatmap next to old detections/overlay
    import errno

    import fwrd.runtime.slide_job as slide_job

    slide_path = synthetic_cohort.slides[0].path
    score_slide(slide_path, backend, tmp_path, RunSettings(batch_size=8, progress=False))
    out = tmp_path / slide_path.stem
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(slide_job, "write_detections", disk_full)  # after tiles.csv and the heatmaps
    with pytest.raises(OSError, match="No space left"):
        score_slide(slide_path, backend, tmp_path, RunSettings(batch_size=8, stride=32, progress=False))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.undo()
    # the next attempt (same settings, --resume) starts from the failed attempt's journal
    done = score_slide(slide_path, backend, tmp_path, RunSettings(batch_size=8, stride=32, progress=False, resume=True))
    assert done.status == "ok" and done.summary["stride"] == 32 and done.summary["tiles_this_run"] == 0


def test_killed_between_the_swap_renames_resumes_without_scoring(synthetic_cohort, backend, tmp_path):
    slide_path = synthetic_cohort.slides[2].path
    settings = RunSettings(batch_size=8, progress=False, resume=True)
    first = score_slide(slide_path, backend, tmp_path, settings)
    final, staging = tmp_path / slide_path.stem, tmp_path / f".{slide_path.stem}.partial"
    final.rename(staging)  # as if killed after moving the old folder aside, before the new one went in
    again = Counting(backend)
    result = score_slide(slide_path, again, tmp_path, settings)
    assert result.status == "skipped" and again.tiles == 0 and result.score == first.score
    assert (final / "summary.json").is_file() and not staging.exists()


def test_summary_records_the_workers_that_ran(synthetic_cohort, backend, tmp_path):
    # issue 11.11: summary.json said 8 workers where the slide had fewer work units than that;
    # issue 26.4: never more decode threads than the CPUs this process may use
    from fwrd.runtime.settings import usable_cpus

    slide_path = synthetic_cohort.slides[2].path
    result = score_slide(slide_path, backend, tmp_path, RunSettings(workers=64, batch_size=8, progress=False))
    with open_slide(slide_path) as slide:
        from fwrd.runtime.plan import plan_slide

        units = plan_slide(slide, backend.config, RunSettings()).units
    assert units < 64 and result.summary["workers"] == min(units, usable_cpus())
    assert result.summary["settings"]["workers"] == 64


def test_sigterm_stops_decode_threads_and_keeps_the_journal(synthetic_cohort, backend, tmp_path):
    # issue 11.8: SIGTERM (Slurm, Kubernetes) must unwind like Ctrl-C
    import os
    import signal
    import threading

    from fwrd.cli.common import Terminated, sigterm_as_interrupt

    class Terminating(Counting):
        def infer(self, tiles):
            if self.batches == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().infer(tiles)

    slide_path = synthetic_cohort.slides[0].path
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        score_slide(slide_path, Terminating(backend), tmp_path, RunSettings(batch_size=8, workers=3, progress=False))
    assert not [t for t in threading.enumerate() if t.name.startswith("fwrd-decode")]
    journal = tmp_path / f".{slide_path.stem}.partial" / "tiles.csv.part"
    assert len(journal.read_text().splitlines()) - 2 >= 3 * 8
    assert signal.getsignal(signal.SIGTERM) is before


def test_progress_line_of_a_slide_finished_from_its_journal(synthetic_cohort, backend, tmp_path):
    # issue 11.11: a slide whose journal held every tile printed "0.0 tiles/s (nothing new-bound)"
    from fwrd.runtime.cohort import score_cohort
    from fwrd.slide.identity import slide_identity

    slide_path = synthetic_cohort.slides[2].path
    settings = RunSettings(batch_size=8, progress=False, resume=True, qc=False)  # a journal of x,y,score rows
    score_slide(slide_path, backend, tmp_path / "ref", settings)
    rows = (tmp_path / "ref" / slide_path.stem / "tiles.csv").read_text()
    staging = tmp_path / "run" / f".{slide_path.stem}.partial"
    staging.mkdir(parents=True)
    key = settings.score_key(backend.model_sha256, slide_identity(slide_path))
    (staging / "tiles.csv.part").write_text(f"#key={key}\n{rows}")  # killed after the last batch
    lines: list[str] = []
    results = score_cohort([slide_path], Counting(backend), tmp_path / "run", settings, log=lines.append)
    summary = results[0].summary
    assert summary["tiles_this_run"] == 0 and summary["workers"] == 0 and summary["tiles_per_s"] is None
    assert "tiles/s" not in lines[0] and "nothing new" not in lines[0]
    assert lines[0].endswith(f"{summary['tiles_scored']} tiles, all from the interrupted run's journal")
