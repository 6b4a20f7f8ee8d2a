"""Synthetic slides for tests and the demo: pyramidal tiled-JPEG files that OpenSlide opens.

Two formats, both written with tifffile + imagecodecs: Aperio `.svs` (ImageDescription
"Aperio Image Library ...|MPP = 0.243", so OpenSlide reports vendor aperio and mpp-x) and a generic
pyramidal BigTIFF `.tif` like Camelyon16's (resolution tags in pixels per centimetre, so OpenSlide 4
reports mpp-x). Each tumor slide comes with its ASAP XML (groups `_0`, `_2` for an optional hole)
and a Camelyon16-style mask: a pyramidal tiled uint8 TIFF, tumor = 255, whose level k is exactly
`rasterize(load_asap_xml(xml), level_k_shape, 2**k)`, carried down to at least level 5 (the FROC
evaluation level, which the organisers' script reads directly, as Camelyon16's masks have it) even
where the slide's own pyramid stops earlier. Deterministic for a seed.

    cohort = make_cohort("data/", n_tumor=2, n_normal=1, width=4096, height=4096)
    cohort.slides[0].path, cohort.slides[0].xml, cohort.slides[0].mask, cohort.reference_csv
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from fwrd.atomic import atomic_path
from fwrd.errors import FwrdError
from fwrd.slide.annotations import Annotations, load_asap_xml, rasterize
from fwrd.slide.synthetic_render import plan_layout, render

FORMATS = ("svs", "tif")
PYRAMIDS = {"x2": 2, "x4": 4, "single": 0}  # level-to-level downsample (x4: Aperio's usual; single: level 0 only)
MIN_LEVEL_SIDE = 400  # levels halve until the larger side is at most this (a few hundred pixels)
MASK_MIN_LEVELS = 6  # masks hold levels 0..5 at least: Camelyon16's FROC is computed at level 5
APERIO_HEADER = "Aperio Image Library v12.0.15"


@dataclass
class SyntheticSlide:
    path: Path
    xml: Path | None  # ASAP XML (None for a normal slide)
    mask: Path | None  # tumor mask TIFF (None for a normal slide)
    tumor: bool

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Cohort:
    root: Path
    slides_dir: Path
    annotations_dir: Path
    masks_dir: Path
    reference_csv: Path
    slides: list[SyntheticSlide] = field(default_factory=list)

    @property
    def tumor_slides(self) -> list[SyntheticSlide]:
        return [s for s in self.slides if s.tumor]

    @property
    def normal_slides(self) -> list[SyntheticSlide]:
        return [s for s in self.slides if not s.tumor]


def level_sizes(width: int, height: int, step: int = 2) -> list[tuple[int, int]]:
    """Sizes of the pyramid: divided by `step` (rounding down) until the larger side is <= MIN_LEVEL_SIDE
    (step 0: level 0 only)."""
    sizes = [(width, height)]
    while step and max(sizes[-1]) > MIN_LEVEL_SIDE and min(sizes[-1]) >= step:
        w, h = sizes[-1]
        sizes.append((w // step, h // step))
    return sizes


def mask_level_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """The slide's level sizes, continued (halving, rounding down) to at least level 5."""
    sizes = level_sizes(width, height)
    while len(sizes) < MASK_MIN_LEVELS and min(sizes[-1]) >= 2:
        w, h = sizes[-1]
        sizes.append((w // 2, h // 2))
    return sizes


def _halve(image: np.ndarray) -> np.ndarray:
    """2 x 2 box average (the odd last row/column is dropped, matching level_sizes)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    a = image[:h:2, :w:2].astype(np.uint16) + image[1:h:2, :w:2] + image[:h:2, 1:w:2] + image[1:h:2, 1:w:2]
    return ((a + 2) // 4).astype(np.uint8)


def _atomic(path: Path, write) -> None:
    """Run write(temp_path) for a temporary sibling of `path`, then rename it into place."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_asap_xml(path: Path, ann: Annotations) -> None:
    """ASAP XML with tumor polygons in group `_0` and holes in `_2` (level-0 pixels)."""
    root = ET.Element("ASAP_Annotations")
    annotations = ET.SubElement(root, "Annotations")
    polygons = [("_0", p) for p in ann.tumor] + [("_2", p) for p in ann.exclusions]
    for i, (group, polygon) in enumerate(polygons):
        node = ET.SubElement(
            annotations, "Annotation",
            Name=f"Annotation {i}", Type="Polygon", PartOfGroup=group,
            Color="#F4FA58" if group == "_0" else "#64FE2E",
        )
        coords = ET.SubElement(node, "Coordinates")
        for order, (x, y) in enumerate(polygon):
            ET.SubElement(coords, "Coordinate", Order=str(order), X=f"{x:.4f}", Y=f"{y:.4f}")
    groups = ET.SubElement(root, "AnnotationGroups")
    for name, color in (("_0", "#FF0000"), ("_2", "#00FF00")):
        group = ET.SubElement(groups, "Group", Name=name, PartOfGroup="None", Color=color)
        ET.SubElement(group, "Attributes")
    ET.indent(root)
    _atomic(path, lambda tmp: ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True))


def _resolution(mpp: float | None, downsample: float) -> dict:
    if mpp is None:
        return {}
    per_cm = 1e4 / (mpp * downsample)
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """Halved until its larger side is <= MIN_LEVEL_SIDE (Aperio's thumbnail page)."""
    while max(image.shape[:2]) > MIN_LEVEL_SIDE and min(image.shape[:2]) >= 2:
        image = _halve(image)
    return image


def _write_slide(
    path: Path, levels: list[np.ndarray], fmt: str, mpp: float | None, tile: int, quality: int
) -> None:
    """The pyramid as tiled JPEG pages (plus Aperio's thumbnail for .svs), atomically."""
    h0, w0 = levels[0].shape[:2]
    jpeg = {"photometric": "rgb", "compression": "jpeg", "compressionargs": {"level": quality}, "metadata": None}

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=(fmt == "tif")) as tw:
            for k, image in enumerate(levels):
                h, w = image.shape[:2]
                extra: dict = {"subfiletype": 1} if k else {}
                if fmt == "svs":
                    desc = f"{APERIO_HEADER} \r\n{w0}x{h0} [0,0 {w0}x{h0}] ({tile}x{tile})"
                    if k == 0:
                        desc += f" JPEG/RGB Q={quality}"
                        if mpp is not None:
                            desc += f"|AppMag = {40 if mpp < 0.35 else 20}|MPP = {mpp:g}"
                        desc += f"|Filename = {path.stem}"
                    else:
                        desc += f" -> {w}x{h} JPEG/RGB Q={quality}"
                    extra["description"] = desc
                else:
                    extra.update(_resolution(mpp, 2.0 ** round(math.log2(w0 / w))))
                tw.write(image, tile=(tile, tile), **jpeg, **extra)
                if fmt == "svs" and k == 0:  # Aperio's second directory: a stripped thumbnail
                    thumb = _thumbnail(levels[-1])
                    tw.write(thumb, rowsperstrip=16, **jpeg, subfiletype=1,
                             description=f"{APERIO_HEADER} \r\n{w0}x{h0} -> {thumb.shape[1]}x{thumb.shape[0]} - ")

    _atomic(path, write)


