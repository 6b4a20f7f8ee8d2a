"""QC (fwrd.slide.qc, fwrd.runtime.qc_gate): artifacts painted on synthetic tissue and on real H&E pixels are
flagged, clean tissue is not, flagged tiles never reach a call, and a slide QC cannot vouch for says review."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fwrd.config import FWRDConfig, QCThresholds
from fwrd.errors import DataError
from fwrd.evaluation.review import review_exclusions
from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide.annotations import Annotations, rasterize
from fwrd.slide.grid import tile_grid
from fwrd.slide.qc import KINDS, judge
from fwrd.slide.qc_features import tile_features
from fwrd.slide.synthetic_render import plan_layout, render
from fwrd.slide.tissue import glass_colour, tissue_mask_from_rgb
from picture_marks import red_bands

REAL = Path(__file__).parent / "data" / "cmu1_small_region_crop.jpg"
TILE = 64


def _synthetic(size: int = 1024, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    layout = plan_layout(np.random.default_rng([seed, 0]), size, size, 1, False, 1.0, 1.6)
    tumour = rasterize(Annotations(tumor=layout.tumors, exclusions=[]), (size, size), 1.0)
    return render(np.random.default_rng([seed, 1]), layout, tumour), tumour


def _judged(rgb: np.ndarray, truth: dict[str, np.ndarray]):
    """QC as fwrd-run applies it, on the whole image as one window; per tile the painted share of each kind."""
    small = np.asarray(Image.fromarray(rgb).reduce(16))
    points = tile_grid(tissue_mask_from_rgb(small), 16, (rgb.shape[1], rgb.shape[0]), TILE, TILE)
    features = tile_features(rgb, points, TILE, glass_colour(small), QCThresholds())
    codes = judge(features, QCThresholds()).codes
    shares = {k: np.array([m[y:y + TILE, x:x + TILE].mean() for x, y in points]) for k, m in truth.items()}
    return codes, shares


def _rates(codes, shares, kinds):
    painted = np.zeros(len(codes), bool)
    for k in kinds:
        painted |= shares[k] > 0
    rates = {k: float((codes[shares[k] >= 0.5] > 0).mean()) for k in ("pen", "blur")}
    return rates, float((codes[~painted] > 0).mean()), painted


def test_artifacts_painted_on_synthetic_tissue_are_flagged_and_tissue_is_not():
    rgb, tumour = _synthetic()
    truth = paint.paint_test_card(rgb, np.random.default_rng(0))
    codes, shares = _judged(rgb, {**truth, "tumour": tumour})
    rates, clean_flagged, painted = _rates(codes, shares, tuple(truth))
    assert rates["pen"] >= 0.8 and rates["blur"] >= 0.95, rates
    assert clean_flagged == 0.0
    assert not (codes[(shares["tumour"] >= 0.5) & ~painted] > 0).any()  # tumour is tissue, not an artifact


def test_pen_and_blur_painted_on_real_he_pixels_are_flagged():
    rgb = np.array(Image.open(REAL).convert("RGB"))
    truth = paint.paint_test_card(rgb, np.random.default_rng(0))
    codes, shares = _judged(rgb, truth)
    rates, clean_flagged, _ = _rates(codes, shares, tuple(truth))
    assert rates["pen"] >= 0.9 and rates["blur"] >= 0.9, rates
    assert clean_flagged <= 0.1, clean_flagged


def test_a_uniformly_soft_scan_is_not_rejected_whole():
    rgb, _ = _synthetic()
    soft = paint.out_of_focus(rgb, (0, 0, rgb.shape[1], rgb.shape[0]), sigma=1.5)
    assert soft.all()
    codes, _ = _judged(rgb, {})
    assert not (codes == KINDS.index("blur") + 1).any()


@pytest.mark.parametrize("tint", [(0.93, 0.985, 1.0), (1.0, 0.97, 0.86)])
def test_tinted_glass_keeps_the_tissue(tint):
    rgb, _ = _synthetic()
    plain = tissue_mask_from_rgb(np.asarray(Image.fromarray(rgb).reduce(16)))
    paint.tint_glass(rgb, tint)
    tinted = tissue_mask_from_rgb(np.asarray(Image.fromarray(rgb).reduce(16)))
    assert (plain & tinted).sum() / (plain | tinted).sum() >= 0.95


def test_config_carries_the_thresholds_and_older_models_get_the_defaults():
    config = FWRDConfig(tile_size=64, qc=QCThresholds(pen_fraction=0.2))
    back = FWRDConfig.from_json(config.to_json())
    assert back.qc.pen_fraction == 0.2 and back == config
    old = json.loads(config.to_json())
    del old["qc"]
    assert FWRDConfig.from_dict(old).qc == QCThresholds()


def test_review_slides_need_an_explicit_choice():
    statuses = {"a": "ok", "b": "review"}
    with pytest.raises(DataError, match="--review include"):
        review_exclusions(statuses, None)
    assert review_exclusions(statuses, "exclude") == ["b"] and review_exclusions(statuses, "include") == []
    assert review_exclusions({"a": "ok"}, None) == []


@pytest.fixture(scope="module")
def pen_slide(tmp_path_factory):
    """A 1024 px synthetic normal slide with a wide blue pen line across its tissue."""
    from fwrd.slide.synthetic import write_rgb_slide

    rgb, _ = _synthetic()
    pen = paint.pen_line(rgb, [(60, 560), (960, 500)], paint.BLUE_INK, width=180)
    path = write_rgb_slide(tmp_path_factory.mktemp("pen") / "pen_001.svs", rgb)
    return path, pen


def _tiles(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_flagged_tiles_never_reach_a_call(pen_slide, standin_model, tmp_path):
    from fwrd.runtime.backends import open_backend
    from fwrd.runtime.settings import RunSettings
    from fwrd.runtime.slide_job import score_slide

    path, pen = pen_slide
    with open_backend(standin_model, threads=1) as backend:
        off = score_slide(path, backend, tmp_path / "off", RunSettings(progress=False, qc=False))
        on = score_slide(path, backend, tmp_path / "on", RunSettings(progress=False))
    threshold = on.summary["threshold"]
    on_pen = [r for r in _tiles(tmp_path / "on" / path.stem / "tiles.csv")
              if pen[int(r["y"]):int(r["y"]) + TILE, int(r["x"]):int(r["x"]) + TILE].mean() >= 0.5]
    assert on_pen and all(r["qc"] == "pen" for r in on_pen)
    called = sum(float(r["score"]) >= threshold for r in on_pen)  # the stand-in calls ink: QC is what stops it
    assert called >= 0.9 * len(on_pen), (called, len(on_pen))
    # what is left above the threshold is the ink's edge (a tile under half ink), touching the excluded tiles
    assert off.summary["tiles_above_threshold"] >= len(on_pen) and on.summary["tiles_above_threshold"] <= 2
    assert on.summary["qc"]["above_threshold_touching"] == on.summary["tiles_above_threshold"]
    heatmap = np.load(tmp_path / "on" / path.stem / "heatmap.npy")
    assert all(np.isnan(heatmap[int(r["y"]) // TILE, int(r["x"]) // TILE]) for r in on_pen)
    for line in (tmp_path / "on" / path.stem / "detections.csv").read_text().splitlines():
        _, x, y = (float(v) for v in line.split(","))
        assert not pen[int(y), int(x)]
    qc = on.summary["qc"]
    assert qc["kinds"]["pen"]["tiles"] >= len(on_pen) and qc["kinds"]["pen"]["area_mm2"] > 0
    assert on.status == "review" and "excluded" in on.error and on.summary["status"] == "review"
    assert off.status == "ok" and off.summary["qc"] == {"enabled": False}
    for picture in ("overlay.png", "heatmap.png"):  # the review is on the pictures too: one band more than ok's
        bands = {run: red_bands(np.asarray(Image.open(tmp_path / run / path.stem / picture).convert("RGB")))
                 for run in ("on", "off")}
        assert bands["on"] == bands["off"] + 1, (picture, bands)


def test_review_shows_in_slides_csv_and_the_console(pen_slide, standin_model, tmp_path):
    from fwrd.cli.run import command

    path, _ = pen_slide
    out = tmp_path / "run"
    result = command.main([str(path), "--model", str(standin_model), "--out", str(out), "--quiet"],
                          standalone_mode=False)
    assert result is None
    rows = {r["slide"]: r for r in csv.DictReader(open(out / "slides.csv"))}
    assert rows["pen_001"]["status"] == "review" and "QC excluded" in rows["pen_001"]["error"]
    from fwrd.cli.evaluate import command as evaluate

    reference = tmp_path / "reference.csv"
    reference.write_text("pen_001,Normal\n")
    import click

    with pytest.raises(click.ClickException, match="--review include"):
        evaluate.main(["slides", "--scores", str(out / "slides.csv"), "--reference", str(reference),
                       "--out", str(tmp_path / "eval")], standalone_mode=False)


def test_patches_skip_what_qc_flags_and_say_so(pen_slide, tmp_path):
    from fwrd.training.patches import extract_patches

    path, _ = pen_slide
    off = extract_patches([path], tmp_path / "off", annotations_dir=None, n_normal=40, n_tumor=0, tile=TILE, qc=None)
    on = extract_patches([path], tmp_path / "on", annotations_dir=None, n_normal=40, n_tumor=0, tile=TILE)
    assert on.skipped.get("pen", 0) > 0 and on.counts["normal"] == off.counts["normal"] - sum(on.skipped.values())
    assert any("QC flagged" in w for w in on.warnings)
    assert json.loads((tmp_path / "on" / "patches.json").read_text())["qc_skipped"] == on.skipped
