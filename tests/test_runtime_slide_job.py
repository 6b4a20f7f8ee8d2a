"""One slide end to end with the stand-in model: correctness, alignment, outputs, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fwrd.errors import SlideError
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
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return table[:, :2].astype(np.int64), table[:, 2].astype(np.float32)


@pytest.mark.parametrize("workers", [1, 3])
def test_every_tile_equals_openslide_read_run_alone(synthetic_cohort, backend, tmp_path, workers):
    slide_path = synthetic_cohort.slides[0].path
    result = score_slide(slide_path, backend, tmp_path, RunSettings(batch_size=8, workers=workers, progress=False))
    out = tmp_path / slide_path.stem
    assert result.status == "ok" and result.out_dir == out
    assert {p.name for p in out.iterdir()} == OUTPUTS  # and no journal or temp file left over
    assert (out / "tiles.csv").read_text().splitlines()[0] == "x,y,score"
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

    # interrupted after 5 batches: a journal, no summary, nothing that looks complete
    killed = Counting(backend, interrupt_after=5)
    with pytest.raises(KeyboardInterrupt):
        score_slide(slide_path, killed, tmp_path / "run", settings)
    out = tmp_path / "run" / slide_path.stem
    assert not (out / "summary.json").exists() and not (out / "tiles.csv").exists()
    journaled = len((out / "tiles.csv.part").read_text().splitlines()) - 2
    assert journaled >= 5 * 8 - 8  # at least the batches scored before the kill

    resumed = Counting(backend)
    result = score_slide(slide_path, resumed, tmp_path / "run", settings)
    assert result.status == "ok" and resumed.tiles == total - journaled
    assert result.summary["tiles_resumed"] == journaled
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
