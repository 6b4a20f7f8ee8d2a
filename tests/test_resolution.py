"""Resolution-aware reading (fwrd.slide.resample): a 20x model on a 40x Aperio x4 pyramid, the same pixels at
training and at run time, refusal to upsample, fwrd-patches --mpp, dense regions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fwrd.config import FWRDConfig
from fwrd.errors import FwrdError, SlideError
from fwrd.runtime.decode import DecodeWorkers
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.settings import RunSettings
from fwrd.slide.reader import open_slide
from fwrd.slide.resample import choose_reading, magnification, read_tile, shrink, source_window
from fwrd.slide.synthetic import make_synthetic_slide

MODEL_20X = FWRDConfig(tile_size=64, mpp=0.5, threshold=0.35)


@pytest.fixture(scope="module")
def svs_40x(tmp_path_factory):
    """A 40x Aperio-like slide (0.25 um/px) with Aperio's x4 pyramid: levels at 0.25, 1.0 um/px."""
    folder = tmp_path_factory.mktemp("svs40")
    return make_synthetic_slide(folder / "aperio_40x.svs", width=1536, height=1536, mpp=0.25, pyramid="x4",
                                seed=11)


@pytest.fixture(scope="module")
def standin_20x(tmp_path_factory):
    from onnx_standin import build_standin

    folder = tmp_path_factory.mktemp("standin20")
    return build_standin(folder / "standin_20x.onnx", MODEL_20X)


@pytest.fixture(scope="module")
def standin_20x_dense(tmp_path_factory):
    from dataclasses import replace

    from onnx_standin import STANDIN_RECORD, build_standin

    folder = tmp_path_factory.mktemp("standin20d")
    return build_standin(folder / "standin_20x_dense.onnx", replace(MODEL_20X, dense_validation=STANDIN_RECORD),
                         dense=True)


def test_reading_a_20x_model_from_a_40x_x4_pyramid(svs_40x):
    with open_slide(svs_40x.path) as slide:
        assert slide.level_downsamples == [1.0, 4.0]  # 0.25 and 1.0 um/px: nothing within 10 % of 0.5
        reading = choose_reading(slide, 64, 0.5)
        assert (reading.level, reading.source, reading.resampled) == (0, 128, True)
        assert reading.mpp == pytest.approx(0.5) and reading.level0(reading.source) == 128
        # a level within 10 % is read as it is: no resampling on the hot path
        within = choose_reading(slide, 64, 0.26)
        assert (within.level, within.source, within.resampled) == (0, 64, False)
        assert choose_reading(slide, 64, 1.05).source == 64  # level 1 (1.0 um/px), as it is
        # between levels: the coarsest finer level, shrunk by the exact ratio in whole level pixels
        between = choose_reading(slide, 64, 2.0)
        assert (between.level, between.source) == (1, 128) and between.level0(between.source) == 512
        odd = choose_reading(slide, 256, 0.499)  # a real 20x slide's 0.499: 510.98 -> 511 level pixels
        assert odd.source == 511 and odd.mpp == pytest.approx(0.499, rel=2e-3)


def test_upsampling_is_refused_in_one_line(svs_40x):
    with open_slide(svs_40x.path) as slide:
        with pytest.raises(SlideError) as err:
            choose_reading(slide, 64, 0.1)
    message = str(err.value)
    assert "\n" not in message
    assert "levels are 0.25, 1 um/px" in message and "0.1 um/px" in message and "100x" in message
    assert "never enlarges" in message and "fwrd-patches --mpp" in message and "--mpp" in message
    assert magnification(0.243) == "40x" and magnification(0.499) == "20x" and magnification(0.33) == "about 30x"


