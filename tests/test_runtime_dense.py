"""`fwrd-run --dense` with the pooling stand-in (tests/onnx_standin.py, dense=True): the region pipeline
gives the per-tile scores where the stand-in makes them equal, the same outputs whatever the workers,
resumes, keeps its resume keys apart from per-tile scoring's, and refuses what it cannot do in one line.
Real-model checks (isolated tile, seams) are in tests/test_dense_real_model.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fwrd.cli.run import command
from fwrd.errors import ModelError
from fwrd.runtime.backends import open_backend
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.runtime.window_scores import scores_at
from fwrd.slide.reader import open_slide

NAMES = ("tiles.csv", "heatmap.npy", "detections.csv", "tumor.geojson")


class CountingRegions(Backend):
    """Wraps a dense backend, counts regions, and can simulate a kill after n of them."""

    def __init__(self, inner: Backend, interrupt_after: int | None = None) -> None:
        super().__init__(inner.config, inner.metadata, inner.precision)
        self.inner, self.interrupt_after = inner, interrupt_after
        self.name, self.device, self.region = inner.name, inner.device, inner.region
        self.model_sha256, self.model_path = inner.model_sha256, inner.model_path
        self.regions = 0

    def infer(self, tiles):
        raise AssertionError("dense scoring must not score tile batches")

    def infer_region(self, region):
        if self.interrupt_after is not None and self.regions >= self.interrupt_after:
            raise KeyboardInterrupt
        self.regions += 1
        return self.inner.infer_region(region)


@pytest.fixture(scope="module")
def dense(standin_dense):
    with open_backend(standin_dense, threads=1, dense=True, region=256) as backend:
        yield backend


@pytest.fixture(scope="module")
def tiles_backend(standin_dense):
    with open_backend(standin_dense, threads=1) as backend:
        yield backend


def _csv(path):
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, usecols=(0, 1, 2))
    return table[:, :2].astype(np.int64), table[:, 2]


def test_isolated_tile_region_is_the_tile_score(synthetic_cohort, dense):
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        tiles = np.stack([slide.read_region((x, y), 0, (64, 64)) for x, y in ((700, 900), (1000, 1000), (64, 64))])
    per_tile, _ = dense.infer(tiles)  # the graph's own score output: ONNX Runtime's Resize + ReduceMean
    isolated = [scores_at(dense.infer_region(tile), 64, np.array([[0, 0]]))[0] for tile in tiles]
    np.testing.assert_allclose(isolated, per_tile, rtol=1e-6)


@pytest.mark.parametrize("stride", [16, 32])
def test_dense_gives_the_per_tile_scores_where_they_must_agree(synthetic_cohort, dense, tiles_backend, tmp_path,
                                                               stride):
    """The stand-in pools darkness, so windows on the 16 px feature grid see exactly their tile's maps: every
    dense score must equal the per-tile one (any misplaced region, offset or window would show)."""
    slide_path = synthetic_cohort.slides[0].path
    score_slide(slide_path, tiles_backend, tmp_path / "tiles", RunSettings(stride=stride, progress=False))
    result = score_slide(slide_path, dense, tmp_path / "dense",
                         RunSettings(stride=stride, dense=True, region=256, margin=32, progress=False))
    coords, scores = _csv(tmp_path / "dense" / slide_path.stem / "tiles.csv")
    want_coords, want = _csv(tmp_path / "tiles" / slide_path.stem / "tiles.csv")
    np.testing.assert_array_equal(coords, want_coords)
    np.testing.assert_allclose(scores, want, atol=2e-7)
    summary = result.summary
    assert summary["mode"] == "dense" and summary["settings"]["dense"] is True
    info = summary["dense"]
    assert info["region_side"] == 256 and info["margin"] == 32 and info["regions"] > 1
    assert info["region_pixels"] < info["tile_pixels"] and summary["batch_size"] is None


def test_same_outputs_with_one_and_many_workers(synthetic_cohort, dense, tmp_path):
    slide_path = synthetic_cohort.slides[1].path
    files = []
    for workers in (1, 4):
        settings = RunSettings(stride=16, dense=True, region=256, margin=32, workers=workers, progress=False)
        score_slide(slide_path, dense, tmp_path / str(workers), settings)
        files.append([(tmp_path / str(workers) / slide_path.stem / name).read_bytes() for name in NAMES])
    assert files[0] == files[1]


def test_dense_resume_continues_and_keys_differ_from_tiles(synthetic_cohort, dense, tiles_backend, tmp_path):
    slide_path = synthetic_cohort.slides[0].path
    settings = RunSettings(stride=32, dense=True, region=256, margin=32, resume=True, progress=False)
    reference = score_slide(slide_path, dense, tmp_path / "ref", settings)
    regions = reference.summary["dense"]["regions"]

    killed = CountingRegions(dense, interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        score_slide(slide_path, killed, tmp_path / "run", settings)
    staging = tmp_path / "run" / f".{slide_path.stem}.partial"
    assert {p.name for p in staging.iterdir()} == {"tiles.csv.part"}

    resumed = CountingRegions(dense)
    result = score_slide(slide_path, resumed, tmp_path / "run", settings)
    assert result.status == "ok" and resumed.regions == regions - 4 and result.summary["tiles_resumed"] > 0
    for name in NAMES:
        assert (tmp_path / "run" / slide_path.stem / name).read_bytes() == \
            (tmp_path / "ref" / slide_path.stem / name).read_bytes()

    again = CountingRegions(dense)
    assert score_slide(slide_path, again, tmp_path / "run", settings).status == "skipped" and again.regions == 0
    # per-tile scoring is another run: its --resume rescores; dense with another margin than the model was
    # validated at is refused (issue 21.1), and its keys differ too
    tiles = score_slide(slide_path, tiles_backend, tmp_path / "run", RunSettings(stride=32, resume=True, progress=False))
    assert tiles.status == "ok" and tiles.summary["mode"] == "tiles"
    other = CountingRegions(dense)
    wider = RunSettings(stride=32, dense=True, region=256, margin=64, resume=True, progress=False)
    with pytest.raises(ModelError, match="validated for dense scoring with a 32 px margin"):
        score_slide(slide_path, other, tmp_path / "run", wider)
    assert other.regions == 0
    keys = {RunSettings(stride=32).score_key("m"), RunSettings(stride=32, dense=True, region=256, margin=32).score_key("m"),
            RunSettings(stride=32, dense=True, region=256, margin=64).score_key("m"),
            RunSettings(stride=32, dense=True, region=320, margin=32).score_key("m")}
    assert len(keys) == 4


def test_backend_not_opened_for_regions(synthetic_cohort, tiles_backend, tmp_path):
    with pytest.raises(ModelError, match="not opened for dense scoring"):
        score_slide(synthetic_cohort.slides[0].path, tiles_backend, tmp_path, RunSettings(dense=True, progress=False))


def _run(*args):
    return CliRunner().invoke(command, [str(a) for a in args] + ["--quiet", "--threads", "1"])


@pytest.mark.parametrize("args, message", [
    (["--region", "1000"], "--region must be a positive multiple of 32 pixels, got 1000"),
    (["--dense", "--margin", "40"], "--margin must be a non-negative multiple of 32 pixels, got 40"),
    (["--region", "512"], "--region sets how --dense scores a slide; give --dense too"),
])
def test_bad_dense_options_are_one_line(synthetic_cohort, standin_dense, tmp_path, args, message):
    result = _run(synthetic_cohort.slides[2].path, "--model", standin_dense, "--out", tmp_path / "out", *args)
    assert result.exit_code != 0 and message in result.output and result.output.count("Error:") == 1
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_model_that_cannot_score_regions_is_one_line(synthetic_cohort, standin_model, tmp_path):
    result = _run(synthetic_cohort.slides[2].path, "--model", standin_model, "--out", tmp_path / "out", "--dense")
    assert result.exit_code != 0 and result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert "standin.onnx cannot score regions (exported before dense scoring" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_dense_run_records_the_mode(synthetic_cohort, standin_dense, tmp_path):
    slide = synthetic_cohort.slides[2].path
    result = _run(slide, "--model", standin_dense, "--out", tmp_path / "out", "--dense", "--stride", "32",
                  "--region", "320", "--margin", "32")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / slide.stem / "summary.json").read_text())
    assert summary["mode"] == "dense" and summary["dense"]["region_side"] == 320
    assert summary["settings"]["region"] == 320 and summary["settings"]["margin"] == 32
    assert "note: dense scoring validated with a 32 px margin, regions up to 256 px" in result.output
    given = _run(slide, "--model", standin_dense, "--out", tmp_path / "given", "--dense", "--stride", "32",
                 "--region", "320", "--threshold", "0.4")  # no --margin: the validated one
    assert given.exit_code == 0 and "note: dense scoring validated" not in given.output
    assert json.loads((tmp_path / "given" / slide.stem / "summary.json").read_text())["dense"]["margin"] == 32
    result = _run(slide, "--model", standin_dense, "--out", tmp_path / "small", "--dense", "--region", "96")
    assert result.exit_code != 0 and result.output.count("Error:") == 1
    assert "--region 96 is too small for 64 px tiles with a 32 px margin: use at least" in result.output
    assert not (tmp_path / "small").exists()  # refused before any slide
