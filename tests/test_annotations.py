"""ASAP XML: groups, holes, bad files; rasterize and contains agree; masks equal rasterize(xml)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fwrd.errors import AnnotationError, InputNotFound
from fwrd.slide.annotations import Annotations, contains, find_annotation, load_asap_xml, rasterize


def _xml(*annotations: tuple[str, list[tuple[float, float]]]) -> str:
    body = ""
    for i, (group, points) in enumerate(annotations):
        coords = "".join(
            f'<Coordinate Order="{k}" X="{x}" Y="{y}" />' for k, (x, y) in reversed(list(enumerate(points)))
        )
        body += f'<Annotation Name="A{i}" Type="Polygon" PartOfGroup="{group}"><Coordinates>{coords}</Coordinates></Annotation>'
    return f'<?xml version="1.0"?><ASAP_Annotations><Annotations>{body}</Annotations></ASAP_Annotations>'


SQUARE = [(10, 10), (50, 10), (50, 50), (10, 50)]
HOLE = [(20, 20), (30, 20), (30, 30), (20, 30)]


def test_groups_holes_and_order(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(_xml(
        ("_0", SQUARE), ("_1", [(100, 0), (120, 0), (110, 20)]), ("TUMOR", [(0, 100), (5, 100), (5, 105)]),
        ("_2", HOLE), ("Exclusion", [(60, 60), (61, 60), (61, 61)]), ("None", SQUARE), ("_0", [(1, 1), (2, 2)]),
    ))
    ann = load_asap_xml(path)
    assert len(ann.tumor) == 3 and len(ann.exclusions) == 2  # "None" group and the 2-point line ignored
    np.testing.assert_array_equal(ann.tumor[0], np.array(SQUARE, float))  # sorted by Order
    assert ann.tumor[0].dtype == np.float64 and ann.tumor[0].shape == (4, 2)


def test_decimal_comma_and_empty_file(tmp_path):
    path = tmp_path / "comma.xml"
    path.write_text(_xml(("_0", [("1,5", "2,5"), (10, 2), (10, 10)])))
    assert load_asap_xml(path).tumor[0][0].tolist() == [1.5, 2.5]
    empty = tmp_path / "empty.xml"
    empty.write_text("<ASAP_Annotations><Annotations /></ASAP_Annotations>")
    ann = load_asap_xml(empty)
    assert not ann and ann.tumor == [] and ann.exclusions == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("<ASAP_Annotations><Annotations>", "not valid XML"),
        ("not xml at all", "not valid XML"),
        ("<Other />", "not an ASAP annotation file"),
        (_xml(("_0", [("x", 1), (2, 2), (3, 3)])), "is not a number"),
    ],
)
def test_malformed(tmp_path, text, message):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as info:
        load_asap_xml(path)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFound):
        load_asap_xml(tmp_path / "none.xml")


def test_rasterize_square_with_hole():
    ann = Annotations(tumor=[np.array(SQUARE, float)], exclusions=[np.array(HOLE, float)])
    mask = rasterize(ann, (60, 60), 1.0)
    expected = np.zeros((60, 60), bool)
    expected[10:50, 10:50] = True  # pixel centres 10.5 .. 49.5
    expected[20:30, 20:30] = False
    np.testing.assert_array_equal(mask, expected)
    # downsample 8: pixel centres at 4, 12, 20, ...; the square holds centres 12..44, the hole 20 and
    # 28 (a centre on a left or top edge is inside, on a right or bottom edge outside)
    expected = np.zeros((8, 8), bool)
    expected[1:6, 1:6] = True
    expected[2:4, 2:4] = False
    np.testing.assert_array_equal(rasterize(ann, (8, 8), 8.0), expected)
    assert contains(ann, np.array([[10.0, 10.0], [50.0, 30.0], [20.0, 25.0], [30.0, 25.0]])).tolist() == [
        True, False, False, True]


def test_contains_agrees_with_rasterize():
    rng = np.random.default_rng(0)
    theta = np.sort(rng.uniform(0, 2 * np.pi, 30))
    r = 100 * (1 + 0.3 * np.cos(3 * theta))
    star = np.stack([200 + r * np.cos(theta), 180 + r * np.sin(theta)], axis=1)
    ann = Annotations(tumor=[star], exclusions=[star[::3] * 0.2 + [160, 144]])
    for ds in (1.0, 4.0, 16.0):
        h, w = int(400 / ds), int(420 / ds)
        mask = rasterize(ann, (h, w), ds)
        yy, xx = np.mgrid[0:h, 0:w]
        centres = np.stack([(xx.ravel() + 0.5) * ds, (yy.ravel() + 0.5) * ds], axis=1)
        np.testing.assert_array_equal(contains(ann, centres).reshape(h, w), mask)
    assert mask.any() and not mask.all()
    # (250, 180) is in the star, (200, 180) in the hole at its centre, (5, 5) outside both
    assert contains(ann, np.array([[250.0, 180.0], [200.0, 180.0], [5.0, 5.0]])).tolist() == [True, False, False]


def test_synthetic_masks_equal_rasterized_xml(synthetic_cohort, synthetic_tif):
    for made in synthetic_cohort.tumor_slides + [synthetic_tif]:
        ann = load_asap_xml(made.xml)
        with tifffile.TiffFile(made.mask) as tif:
            assert len(tif.pages) >= 3
            for k, page in enumerate(tif.pages):
                level = page.asarray()
                assert page.is_tiled and level.dtype == np.uint8 and set(np.unique(level)) <= {0, 255}
                np.testing.assert_array_equal(level == 255, rasterize(ann, level.shape, 2.0**k))
    # the first tumor slide carries an exclusion hole, and it is cut out of its mask
    first = load_asap_xml(synthetic_cohort.slides[0].xml)
    assert len(first.exclusions) == 1
    hole_centre = first.exclusions[0].mean(axis=0)
    assert contains(Annotations(tumor=first.tumor), hole_centre[None])[0]
    assert not contains(first, hole_centre[None])[0]


def test_find_annotation(tmp_path):
    (tmp_path / "Tumor_001.XML").write_text("<ASAP_Annotations />")
    assert find_annotation(tmp_path / "slides" / "tumor_001.tif", tmp_path) == tmp_path / "Tumor_001.XML"
    assert find_annotation("normal_001.tif", tmp_path) is None
    assert find_annotation("tumor_001.tif", None) is None
    with pytest.raises(InputNotFound):
        find_annotation("tumor_001.tif", tmp_path / "missing")