def test_decode_workers_give_the_pixels_training_reads(svs_40x):
    """A tile cut out of a work unit's window and shrunk equals the same tile read alone (fwrd-patches)."""
    with open_slide(svs_40x.path) as slide:
        plan = plan_slide(slide, MODEL_20X, RunSettings(stride=32))
        assert plan.source == 128 and plan.geometry.tile == 128 and plan.geometry.stride == 64
        with DecodeWorkers(plan, svs_40x.path, batch_size=8, workers=2) as decode:
            got = {}
            for batch in decode.batches():
                for tile, (x, y) in zip(batch.tiles[:batch.count], batch.coords[:batch.count]):
                    got[int(x), int(y)] = tile.copy()
                decode.release(batch)
            resample_seconds = sum(decode.resample_seconds)
        assert len(got) == plan.grid_total and resample_seconds > 0
        for (x, y) in list(got)[:: max(1, len(got) // 12)]:
            np.testing.assert_array_equal(got[x, y], read_tile(slide, plan.reading, x, y))
            footprint = slide.read_region((x, y), 0, (128, 128)).astype(np.float64)
            box = footprint.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))  # the area average it stands for
            assert np.abs(got[x, y] - box).max() <= 1.0


def test_shrink_is_an_area_average():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)
    exact = pixels.astype(np.float64).reshape(30, 3, 30, 3, 3).mean(axis=(1, 3))
    assert np.abs(shrink(pixels, 30, 30).astype(np.float64) - exact).max() <= 1.0  # whole factor: reduce
    odd = shrink(pixels, 40, 40)  # 2.25: BOX resize
    assert odd.shape == (40, 40, 3) and odd.dtype == np.uint8
    # a window landing between pixels: the part inside the box, nothing beyond it
    src = source_window(x0=3, y0=0, width=10, height=10, read_downsample=1.0, ratio=2.5)
    assert (src.x, src.y, src.width, src.height) == (3, 0, 25, 25) and src.box == (0.0, 0.0, 25.0, 25.0)
    src = source_window(x0=6, y0=6, width=4, height=4, read_downsample=4.0, ratio=1.5)
    assert (src.x, src.width) == (4, 7) and src.box == pytest.approx((0.5, 0.5, 6.5, 6.5))


