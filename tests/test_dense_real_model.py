"""Dense scoring with the model the demo trains (tests/model_fixtures.py) and its exported graphs: the
isolated-tile score is the per-tile score on every backend, and with the default margin two region grids
give one window the same score within the stated tolerance (no seams), where no margin would not."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.runtime.backends import open_backend
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.regions import SEAM_TOLERANCE, default_margin, plan_regions
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.window_scores import scores_at
from fwrd.slide.reader import open_slide
from fwrd.slide.tile_reader import open_tile_reader

pytestmark = pytest.mark.slow
ORIGIN = np.array([[0, 0]])


def _tissue_tiles(slide_path, n=4):
    with open_slide(slide_path) as slide:
        plan = plan_slide(slide, _config(), RunSettings(stride=64))
        picks = plan.points[np.linspace(0, len(plan.points) - 1, n).astype(int)]
        return np.stack([slide.read_region((int(x), int(y)), 0, (64, 64)) for x, y in picks])


def _config():
    from fwrd.config import FWRDConfig

    return FWRDConfig(tile_size=64, mpp=0.243)


@pytest.mark.parametrize("fixture, rtol", [("exported_fp32", 1e-5), ("exported_fp16", 1e-5)])
def test_isolated_tile_region_equals_the_per_tile_score(request, synthetic_cohort, fixture, rtol):
    graph = request.getfixturevalue(fixture)[0].onnx
    tiles = _tissue_tiles(synthetic_cohort.slides[0].path)
    with open_backend(graph, threads=1, dense=True) as backend:
        per_tile, _ = backend.infer(tiles)
        isolated = [scores_at(backend.infer_region(tile), 64, ORIGIN)[0] for tile in tiles]
    np.testing.assert_allclose(isolated, per_tile, rtol=rtol)


def test_torch_backend_regions_equal_the_graphs(trained, exported_fp32, synthetic_cohort):
    tiles = _tissue_tiles(synthetic_cohort.slides[0].path, n=2)
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        region = slide.read_region((640, 704), 0, (160, 224))  # 224 wide, 160 high
    with open_backend(trained[0], "torch", threads=1, dense=True) as torch_backend, \
            open_backend(exported_fp32[0].onnx, threads=1, dense=True) as onnx_backend:
        per_tile, _ = torch_backend.infer(tiles)
        isolated = [scores_at(torch_backend.infer_region(tile), 64, ORIGIN)[0] for tile in tiles]
        np.testing.assert_allclose(isolated, per_tile, rtol=1e-5)
        for got, want in zip(torch_backend.infer_region(region), onnx_backend.infer_region(region)):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _dense(backend, reader, plan, side, margin):
    regions = plan_regions(plan, side, margin)
    scores = {}
    for r in range(regions.regions):
        (x, y), (w, h) = regions.origins[r], regions.sizes[r]
        maps = backend.infer_region(reader.read(int(x), int(y), int(w), int(h)))
        a, b = regions.region_starts[r], regions.region_starts[r + 1]
        for point, score in zip(regions.points[a:b], scores_at(maps, 64, regions.offsets[a:b])):
            scores[tuple(point)] = score
    return regions.regions, np.array([scores[k] for k in sorted(scores)])


def test_no_seams_with_the_default_margin(exported_fp32, synthetic_cohort):
    """One region around a patch of tissue vs the same windows split over several regions: with the default
    margin their scores agree within SEAM_TOLERANCE; with no margin they do not (so the test can fail)."""
    path = synthetic_cohort.slides[0].path
    with open_slide(path) as slide:
        plan = plan_slide(slide, _config(), RunSettings(stride=16))
    centre = np.median(plan.points, axis=0)
    patch = plan.without(~np.all(np.abs(plan.points - centre) <= 96, axis=1))
    reader = open_tile_reader(path, 0)
    with open_backend(exported_fp32[0].onnx, dense=True, region=4096) as backend:
        one, whole = _dense(backend, reader, patch, 1024, default_margin(64))
        many, split = _dense(backend, reader, patch, 448, default_margin(64))
        _, whole_bare = _dense(backend, reader, patch, 1024, 0)
        _, split_bare = _dense(backend, reader, patch, 192, 0)
    reader.close()
    assert one == 1 and many >= 4 and len(whole) == len(patch.points) >= 100
    assert np.abs(whole - split).max() <= SEAM_TOLERANCE
    assert np.abs(whole_bare - split_bare).max() > 10 * SEAM_TOLERANCE


def test_int8_is_refused_for_dense_in_one_line(exported_int8, synthetic_cohort, tmp_path):
    from click.testing import CliRunner

    from fwrd.cli.run import command

    result = CliRunner().invoke(command, [str(synthetic_cohort.slides[2].path), "--model", str(exported_int8[0].onnx),
                                          "--out", str(tmp_path / "out"), "--dense", "--quiet"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip() == (f"Error: {exported_int8[0].onnx.name} is int8: --dense runs fp32 and fp16 models "
                                     "(the int8 calibration and accuracy gate cover tiles only); use the fp32 or fp16 "
                                     "export")
    assert not (tmp_path / "out").exists()
    assert exported_int8[0].regions is None  # the int8 export is not region-checked either
