"""ASAP XML tumor annotations (Camelyon16): polygons, masks and point tests that agree with each other.

Groups `_0`, `_1` and `Tumor` (any case) are tumor; `_2` and `Exclusion` are non-tumor holes cut
from them (FW-RD ignores the holes; we do not). Coordinates are level-0 pixels, X = column.

One geometric rule everywhere: a point is tumor when it lies inside a tumor polygon (even-odd rule)
and inside no exclusion polygon; a mask pixel at downsample d is tumor when its centre
((j + 0.5) d, (i + 0.5) d) is. So `rasterize` and `contains` agree exactly, and the synthetic
slides' mask files are `rasterize` of their XML.

    ann = load_asap_xml("tumor_001.xml")
    mask = rasterize(ann, (h, w), downsample=32.0)
    inside = contains(ann, np.array([[1200.0, 3400.5]]))
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fwrd.errors import AnnotationError, InputNotFound

TUMOR_GROUPS = ("_0", "_1", "tumor")
EXCLUSION_GROUPS = ("_2", "exclusion")
PAIRS_PER_CHUNK = 2_000_000  # bounds the (points or pixels) x edges temporaries


@dataclass
class Annotations:
    """Polygons in level-0 pixels, each an (N, 2) float64 array of (x, y) vertices."""

    tumor: list[np.ndarray] = field(default_factory=list)
    exclusions: list[np.ndarray] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tumor)


def _coordinate(element: ET.Element, axis: str, path: Path) -> float:
    text = element.get(axis)
    if text is None:
        raise AnnotationError(f"{path}: a Coordinate has no {axis} attribute")
    try:
        value = float(text)
    except ValueError:
        try:  # some Camelyon XMLs were written with a decimal comma
            value = float(text.replace(",", "."))
        except ValueError:
            raise AnnotationError(f"{path}: coordinate {axis}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path}: coordinate {axis}={text!r} is not a finite number")
    return value


def load_asap_xml(path: str | Path) -> Annotations:
    """Tumor polygons and exclusion holes of an ASAP XML file; AnnotationError if it does not parse.

    Polygons with fewer than 3 vertices (dots, lines) and other groups are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"{path}: no such annotation file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise AnnotationError(f"{path}: not valid XML ({exc})") from None
    if root.tag != "ASAP_Annotations":
        raise AnnotationError(f"{path}: not an ASAP annotation file (root element <{root.tag}>)")
    result = Annotations()
    for annotation in root.iter("Annotation"):
        group = (annotation.get("PartOfGroup") or "").strip().lower()
        if group in TUMOR_GROUPS:
            target = result.tumor
        elif group in EXCLUSION_GROUPS:
            target = result.exclusions
        else:
            continue
        points = []
        for i, coord in enumerate(annotation.iter("Coordinate")):
            order = coord.get("Order")
            try:
                key = float(order) if order is not None else float(i)
            except ValueError:
                raise AnnotationError(f"{path}: coordinate Order={order!r} is not a number") from None
            points.append((key, _coordinate(coord, "X", path), _coordinate(coord, "Y", path)))
        if len(points) < 3:
            continue
        points.sort(key=lambda p: p[0])
        target.append(np.array([(x, y) for _, x, y in points], dtype=np.float64))
    return result


