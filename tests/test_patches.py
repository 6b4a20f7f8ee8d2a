"""Patch extraction: counts, labels, spacing, determinism, outputs, and bad input through the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fwrd.cli import main as fwrd_main
from fwrd.cli.patches import main as patches_main
from fwrd.errors import FwrdError
from fwrd.slide.annotations import contains, load_asap_xml, rasterize
from fwrd.slide.reader import open_slide
from fwrd.training.patch_sampling import allocate, spread
from fwrd.training.patches import CSV_HEADER, extract_patches


def _rows(out):
    with open(out / "patches.csv", newline="") as fh:
        reader = csv.reader(fh)
        assert tuple(next(reader)) == CSV_HEADER
        return [(s, int(x), int(y), int(lv), int(t), lab) for s, x, y, lv, t, lab in reader]


@pytest.fixture(scope="module")
def extracted(synthetic_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("patches") / "p"
    result = extract_patches([synthetic_cohort.slides_dir], out, annotations_dir=synthetic_cohort.annotations_dir,
                             n_normal=60, n_tumor=12, tile=64, level=0, seed=0)
    return result, out


def test_counts_files_and_csv(extracted):
    result, out = extracted
    assert result.counts == {"normal": 60, "tumor": 12} and result.warnings == []
    rows = _rows(out)
    assert len(rows) == 72
    for slide, x, y, level, tile, label in rows:
        path = out / label / f"{slide}_{x}_{y}.png"
        image = Image.open(path)
        assert image.size == (64, 64) and image.mode == "RGB" and (level, tile) == (0, 64)
    assert sorted(p.name for p in out.iterdir()) == ["normal", "patches.csv", "patches.json", "tumor"]
    assert len(list((out / "normal").iterdir())) == 60 and len(list((out / "tumor").iterdir())) == 12
    meta = json.loads((out / "patches.json").read_text())
    assert meta["level"] == 0 and meta["tile"] == 64 and meta["mpp"] == pytest.approx(0.243)
    assert not list(out.parent.glob(".p.*"))  # the temporary folder was renamed away


def test_spread_evenly_and_normal_slide_gives_no_tumor(extracted):
    result, _ = extracted
    assert result.per_slide == {
        "normal_001": {"normal": 20, "tumor": 0},
        "tumor_001": {"normal": 20, "tumor": 6},
        "tumor_002": {"normal": 20, "tumor": 6},
    }


def test_labels_spacing_and_pixels(extracted, synthetic_cohort):
    _, out = extracted
    rows = _rows(out)
    slides = {s.name: s for s in synthetic_cohort.slides}
    for name, made in slides.items():
        ann = load_asap_xml(made.xml) if made.xml else None
        mine = [r for r in rows if r[0] == name]
        for label in ("normal", "tumor"):
            xy = np.array([(x, y) for _, x, y, _, _, lab in mine if lab == label], dtype=float).reshape(-1, 2)
            assert (xy % 16 == 0).all()  # tile/4 lattice
            if len(xy) > 1:
                d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
                assert d[~np.eye(len(xy), dtype=bool)].min() >= 32  # none closer than tile/2
            if label == "tumor" and len(xy):
                assert contains(ann, xy + 32).all()  # the centre is tumor
            if label == "normal" and ann is not None:
                tumor = rasterize(ann, (2048, 2048), 1.0)
                assert not any(tumor[int(y) : int(y) + 64, int(x) : int(x) + 64].any() for x, y in xy)
        with open_slide(made.path) as slide:
            _, x, y, _, _, label = mine[0]
            png = np.asarray(Image.open(out / label / f"{name}_{x}_{y}.png"))
            np.testing.assert_array_equal(png, slide.read_region((x, y), 0, (64, 64)))


def test_deterministic_for_a_seed(extracted, synthetic_cohort, tmp_path):
    _, out = extracted
    kwargs = dict(annotations_dir=synthetic_cohort.annotations_dir, n_normal=60, n_tumor=12, tile=64)
    extract_patches([synthetic_cohort.slides_dir], tmp_path / "same", seed=0, **kwargs)
    assert (tmp_path / "same" / "patches.csv").read_bytes() == (out / "patches.csv").read_bytes()
    extract_patches([synthetic_cohort.slides_dir], tmp_path / "other", seed=1, **kwargs)
    assert (tmp_path / "other" / "patches.csv").read_bytes() != (out / "patches.csv").read_bytes()


def test_shortfall_is_reported_and_level_one(synthetic_cohort, tmp_path):
    tumor_only = [synthetic_cohort.slides[1].path]
    result = extract_patches(tumor_only, tmp_path / "l1", annotations_dir=synthetic_cohort.annotations_dir,
                             n_normal=5, n_tumor=10_000, tile=64, level=1, seed=0)
    assert 0 < result.counts["tumor"] < 10_000
    assert result.warnings == [f"only {result.counts['tumor']} tumor patches available (asked for 10000)"]
    rows = _rows(tmp_path / "l1")
    assert all(r[3] == 1 and r[1] % 32 == 0 and r[2] % 32 == 0 for r in rows)  # lattice 16 px at level 1
    _, x, y, _, _, label = rows[0]
    with open_slide(tumor_only[0]) as slide:
        png = np.asarray(Image.open(tmp_path / "l1" / label / f"tumor_002_{x}_{y}.png"))
        np.testing.assert_array_equal(png, slide.read_region((x, y), 1, (64, 64)))


def test_interrupted_run_leaves_nothing(synthetic_cohort, tmp_path, monkeypatch):
    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    original = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        extract_patches([synthetic_cohort.slides_dir], tmp_path / "out", annotations_dir=None, n_normal=10,
                        n_tumor=0, tile=64)
    assert list(tmp_path.iterdir()) == []


def test_allocate_and_spread():
    assert allocate([5, 100, 100], 90) == [5, 43, 42]
    assert allocate([0, 3, 100], 10) == [0, 3, 7]
    assert allocate([2, 2], 10) == [2, 2]
    assert allocate([], 10) == [] and allocate([4, 4], 0) == [0, 0]
    ok = np.ones((10, 12), bool)
    ok[0, :] = False
    kept = spread(ok, np.random.default_rng(0), limit=1000)
    assert ok[kept[:, 0], kept[:, 1]].all()
    d = np.abs(kept[:, None, :] - kept[None, :, :]).max(axis=2)
    assert d[~np.eye(len(kept), dtype=bool)].min() >= 2  # no two on neighbouring lattice points
    blocked = np.zeros_like(ok)
    for iy, ix in kept:
        blocked[max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2] = True
    assert blocked[ok].all()  # maximal: every candidate is taken or next to a taken one
    assert len(spread(ok, np.random.default_rng(0), limit=3)) == 3
    np.testing.assert_array_equal(spread(ok, np.random.default_rng(5), 7), spread(ok, np.random.default_rng(5), 7))


def test_cli_success_refusal_and_overwrite(synthetic_cohort, tmp_path):
    runner = CliRunner()
    out = tmp_path / "p"
    args = [str(synthetic_cohort.slides_dir), "--annotations", str(synthetic_cohort.annotations_dir),
            "--out", str(out), "--normal", "9", "--tumor", "3", "--tile", "64", "--no-progress"]
    first = runner.invoke(patches_main, args)
    assert first.exit_code == 0, first.output
    assert "wrote 9 normal + 3 tumor patches" in first.output
    again = runner.invoke(patches_main, args)
    assert again.exit_code != 0 and "not empty" in again.output
    forced = runner.invoke(fwrd_main, ["patches", *args[:-1], "--overwrite", "--seed", "4"])
    assert forced.exit_code == 0, forced.output
    assert len(_rows(out)) == 12
    stranger = tmp_path / "home"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("precious")
    refused = runner.invoke(patches_main, [*args[:3], "--out", str(stranger), *args[5:], "--overwrite"])
    assert refused.exit_code != 0 and "not a patch folder" in refused.output
    assert (stranger / "thesis.tex").read_text() == "precious"


@pytest.fixture()
def bad_inputs(synthetic_cohort, tmp_path):
    not_slide = tmp_path / "notes.svs"
    not_slide.write_text("hello")
    bad_xml_dir = tmp_path / "xml"
    bad_xml_dir.mkdir()
    (bad_xml_dir / "tumor_001.xml").write_text("<ASAP_Annotations><Annotations>")
    slide = str(synthetic_cohort.slides[0].path)
    ann = str(synthetic_cohort.annotations_dir)
    return {
        "missing path": ([str(tmp_path / "nope.svs"), "--annotations", ann], "no such file"),
        "not a slide": ([str(not_slide), "--annotations", ann], "not a slide OpenSlide can read"),
        "malformed xml": ([slide, "--annotations", str(bad_xml_dir)], "not valid XML"),
        "tile size": ([slide, "--annotations", ann, "--tile", "100"], "multiple of 32"),
        "missing level": ([slide, "--annotations", ann, "--level", "9"], "level 9 does not exist"),
        "tumor without annotations": ([slide], "--tumor needs --annotations"),
        "missing annotations dir": ([slide, "--annotations", str(tmp_path / "none")], "no such annotation folder"),
        "empty folder": ([str(bad_xml_dir), "--annotations", ann], "no slides in this folder"),
    }


@pytest.mark.parametrize("case", ["missing path", "not a slide", "malformed xml", "tile size", "missing level",
                                  "tumor without annotations", "missing annotations dir", "empty folder"])
def test_cli_bad_input(bad_inputs, tmp_path, case):
    extra, message = bad_inputs[case]
    out = tmp_path / "out"
    result = CliRunner().invoke(patches_main, [*extra, "--out", str(out), "--normal", "4", "--tumor", "2",
                                               "--no-progress"])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output and result.output.count("Error") == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_api_rejects_nothing_to_do(synthetic_cohort, tmp_path):
    with pytest.raises(FwrdError, match="at least one patch"):
        extract_patches([synthetic_cohort.slides_dir], tmp_path / "o", annotations_dir=None, n_normal=0, n_tumor=0)
