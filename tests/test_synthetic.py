"""Synthetic slides: formats OpenSlide reads, determinism, texture, cohort layout, `fwrd synth`."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from fwrd.cli import main as fwrd_main
from fwrd.errors import FwrdError
from fwrd.slide.annotations import load_asap_xml, rasterize
from fwrd.slide.reader import open_slide
from fwrd.slide.synthetic import MIN_LEVEL_SIDE, level_sizes, make_synthetic_slide
from fwrd.slide.synthetic_render import plan_layout


def test_svs_structure(synthetic_cohort):
    with tifffile.TiffFile(synthetic_cohort.slides[0].path) as tif:
        pages = list(tif.pages)
        assert pages[0].description.startswith("Aperio Image Library")
        assert "|MPP = 0.243" in pages[0].description
        tiled = [p for p in pages if p.is_tiled]
        assert [p.shape[:2] for p in tiled] == [(2048, 2048), (1024, 1024), (512, 512), (256, 256)]
        assert all(p.compression == 7 and p.tilewidth == 256 for p in tiled)  # JPEG, 256 px tiles
        assert not pages[1].is_tiled  # Aperio's thumbnail
    import openslide

    with openslide.OpenSlide(str(synthetic_cohort.slides[0].path)) as osr:
        assert "thumbnail" in osr.associated_images


def test_tif_structure(synthetic_tif):
    with tifffile.TiffFile(synthetic_tif.path) as tif:
        assert tif.is_bigtiff
        page = tif.pages[0]
        assert page.is_tiled and page.compression == 7 and page.tilewidth == 128
        assert page.tags["ResolutionUnit"].value == 3  # centimetre
        x_res = page.tags["XResolution"].value
        assert x_res[0] / x_res[1] == pytest.approx(1e4 / 0.243, rel=1e-6)
        assert max(tif.pages[-1].shape[:2]) <= MIN_LEVEL_SIDE


def test_level_sizes():
    assert level_sizes(4096, 4096) == [(4096, 4096), (2048, 2048), (1024, 1024), (512, 512), (256, 256)]
    assert level_sizes(1000, 777) == [(1000, 777), (500, 388), (250, 194)]
    assert level_sizes(300, 200) == [(300, 200)]


def test_deterministic_per_seed(tmp_path):
    def files(folder, seed):
        made = make_synthetic_slide(folder / "tumor_009.svs", width=640, height=512, seed=seed, exclusion=True)
        return [p.read_bytes() for p in (made.path, made.xml, made.mask)]

    a, b, c = files(tmp_path / "a", 5), files(tmp_path / "b", 5), files(tmp_path / "c", 6)
    assert a == b
    assert all(x != y for x, y in zip(a, c))


def test_tissue_scale_grows_the_tissue_and_one_keeps_the_old_layout():
    """--tissue-scale makes large sections (the dense benchmarks' slides); 1.0 draws exactly what it drew before."""
    def layout(scale=None):
        kwargs = {} if scale is None else {"tissue_scale": scale}
        return plan_layout(np.random.default_rng(7), 4096, 4096, 2, True, **kwargs)

    default, one, large = layout(), layout(1.0), layout(2.0)
    np.testing.assert_array_equal(default.tissue_field, one.tissue_field)
    np.testing.assert_array_equal(default.tumors[0], one.tumors[0])
    assert (large.tissue_field > 0).mean() > 2 * (default.tissue_field > 0).mean()
    bad = CliRunner().invoke(fwrd_main, ["synth", "x", "--tissue-scale", "0"])
    assert bad.exit_code != 0 and "--tissue-scale" in bad.output and "Traceback" not in bad.output


def test_tumor_texture_differs(synthetic_cohort):
    tumor = synthetic_cohort.slides[0]
    ann = load_asap_xml(tumor.xml)
    with open_slide(tumor.path) as slide:
        rgb = slide.read_level(1).astype(np.float32)
    in_tumor = rasterize(ann, rgb.shape[:2], 2.0)
    tissue = rgb.min(axis=2) < 225  # everything that is not glass at this level
    normal = tissue & ~in_tumor
    assert in_tumor.sum() > 1000 and normal.sum() > in_tumor.sum()
    dark = rgb[..., 1] < 100  # nucleus-dark green channel
    assert dark[in_tumor].mean() > 0.1
    assert dark[normal].mean() < 0.01
    assert rgb[in_tumor].mean() < rgb[normal].mean() - 30


def test_cohort_layout(synthetic_cohort):
    c = synthetic_cohort
    assert [s.name for s in c.slides] == ["tumor_001", "tumor_002", "normal_001"]
    assert c.reference_csv.read_text() == "normal_001,Normal\ntumor_001,Tumor\ntumor_002,Tumor\n"
    for s in c.tumor_slides:
        assert s.xml == c.annotations_dir / f"{s.name}.xml" and s.xml.is_file()
        assert s.mask == c.masks_dir / f"{s.name}_Mask.tif" and s.mask.is_file()
        assert s.path.parent == c.slides_dir
    normal = c.normal_slides[0]
    assert normal.xml is None and normal.mask is None and not normal.tumor
    assert sorted(p.name for p in c.root.iterdir()) == ["annotations", "masks", "reference.csv", "slides"]
    assert not [p for p in c.root.rglob(".*")]  # no temporary files left


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "png"}, "unknown slide format"),
        ({"file_tile": 100}, "multiple of 16"),
        ({"width": 32}, "at least 64"),
        ({"mpp": 0.0}, "positive"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"width": 256, "height": 256} | kwargs
    with pytest.raises(FwrdError, match=message):
        make_synthetic_slide(tmp_path / "x.svs", **args)


def test_synth_cli(tmp_path):
    runner = CliRunner()
    out = tmp_path / "data"
    result = runner.invoke(fwrd_main, ["synth", str(out), "--tumor", "1", "--normal", "1", "--width", "512",
                                       "--height", "384", "--format", "tif", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "slides").iterdir()) == ["normal_001.tif", "tumor_001.tif"]
    with open_slide(out / "slides" / "tumor_001.tif") as slide:
        assert slide.vendor == "generic-tiff" and slide.dimensions == (512, 384)
    again = runner.invoke(fwrd_main, ["synth", str(out), "--width", "512", "--height", "384"])
    assert again.exit_code != 0 and "not empty" in again.output and "Traceback" not in again.output
    forced = runner.invoke(fwrd_main, ["synth", str(out), "--tumor", "1", "--normal", "0", "--width", "256",
                                       "--height", "256", "--overwrite"])
    assert forced.exit_code == 0, forced.output
    bad = runner.invoke(fwrd_main, ["synth", str(tmp_path / "x"), "--format", "ndpi"])
    assert bad.exit_code != 0