def _edges(polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    return x1, y1, x2, y2


def polygon_contains(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Even-odd test of (x, y) points against one polygon; vectorised over points x edges in chunks
    of ~2 M pairs, so polygons of thousands of vertices stay within a few tens of MB."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(len(points), dtype=bool)
    if len(points) == 0:
        return inside
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    cand = np.flatnonzero(np.all((points >= lo) & (points <= hi), axis=1))
    x1, y1, x2, y2 = _edges(polygon)
    keep = y1 != y2  # horizontal edges never cross a horizontal ray
    x1, y1, x2, y2 = x1[keep], y1[keep], x2[keep], y2[keep]
    chunk = max(1, PAIRS_PER_CHUNK // max(len(x1), 1))
    for start in range(0, len(cand), chunk):
        idx = cand[start : start + chunk]
        px = points[idx, 0][:, None]
        py = points[idx, 1][:, None]
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside[idx] = (np.count_nonzero(crosses & (xc <= px), axis=1) % 2) == 1
    return inside


def contains(ann: Annotations, points: np.ndarray) -> np.ndarray:
    """Per (x, y) level-0 point: inside some tumor polygon and outside every exclusion polygon."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    result = np.zeros(len(points), dtype=bool)
    for polygon in ann.tumor:
        result |= polygon_contains(polygon, points)
    for polygon in ann.exclusions:
        hit = np.flatnonzero(result)
        result[hit[polygon_contains(polygon, points[hit])]] = False
    return result


def _fill_polygon(mask: np.ndarray, polygon: np.ndarray, downsample: float, value: bool) -> None:
    """Scanline fill at pixel centres: for each row, mark the pixels right of an odd number of edge
    crossings (same even-odd rule and crossing formula as polygon_contains). Rows go in blocks, each
    with only the edges that reach it, so large polygons at fine resolution stay cheap."""
    h, w = mask.shape
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    r0 = max(int(np.floor(lo[1] / downsample - 0.5)), 0)
    r1 = min(int(np.ceil(hi[1] / downsample - 0.5)) + 1, h)
    c0 = max(int(np.floor(lo[0] / downsample - 0.5)), 0)
    c1 = min(int(np.ceil(hi[0] / downsample - 0.5)) + 1, w)
    if r0 >= r1 or c0 >= c1:
        return
    x1, y1, x2, y2 = _edges(polygon)
    keep = y1 != y2
    x1, y1, x2, y2 = x1[keep], y1[keep], x2[keep], y2[keep]
    ey0, ey1 = np.minimum(y1, y2), np.maximum(y1, y2)
    # rows x edges (the crossing tests) and rows x columns (the parity) both stay within PAIRS_PER_CHUNK
    block = max(1, min(r1 - r0, PAIRS_PER_CHUNK // max(c1 - c0, len(x1), 1)))
    for b0 in range(r0, r1, block):
        b1 = min(b0 + block, r1)
        py = ((np.arange(b0, b1, dtype=np.float64) + 0.5) * downsample)[:, None]
        near = (ey1 >= py[0, 0]) & (ey0 <= py[-1, 0])
        ex1, ey_1, ex2, ey_2 = x1[near], y1[near], x2[near], y2[near]
        crosses = (ey_1 > py) != (ey_2 > py)
        rows, cols = np.nonzero(crosses)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = ex1[cols] + (py[rows, 0] - ey_1[cols]) * (ex2[cols] - ex1[cols]) / (ey_2[cols] - ey_1[cols])
        # pixel j is right of a crossing at xc when (j + 0.5) * d >= xc, i.e. j >= ceil(xc / d - 0.5);
        # only columns c0..c1 (the polygon's bounding box) can be inside
        start = np.clip(np.ceil(xc / downsample - 0.5) - c0, 0, c1 - c0).astype(np.int64)
        parity = np.zeros((b1 - b0, c1 - c0 + 1), dtype=np.int32)
        np.add.at(parity, (rows, start), 1)
        inside = (np.cumsum(parity[:, : c1 - c0], axis=1) % 2).astype(bool)
        region = mask[b0:b1, c0:c1]
        if value:
            region |= inside
        else:
            region &= ~inside


def rasterize(ann: Annotations, shape: tuple[int, int], downsample: float) -> np.ndarray:
    """Tumor mask bool (h, w) at `downsample`: tumor polygons filled, then exclusions cleared."""
    if not downsample > 0:
        raise ValueError(f"downsample must be positive, got {downsample}")
    mask = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    for polygon in ann.tumor:
        _fill_polygon(mask, polygon, float(downsample), True)
    for polygon in ann.exclusions:
        _fill_polygon(mask, polygon, float(downsample), False)
    return mask


def find_annotation(slide_path: str | Path, annotations_dir: str | Path | None) -> Path | None:
    """`<slide stem>.xml` in `annotations_dir`, matched case-insensitively; None when there is none."""
    if annotations_dir is None:
        return None
    folder = Path(annotations_dir)
    if not folder.is_dir():
        raise InputNotFound(f"{folder}: no such annotation folder")
    wanted = Path(slide_path).stem.lower() + ".xml"
    exact = folder / (Path(slide_path).stem + ".xml")
    if exact.is_file():
        return exact
    for candidate in sorted(folder.iterdir()):
        if candidate.name.lower() == wanted and candidate.is_file():
            return candidate
    return None