def write_rgb_slide(
    path: str | Path, rgb: np.ndarray, *, fmt: str = "svs", mpp: float | None = 0.243, file_tile: int = 256,
    quality: int = 90,
) -> Path:
    """Write any level-0 RGB image (uint8 [h, w, 3]) as a pyramidal tiled-JPEG slide, like the synthetic
    ones (tests paint artifacts on slides this way: fwrd.slide.synthetic_artifacts)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise FwrdError(f"unknown slide format {fmt!r}; expected one of {', '.join(FORMATS)}")
    height, width = rgb.shape[:2]
    levels = [np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)]
    for _ in level_sizes(width, height)[1:]:
        levels.append(_halve(levels[-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_slide(path, levels, fmt, mpp, file_tile, quality)
    return path


def write_mask(
    path: Path, ann: Annotations, sizes: list[tuple[int, int]], mpp: float | None, tile: int, bigtiff: bool
) -> None:
    """Camelyon16-style tumor mask: level k = rasterize(ann, size_k, 2**k) * 255, tiled, deflate."""

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tw:
            for k, (w, h) in enumerate(sizes):
                level = rasterize(ann, (h, w), 2.0**k).astype(np.uint8) * np.uint8(255)
                tw.write(level, tile=(tile, tile), photometric="minisblack", compression="zlib",
                         metadata=None, **({"subfiletype": 1} if k else {}), **_resolution(mpp, 2.0**k))

    _atomic(path, write)


def make_synthetic_slide(
    path: str | Path,
    *,
    width: int,
    height: int,
    fmt: str = "svs",
    tumor: bool = True,
    mpp: float | None = 0.243,
    file_tile: int = 256,
    seed: int = 0,
    n_tumor_regions: int = 3,
    tumor_scale: float = 1.0,
    tissue_scale: float = 1.0,
    exclusion: bool = False,
    xml_path: str | Path | None = None,
    mask_path: str | Path | None = None,
    quality: int = 90,
    pyramid: str = "x2",
) -> SyntheticSlide:
    """Write one synthetic slide (and, for a tumor slide, its XML and mask); deterministic per seed.

    The XML defaults to `<stem>.xml` and the mask to `<stem>_Mask.tif` beside the slide. Width and
    height need not be multiples of `file_tile` (a multiple of 16, as TIFF requires). `pyramid` (PYRAMIDS):
    levels halved ("x2"), quartered ("x4", as Aperio writes 40x slides) or level 0 alone ("single"); the
    same seed gives the same level-0 pixels whatever the pyramid.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise FwrdError(f"unknown slide format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if width < 64 or height < 64:
        raise FwrdError(f"a synthetic slide must be at least 64 x 64 pixels, got {width} x {height}")
    if file_tile < 16 or file_tile % 16:
        raise FwrdError(f"the file tile must be a positive multiple of 16, got {file_tile}")
    if mpp is not None and not mpp > 0:
        raise FwrdError(f"microns per pixel must be positive, got {mpp}")
    if not 1 <= quality <= 100:
        raise FwrdError(f"JPEG quality must be in 1..100, got {quality}")
    if pyramid not in PYRAMIDS:
        raise FwrdError(f"unknown pyramid {pyramid!r}; expected one of {', '.join(PYRAMIDS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # one stream for the layout, one for the pixels; names keep slides of one seed different
    key = [int(seed), zlib.crc32(path.stem.encode())]
    layout = plan_layout(np.random.default_rng(key + [0]), width, height,
                         n_tumor_regions if tumor else 0, exclusion and tumor, tumor_scale,
                         tissue_scale)
    ann = Annotations(tumor=layout.tumors, exclusions=layout.exclusions)
    xml = mask = None
    if tumor:
        xml = Path(xml_path) if xml_path is not None else path.with_suffix(".xml")
        mask = Path(mask_path) if mask_path is not None else path.with_name(f"{path.stem}_Mask.tif")
        xml.parent.mkdir(parents=True, exist_ok=True)
        mask.parent.mkdir(parents=True, exist_ok=True)
        write_asap_xml(xml, ann)
        ann = load_asap_xml(xml)  # the written coordinates are the truth for mask and texture
    tumor_mask = rasterize(ann, (height, width), 1.0)
    levels = [render(np.random.default_rng(key + [1]), layout, tumor_mask)]
    step = PYRAMIDS[pyramid]
    for _ in level_sizes(width, height, step)[1:]:
        levels.append(_halve(_halve(levels[-1])) if step == 4 else _halve(levels[-1]))
    _write_slide(path, levels, fmt, mpp, file_tile, quality)
    if mask is not None:
        write_mask(mask, ann, mask_level_sizes(width, height), mpp, file_tile, bigtiff=(fmt == "tif"))
    return SyntheticSlide(path=path, xml=xml, mask=mask, tumor=tumor)


def make_cohort(
    out_dir: str | Path,
    *,
    n_tumor: int = 2,
    n_normal: int = 1,
    width: int = 4096,
    height: int = 4096,
    fmt: str = "svs",
    seed: int = 0,
    mpp: float | None = 0.243,
    file_tile: int = 256,
    tumor_scale: float = 1.0,
    tissue_scale: float = 1.0,
) -> Cohort:
    """A Camelyon16-shaped folder: slides/, annotations/*.xml, masks/<name>_Mask.tif, reference.csv.

    Slides are `tumor_001...` and `normal_001...`; the first tumor slide has a `_2` exclusion hole.
    reference.csv has no header: `tumor_001,Tumor` / `normal_001,Normal`.
    """
    if n_tumor < 0 or n_normal < 0 or n_tumor + n_normal == 0:
        raise FwrdError(f"need at least one slide, got {n_tumor} tumor and {n_normal} normal")
    root = Path(out_dir)
    cohort = Cohort(root, root / "slides", root / "annotations", root / "masks", root / "reference.csv")
    for folder in (cohort.slides_dir, cohort.annotations_dir, cohort.masks_dir):
        folder.mkdir(parents=True, exist_ok=True)
    jobs = [(f"tumor_{i + 1:03d}", True) for i in range(n_tumor)]
    jobs += [(f"normal_{i + 1:03d}", False) for i in range(n_normal)]
    for i, (name, is_tumor) in enumerate(jobs):
        cohort.slides.append(make_synthetic_slide(
            cohort.slides_dir / f"{name}.{fmt}", width=width, height=height, fmt=fmt, tumor=is_tumor,
            mpp=mpp, file_tile=file_tile, seed=seed, exclusion=(i == 0), tumor_scale=tumor_scale,
            tissue_scale=tissue_scale,
            xml_path=cohort.annotations_dir / f"{name}.xml",
            mask_path=cohort.masks_dir / f"{name}_Mask.tif",
        ))
    ordered = sorted(cohort.slides, key=lambda s: s.name)
    rows = "".join(f"{s.name},{'Tumor' if s.tumor else 'Normal'}\n" for s in ordered)
    _atomic(cohort.reference_csv, lambda tmp: tmp.write_text(rows, encoding="utf-8"))
    return cohort
