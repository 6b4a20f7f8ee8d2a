"""fwrd-run with the real exported FW-RD graph: every tile's score equals the same region read with
OpenSlide and run alone through the same model, and the heatmap finds the annotated tumor."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.runtime.backends import open_backend
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.slide.annotations import contains, load_asap_xml
from fwrd.slide.reader import open_slide

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scored(exported_fp32, synthetic_cohort, tmp_path_factory):
    backend = open_backend(exported_fp32[0].onnx, backend="onnxruntime", batch_size=8)
    slide = synthetic_cohort.tumor_slides[0]
    out = tmp_path_factory.mktemp("real_run")
    result = score_slide(slide.path, backend, out, RunSettings(batch_size=8, workers=2, progress=False))
    table = np.loadtxt(out / slide.path.stem / "tiles.csv", delimiter=",", skiprows=1, ndmin=2, usecols=(0, 1, 2))
    return backend, slide, result, table


def test_tile_scores_equal_openslide_read_run_alone(scored):
    backend, slide, result, table = scored
    assert result.status == "ok"
    rng = np.random.default_rng(0)
    picks = rng.choice(len(table), size=min(12, len(table)), replace=False)
    with open_slide(slide.path) as handle:
        tiles = np.stack([handle.read_region((int(table[i, 0]), int(table[i, 1])), 0, (64, 64)) for i in picks])
    alone = np.array([backend.infer(tile[None])[0][0] for tile in tiles])
    np.testing.assert_allclose(table[picks, 2], alone, rtol=1e-4, atol=1e-5)


def test_tumor_tiles_score_higher_than_normal_tissue(scored):
    _, slide, _, table = scored
    centres = table[:, :2] + 32
    inside = contains(load_asap_xml(slide.xml), centres)
    assert inside.any() and (~inside).any()
    assert np.median(table[inside, 2]) > np.percentile(table[~inside, 2], 90)


def test_heatmap_cells_line_up_with_tiles(scored, synthetic_cohort):
    _, slide, result, table = scored
    heatmap = np.load(result.out_dir / "heatmap.npy")
    for x, y, score in table[:50]:
        assert heatmap[int(y) // 64, int(x) // 64] == pytest.approx(score, rel=1e-6)
    assert np.isnan(heatmap).sum() == heatmap.size - len(table)
