"""Per-slide outputs: score grid, tiles journal, colormap/PNGs, NMS detections, GeoJSON, atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from fwrd.atomic import atomic_open, write_json
from fwrd.runtime.outputs.colormap import LUT, apply_colormap, lut_index
from fwrd.runtime.outputs.detections import default_radius, nms, write_detections
from fwrd.runtime.outputs.geojson import region_polygons, ring_area, trace_rings, tumor_features, write_geojson
from fwrd.runtime.outputs.heatmap import CellGeometry, ScoreGrid
from fwrd.runtime.outputs.summary import slide_score
from fwrd.runtime.outputs.tiles import TileJournal, read_journal, write_tiles_csv


# -- grid --------------------------------------------------------------------------------------------
def test_grid_cells_follow_the_top_left_rule(tmp_path):
    geometry = CellGeometry(width=1000, height=700, stride=64, tile=256)
    assert geometry.shape == (11, 16) and geometry.offset == 96
    grid = ScoreGrid(geometry)
    coords = np.array([[0, 0], [640, 128], [64, 384]])
    grid.add(coords, np.array([0.5, 1.5, np.nan], np.float32))
    assert grid.values[0, 0] == 0.5 and grid.values[2, 10] == 1.5 and grid.count == 3
    assert grid.scored[6, 1] and np.isnan(grid.values[6, 1])  # a NaN score still counts as scored
    assert np.isnan(grid.values[1, 1]) and not grid.scored[1, 1]
    xs, ys = geometry.tile_centres(np.array([2]), np.array([10]))
    assert (xs[0], ys[0]) == (640 + 128, 128 + 128)
    write_tiles_csv(grid, tmp_path / "tiles.csv")
    assert (tmp_path / "tiles.csv").read_text().splitlines() == ["x,y,score", "0,0,0.5", "640,128,1.5", "64,384,nan"]
    grid.save_npy(tmp_path / "heatmap.npy")
    saved = np.load(tmp_path / "heatmap.npy")
    assert saved.dtype == np.float32 and saved.shape == (11, 16)
    np.testing.assert_array_equal(saved, grid.values)


def test_tiles_csv_round_trips_float32_exactly(tmp_path):
    grid = ScoreGrid(CellGeometry(640, 640, 64, 64))
    rng = np.random.default_rng(0)
    cells = rng.permutation(100)[:40]
    coords = np.stack([cells % 10 * 64, cells // 10 * 64], axis=1)
    scores = rng.random(40).astype(np.float32) * 3
    grid.add(coords, scores)
    write_tiles_csv(grid, tmp_path / "t.csv")
    table = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1)
    order = np.lexsort((coords[:, 0], coords[:, 1]))
    np.testing.assert_array_equal(table[:, :2], coords[order])
    np.testing.assert_array_equal(table[:, 2].astype(np.float32), scores[order])


def test_journal_survives_a_torn_last_line_and_checks_its_key(tmp_path):
    path = tmp_path / "tiles.csv.part"
    journal = TileJournal(path, "key1", continue_existing=False)
    journal.append(np.array([[0, 0], [64, 0]]), np.array([0.25, 0.5], np.float32))
    journal.close()
    with open(path, "a") as handle:
        handle.write("128,0,0.7")  # killed mid-line
    coords, scores, _ = read_journal(path, "key1")
    np.testing.assert_array_equal(coords, [[0, 0], [64, 0]])
    np.testing.assert_array_equal(scores, np.array([0.25, 0.5], np.float32))
    assert path.read_text().endswith("0.5\n")  # the torn line is cut off the file
    journal = TileJournal(path, "key1", continue_existing=True)
    journal.append(np.array([[128, 0]]), np.array([0.75], np.float32))
    journal.close()
    assert len(read_journal(path, "key1")[0]) == 3
    assert read_journal(path, "other-key") is None
    assert read_journal(tmp_path / "none.part", "key1") is None


# -- colours -----------------------------------------------------------------------------------------
def test_colormap():
    assert LUT.shape == (256, 3) and LUT.dtype == np.uint8
    assert tuple(LUT[0]) == (68, 1, 84) and tuple(LUT[-1]) == (253, 231, 37)  # viridis ends
    assert list(lut_index(np.array([-5.0, 0.0, 0.5, 1.0, 9.0]), 0.0, 1.0)) == [0, 0, 128, 255, 255]
    rgb = apply_colormap(np.array([[0.0, np.nan]]), 0.0, 1.0)
    assert tuple(rgb[0, 0]) == (68, 1, 84) and tuple(rgb[0, 1]) == (255, 255, 255)


# -- detections ----------------------------------------------------------------------------------------
def ncrf_nms(values: np.ndarray, radius: int) -> list[tuple[float, int, int]]:
    """NCRF's nms.py loop, literally (argmax, emit, clear a half-open window)."""
    probs = np.where(np.isfinite(values), values, -np.inf).astype(np.float64)
    height, width = probs.shape
    out = []
    while np.max(probs) > -np.inf:
        best = probs.max()
        rows, cols = np.where(probs == best)
        r, c = rows[0], cols[0]
        out.append((float(values[r, c]), int(r), int(c)))
        r0 = r - radius if r - radius > 0 else 0
        r1 = r + radius if r + radius <= height else height
        c0 = c - radius if c - radius > 0 else 0
        c1 = c + radius if c + radius <= width else width
        probs[r0:r1, c0:c1] = -np.inf
    return out


