"""tumor.geojson: one QuPath annotation per tumor region, outlined along heatmap cell edges.

Steps: threshold the score grid; label regions with 4-connectivity (`scipy.ndimage.label`), so two
cells touching only at a corner are two regions (a polygon's interior must be connected); for each
region trace its cell-edge boundary into rings (`trace_rings`); map ring vertices to level-0 pixels
(cell edge * stride + the (tile - stride) / 2 shift, see heatmap.py) and write one Feature with
`objectType: annotation`, classification Tumor and measurements (area, max/mean score, tiles).

Rings are simple and closed; the exterior has positive shoelace area in (x right, y down) pixel
coordinates (counter-clockwise when read with y up, as RFC 7946 asks) and holes negative. A hole may
touch the exterior at a single vertex, which OGC/JTS (QuPath) accept.

    write_geojson(out / "tumor.geojson", grid.values, grid.geometry, threshold=2.0, mpp=0.243)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from fwrd.atomic import atomic_open
from fwrd.runtime.outputs.heatmap import CellGeometry

TUMOR_COLOR = [200, 0, 0]
Ring = list[tuple[int, int]]


def trace_rings(mask: np.ndarray) -> list[Ring]:
    """Boundary rings of a boolean cell mask, vertices at cell corners (x = column, y = row).

    Every boundary edge is directed with the foreground on its right (on screen, y down) and edges are
    chained into loops. Where two foreground cells meet only at a corner the walk turns left, joining
    them there; called on one 4-connected region, this gives one simple exterior ring and one simple
    ring per hole. Collinear vertices are dropped; each ring is closed (first vertex repeated).
    """
    m = np.pad(np.asarray(mask, bool), 1)
    fg = m[1:-1, 1:-1]
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def add(rows: np.ndarray, cols: np.ndarray, start: tuple[int, int], end: tuple[int, int]) -> None:
        for r, c in zip(rows.tolist(), cols.tolist()):
            edges.setdefault((c + start[0], r + start[1]), []).append((c + end[0], r + end[1]))

    add(*np.nonzero(fg & ~m[:-2, 1:-1]), (0, 0), (1, 0))  # top side, walking right
    add(*np.nonzero(fg & ~m[1:-1, 2:]), (1, 0), (1, 1))  # right side, walking down
    add(*np.nonzero(fg & ~m[2:, 1:-1]), (1, 1), (0, 1))  # bottom side, walking left
    add(*np.nonzero(fg & ~m[1:-1, :-2]), (0, 1), (0, 0))  # left side, walking up

    used: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    rings: list[Ring] = []
    for start in sorted(edges):
        for first_end in edges[start]:
            if (start, first_end) in used:
                continue
            ring: Ring = []
            prev, cur = start, first_end
            used.add((prev, cur))
            direction = (cur[0] - prev[0], cur[1] - prev[1])
            ring.append(start)
            while True:
                outs = edges[cur]
                if len(outs) == 1:
                    nxt = outs[0]
                else:  # a corner shared by two diagonal foreground cells: turn left
                    left = (direction[1], -direction[0])
                    nxt = next(e for e in outs if (e[0] - cur[0], e[1] - cur[1]) == left)
                new_direction = (nxt[0] - cur[0], nxt[1] - cur[1])
                if new_direction != direction:
                    ring.append(cur)
                if (cur, nxt) == (start, first_end):
                    break
                used.add((cur, nxt))
                prev, cur, direction = cur, nxt, new_direction
            if ring[0] == ring[-1] and len(ring) > 1:
                ring.pop()
            # the start vertex may sit mid-way along a straight side: drop it if collinear
            if len(ring) > 4:
                a, b, c = ring[-1], ring[0], ring[1]
                if (b[0] - a[0]) * (c[1] - b[1]) == (b[1] - a[1]) * (c[0] - b[0]):
                    ring.pop(0)
            ring.append(ring[0])
            rings.append(ring)
    return rings


def ring_area(ring: list[tuple[float, float]] | np.ndarray) -> float:
    """Signed shoelace area (positive for an exterior ring here)."""
    pts = np.asarray(ring, np.float64)
    x, y = pts[:, 0], pts[:, 1]
    return float(0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def region_polygons(mask: np.ndarray) -> tuple[np.ndarray, list[list[Ring]]]:
    """Label `mask` (4-connectivity) and trace each region: (labels, [[exterior, *holes], ...]).

    Ring vertices are in full-grid cell-corner coordinates; polygon k belongs to label k + 1.
    """
    labels, count = ndimage.label(mask)
    polygons: list[list[Ring]] = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        assert box is not None
        rings = trace_rings(labels[box] == index)
        dy, dx = box[0].start, box[1].start
        rings = [[(x + dx, y + dy) for x, y in ring] for ring in rings]
        exterior = [r for r in rings if ring_area(r) > 0]
        holes = [r for r in rings if ring_area(r) < 0]
        if len(exterior) != 1:
            raise AssertionError(f"region {index} traced into {len(exterior)} exteriors")
        polygons.append(exterior + holes)
    return labels, polygons


def tumor_features(
    values: np.ndarray, geometry: CellGeometry, threshold: float, mpp: float | None
) -> list[dict[str, Any]]:
    """GeoJSON Features (level-0 coordinates) of the regions with score >= threshold."""
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(values) & (values >= threshold)
    labels, polygons = region_polygons(mask)
    features = []
    for index, rings in enumerate(polygons, start=1):
        cells = values[labels == index]
        coords = [_to_level0(ring, geometry) for ring in rings]
        area_px = sum(ring_area(r) for r in coords)
        measurements: dict[str, float] = {
            "tiles": int(cells.size),
            "max_score": round(float(cells.max()), 6),
            "mean_score": round(float(cells.mean()), 6),
            "area_px": round(area_px, 1),
        }
        if mpp:
            measurements["area_um2"] = round(area_px * mpp * mpp, 3)
            measurements["area_mm2"] = round(area_px * mpp * mpp / 1e6, 6)
        features.append(
            {
                "type": "Feature",
                "id": f"tumor-{index}",
                "geometry": {"type": "Polygon", "coordinates": coords},
                "properties": {
                    "objectType": "annotation",
                    "name": f"Tumor region {index}",
                    "classification": {"name": "Tumor", "color": TUMOR_COLOR},
                    "isLocked": False,
                    "measurements": measurements,
                },
            }
        )
    return features


def write_geojson(
    path: str | Path, values: np.ndarray, geometry: CellGeometry, threshold: float, mpp: float | None
) -> list[dict[str, Any]]:
    features = tumor_features(values, geometry, threshold, mpp)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump({"type": "FeatureCollection", "features": features}, handle, separators=(",", ":"))
        handle.write("\n")
    return features


def _to_level0(ring: Ring, geometry: CellGeometry) -> list[list[float]]:
    """Cell-corner vertices -> level-0 pixels, clipped to the slide."""
    out = []
    for x, y in ring:
        px = min(max(x * geometry.stride + geometry.offset, 0.0), float(geometry.width))
        py = min(max(y * geometry.stride + geometry.offset, 0.0), float(geometry.height))
        out.append([int(px) if float(px).is_integer() else px, int(py) if float(py).is_integer() else py])
    return out