def test_fwrd_run_scores_a_40x_slide_with_a_20x_model(svs_40x, standin_20x, tmp_path):
    from fwrd.cli.run import command

    result = CliRunner().invoke(command, [str(svs_40x.path), "--model", str(standin_20x), "--out", str(tmp_path / "out"),
                                          "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "aperio_40x" / "summary.json").read_text())
    assert summary["level"] == 0 and summary["tile_level0"] == 128 and summary["stride_level0"] == 128
    assert summary["reading"] == {"level": 0, "model_mpp": 0.5, "resampled": True, "source_tile": 128,
                                  "resampling": "Pillow BOX (area average)"}
    assert summary["seconds"]["resample"] > 0 and summary["mpp"] == 0.25
    # the stand-in scores mean darkness: the tiles it saw are the footprints averaged down
    with open_slide(svs_40x.path) as slide:
        x, y = (int(v) for v in np.loadtxt(tmp_path / "out" / "aperio_40x" / "tiles.csv", delimiter=",",
                                            skiprows=1, max_rows=1, usecols=(0, 1))[:2])
        tile = read_tile(slide, choose_reading(slide, 64, 0.5), x, y)
    first = np.loadtxt(tmp_path / "out" / "aperio_40x" / "tiles.csv", delimiter=",", skiprows=1, max_rows=1,
                       usecols=(0, 1, 2))
    assert first[2] == pytest.approx(1 - tile.mean() / 255, abs=1e-5)


def test_dense_regions_read_at_the_model_resolution(svs_40x, standin_20x_dense, tmp_path):
    """Dense regions are shrunk whole: on the stand-in (an average pool, no border effects; the same graph
    both ways) their tile scores equal per-tile scoring's up to the rounding of the two box averages (one
    grey level: BOX resize of the region, `reduce` of each tile)."""
    from fwrd.runtime.backends import open_backend
    from fwrd.runtime.slide_job import score_slide

    settings = RunSettings(stride=32, progress=False)
    with open_backend(standin_20x_dense) as backend:
        tiles = score_slide(svs_40x.path, backend, tmp_path / "tiles", settings)
    with open_backend(standin_20x_dense, dense=True, region=512) as backend:
        dense = score_slide(svs_40x.path, backend, tmp_path / "dense", RunSettings(stride=32, progress=False,
                                                                                     dense=True))
    assert dense.summary["mode"] == "dense" and dense.summary["reading"]["resampled"]
    a = np.load(tmp_path / "tiles" / "aperio_40x" / "heatmap.npy")
    b = np.load(tmp_path / "dense" / "aperio_40x" / "heatmap.npy")
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1.0 / 255 and tiles.summary["tiles_scored"] == dense.summary["tiles_scored"]


def test_fwrd_patches_at_a_resolution(svs_40x, tmp_path):
    """`fwrd-patches --mpp 0.5` on the 40x slide writes the pixels the decode workers give a 20x model."""
    from fwrd.cli.patches import command

    out = tmp_path / "patches"
    result = CliRunner().invoke(command, [str(svs_40x.path), "--out", str(out), "--normal", "6", "--tile", "64",
                                          "--mpp", "0.5", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "0.5 um/px" in result.output
    meta = json.loads((out / "patches.json").read_text())
    assert meta["mpp"] == 0.5 and meta["slides"]["aperio_40x"]["source_tile"] == 128
    with open_slide(svs_40x.path) as slide:
        reading = choose_reading(slide, 64, 0.5)
        for png in sorted((out / "normal").glob("*.png")):
            x, y = (int(v) for v in png.stem.split("_")[-2:])
            np.testing.assert_array_equal(np.asarray(Image.open(png).convert("RGB")), read_tile(slide, reading, x, y))
    clash = CliRunner().invoke(command, [str(svs_40x.path), "--out", str(tmp_path / "p2"), "--normal", "2",
                                         "--mpp", "0.5", "--level", "1"])
    assert clash.exit_code != 0 and "--level" in clash.output and "--mpp" in clash.output
    upsample = CliRunner().invoke(command, [str(svs_40x.path), "--out", str(tmp_path / "p3"), "--normal", "2",
                                            "--mpp", "0.1"])
    assert upsample.exit_code != 0 and "never enlarges" in upsample.output and "Traceback" not in upsample.output


def test_patch_context_at_a_resolution(svs_40x):
    with open_slide(svs_40x.path) as slide:
        reading = choose_reading(slide, 64, 0.5)
        with_context = read_tile(slide, reading, 512, 512, context=32)
        alone = read_tile(slide, reading, 512, 512)
    assert with_context.shape == (128, 128, 3)
    np.testing.assert_array_equal(with_context[32:96, 32:96], alone)  # whole factor: the tile is its core


def test_reading_needs_a_resolution(tmp_path):
    bare = make_synthetic_slide(tmp_path / "bare.svs", width=512, height=512, mpp=None, seed=2).path
    with open_slide(bare) as slide:
        with pytest.raises(SlideError, match="records no microns per pixel"):
            choose_reading(slide, 64, 0.5)
        with pytest.raises(FwrdError, match="positive"):
            choose_reading(slide, 64, -1.0)


def test_naive_loop_reads_what_the_runtime_reads(svs_40x):
    """fwrd-bench's naive baseline shrinks footprints as the decode workers do (the same read_tile)."""
    from fwrd.benchmark.naive import TileScorer, naive_sample

    seen = []
    scorer = TileScorer(MODEL_20X, lambda x: seen.append(x.shape) or 0.0, "records shapes")
    with open_slide(svs_40x.path) as slide:
        plan = plan_slide(slide, MODEL_20X, RunSettings())
    sample = naive_sample(svs_40x.path, plan.points[:3], plan.reading, scorer, seconds=0.01, warmup=1)
    assert sample.tiles >= 1 and set(seen) == {(1, 3, 64, 64)}