@pytest.mark.parametrize("seed", range(4))
def test_nms_equals_ncrf_loop(seed):
    rng = np.random.default_rng(seed)
    values = rng.random((23, 31)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[5, 5] = values[5, 9] = 2.0  # a tie: row-major first wins
    radius = int(rng.integers(1, 5))
    assert nms(values, radius) == ncrf_nms(values, radius)


def test_nms_threshold_and_radius():
    values = np.zeros((10, 10), np.float32)
    values[2, 2], values[2, 4], values[8, 8] = 0.9, 0.8, 0.7
    assert [(r, c) for _, r, c in nms(values, 3, min_score=0.5)] == [(2, 2), (8, 8)]
    assert [(r, c) for _, r, c in nms(values, 1, min_score=0.5)] == [(2, 2), (2, 4), (8, 8)]
    assert default_radius(64) == 6 and default_radius(256) == 2 and default_radius(2048) == 1


def test_detections_csv_is_camelyon_format(tmp_path):
    values = np.full((4, 4), np.nan, np.float32)
    values[1, 2] = 0.75
    count = write_detections(tmp_path / "d.csv", values, CellGeometry(1024, 1024, 256, 256), radius=1)
    assert count == 1
    assert (tmp_path / "d.csv").read_text() == "0.75,640,384\n"  # centre of the tile at (512, 256)
    write_detections(tmp_path / "e.csv", np.full((2, 2), np.nan, np.float32), CellGeometry(2, 2, 1, 1))
    assert (tmp_path / "e.csv").read_text() == ""  # every slide gets a file, even with no detection


# -- contours ------------------------------------------------------------------------------------------
def _rasterize(polygons, shape, scale=4):
    """Fill exteriors and clear holes with PIL at `scale` px per cell; sample cell centres."""
    image = Image.new("L", (shape[1] * scale, shape[0] * scale), 0)
    draw = ImageDraw.Draw(image)
    for rings in polygons:
        draw.polygon([(x * scale, y * scale) for x, y in rings[0]], fill=1)
    for rings in polygons:
        for hole in rings[1:]:
            draw.polygon([(x * scale, y * scale) for x, y in hole], fill=0)
    array = np.asarray(image)
    return array[scale // 2::scale, scale // 2::scale].astype(bool)


def test_rectangle_traces_to_four_corners():
    mask = np.zeros((5, 6), bool)
    mask[1:4, 2:5] = True
    assert trace_rings(mask) == [[(2, 1), (5, 1), (5, 4), (2, 4), (2, 1)]]
    assert ring_area(trace_rings(mask)[0]) == 9


def test_hole_and_corner_contacts():
    ring = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool)
    labels, polygons = region_polygons(ring)
    assert len(polygons) == 1 and len(polygons[0]) == 2
    assert ring_area(polygons[0][0]) == 9 and ring_area(polygons[0][1]) == -1
    diagonal = np.array([[1, 0], [0, 1]], bool)
    _, polygons = region_polygons(diagonal)
    assert len(polygons) == 2  # cells touching at a corner are separate regions
    # a region whose hole touches its outside at one corner: still one exterior + one hole
    pinch = np.array([[0, 1, 1, 1], [1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 0]], bool)
    _, polygons = region_polygons(pinch)
    assert len(polygons) == 1 and len(polygons[0]) == 3
    for rings in polygons:
        for r in rings:
            assert r[0] == r[-1] and len(set(r[:-1])) == len(r) - 1  # closed and simple


@pytest.mark.parametrize("seed", range(6))
def test_polygons_rasterize_back_to_the_regions(seed):
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((40, 50)) < 0.55) | (rng.random((40, 50)) < 0.05)
    labels, polygons = region_polygons(mask)
    assert len(polygons) == labels.max()
    np.testing.assert_array_equal(_rasterize(polygons, mask.shape), mask)
    for index, rings in enumerate(polygons, start=1):
        assert ring_area(rings[0]) > 0 and all(ring_area(h) < 0 for h in rings[1:])
        area = sum(ring_area(r) for r in rings)
        assert area == np.count_nonzero(labels == index)
        np.testing.assert_array_equal(_rasterize([rings], mask.shape), labels == index)


def test_features_are_qupath_annotations_in_level0_pixels(tmp_path):
    values = np.full((6, 8), 0.1, np.float32)
    values[0, 0] = np.nan
    values[1:3, 1:4] = [[2.5, 3.0, 2.2], [2.1, 2.4, 2.0]]
    values[5, 7] = 2.9
    geometry = CellGeometry(width=8 * 64 + 192, height=6 * 64 + 192, stride=64, tile=256)
    features = write_geojson(tmp_path / "t.geojson", values, geometry, threshold=2.0, mpp=0.25)
    data = json.loads((tmp_path / "t.geojson").read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 2 == len(features)
    first = data["features"][0]
    assert first["properties"]["objectType"] == "annotation"
    assert first["properties"]["classification"]["name"] == "Tumor"
    # cells (1..2, 1..3) at stride 64, shifted by (256 - 64) / 2 = 96 to the tiles' centres
    ring = [[160, 160], [352, 160], [352, 288], [160, 288], [160, 160]]
    assert first["geometry"] == {"type": "Polygon", "coordinates": [ring]}
    m = first["properties"]["measurements"]
    assert m["tiles"] == 6 and m["max_score"] == 3.0 and m["mean_score"] == pytest.approx(14.2 / 6, abs=1e-5)
    assert m["area_px"] == 6 * 64 * 64 and m["area_um2"] == pytest.approx(6 * 64 * 64 * 0.0625)
    assert "area_um2" not in tumor_features(values, geometry, 2.0, None)[0]["properties"]["measurements"]


def test_region_at_slide_edge_is_clipped_to_the_slide():
    values = np.array([[3.0]], np.float32)
    geometry = CellGeometry(width=50, height=50, stride=100, tile=40)  # stride > tile: offset -30
    coords = tumor_features(values, geometry, 1.0, None)[0]["geometry"]["coordinates"][0]
    assert coords == [[0, 0], [50, 0], [50, 50], [0, 50], [0, 0]]


# -- summary and atomic writes ------------------------------------------------------------------------
def test_slide_score_rule():
    assert slide_score(np.array([1.0, 2.0, 3.0, np.nan]), 2.0) == 2.5
    assert slide_score(np.array([1.0, 1.5]), 2.0) == 0.0
    assert slide_score(np.array([], np.float32), 2.0) == 0.0


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write('{"a": 2')
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
