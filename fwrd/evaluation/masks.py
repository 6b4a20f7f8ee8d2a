"""Tumor masks at the FROC evaluation level (5), from Camelyon16 mask TIFFs or ASAP XML annotations.

The organisers read `<slide>_Mask.tif` with OpenSlide at pyramid level 5 and call a pixel tumor when its
first channel is 255. Here:

- Mask TIFFs are read with tifffile (the pixels of a stored level are the ones OpenSlide returns). The
  level used is the one whose downsample is 2^5 on both axes. When the file stores no such level
  (small masks), an ASAP XML of the same slide in the mask folders is rasterised at level 5 instead,
  at the mask's level-0 size (exact: the XML is what the mask was drawn from). Without one, the
  coarsest level with a power-of-two downsample below level 5 is read and level 5 made from it the way
  ASAP builds mask pyramids (`MultiResolutionImageWriter` with nearest-neighbour interpolation, as
  `AnnotationToMask` uses: each level keeps the top-left pixel of every 2 x 2 block), so level-5 pixel
  (i, j) is level-0 pixel (32 i, 32 j): ceil(size / step) pixels, exact for masks made that way (ASAP's,
  Camelyon16's), refusing levels too large to hold in memory. A mask drawn level by level at pixel
  centres (as `fwrd synth` draws them) has no pixel whose centre is a level-5 pixel centre, so no
  sampling is exact for it: `fwrd synth` therefore writes its pyramids down to level 5 and beyond.
- Tumor value: 255 as in the challenge release, or 1 as ASAP writes by default — detected from the
  level's maximum (the organisers' script silently finds no tumor at all in a 0/1 mask). Any other
  maximum is refused rather than guessed.
- ASAP XML `<slide>.xml` is rasterised at level 5 (`fwrd.slide.annotations.rasterize`, `_2`/`Exclusion`
  groups as holes) on a grid of ceil(size / 2^5) pixels, so every level-0 pixel maps inside it. It
  needs the slide's level-0 size, which the XML does not hold.
- File names are matched case-insensitively (`tumor_001_Mask.tif`, `Tumor_001_mask.tiff`); a mask TIFF
  wins over an XML of the same slide (which it keeps as `MaskSource.xml` for masks without level 5).

    sources = find_masks([Path("masks")])                  # {"tumor_001": MaskSource(...), ...}
    mask = load_mask(sources["tumor_001"])                  # LevelMask(tumor=bool[h, w], level0_size)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fwrd.errors import DataError, InputNotFound, SlideError
from fwrd.slide.tiff_level import check_level_size

EVALUATION_LEVEL = 5
MASK_SUFFIXES = ("_mask.tif", "_mask.tiff")
MAX_LEVEL_PIXELS = 1 << 27  # refuse a stored evaluation level bigger than this (Camelyon16's largest: ~0.04 G)
MAX_READ_PIXELS = 1 << 28  # refuse to decode a finer level bigger than this to subsample it (uint8: 268 MB)


@dataclass(frozen=True)
class MaskSource:
    """Where one slide's ground truth lives: a mask TIFF or an ASAP XML."""

    slide: str
    path: Path
    kind: str  # "tiff" | "xml"
    xml: Path | None = None  # an XML of the same slide beside a TIFF: used when the TIFF has no level 5


@dataclass(frozen=True)
class LevelMask:
    """A slide's tumor pixels at the evaluation level, and the level-0 (width, height) they cover."""

    tumor: np.ndarray
    level0_size: tuple[int, int]
    encoding: str  # "255", "1", "empty" or "xml"


def find_masks(dirs: Iterable[str | Path]) -> dict[str, MaskSource]:
    """Index `<slide>_Mask.tif` and `<slide>.xml` files by lower-case slide name."""
    tiffs: dict[str, MaskSource] = {}
    xmls: dict[str, MaskSource] = {}
    for directory in dirs:
        directory = Path(directory)
        if not directory.is_dir():
            raise InputNotFound(f"mask folder not found: {directory}")
        for path in sorted(directory.iterdir()):
            lower = path.name.lower()
            suffix = next((s for s in MASK_SUFFIXES if lower.endswith(s)), None)
            if suffix is not None:
                source, found = MaskSource(path.name[: -len(suffix)], path, "tiff"), tiffs
            elif lower.endswith(".xml"):
                source, found = MaskSource(path.stem, path, "xml"), xmls
            else:
                continue
            key = source.slide.lower()
            if key in found:
                raise DataError(f"two masks for slide {source.slide}: {found[key].path} and {path}")
            found[key] = source
    tiffs = {key: replace(source, xml=xmls[key].path) if key in xmls else source for key, source in tiffs.items()}
    return {**xmls, **tiffs}


def _levels(tif) -> list[tuple[tuple[int, int], object]]:
    """Every stored image of an open TIFF as ((height, width), tifffile page or level), largest first."""
    seen: dict[tuple[int, int], object] = {}
    candidates = list(tif.series[0].levels) if tif.series else []
    for item in candidates + list(tif.pages):
        shape = tuple(int(s) for s in item.shape)
        if len(shape) == 3 and shape[-1] in (1, 2, 3, 4):  # (h, w, samples)
            shape = shape[:2]
        while len(shape) > 2 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) == 2:
            seen.setdefault((shape[0], shape[1]), item)
    return sorted(seen.items(), key=lambda kv: -kv[0][0] * kv[0][1])


def _power_of_two(full: int, size: int) -> int | None:
    """k when `size` is full / 2^k up to the rounding and padding pyramids apply, else None."""
    if size <= 0:
        return None
    k = round(math.log2(full / size))
    return k if k >= 0 and abs(size - full / 2**k) <= 1 + full / 2**k * 0.01 else None


def _as_plane(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3:  # RGB(A) mask: the organisers use the first channel
        array = array[..., 0]
    return array


def tumor_from_values(level: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """Tumor pixels of a mask level: value 255 (Camelyon16) or 1 (ASAP default), told by the maximum."""
    top = int(level.max()) if level.size else 0
    if top == 255:
        return level == 255, "255"
    if top == 1:
        return level == 1, "1"
    if top == 0:
        return np.zeros(level.shape, dtype=bool), "empty"
    raise DataError(
        f"{name}: mask values go up to {top}; expected tumor = 255 (Camelyon16) or 1 (ASAP)"
    )


def _read_level(tif, path: Path, level: int) -> tuple[np.ndarray, tuple[int, int], bool]:
    """The mask plane at downsample 2^level, the level-0 (width, height), and whether it was stored."""
    levels = _levels(tif)
    if not levels:
        raise DataError(f"{path}: the TIFF holds no 2-D image")
    (h0, w0), _ = levels[0]
    try:
        check_level_size(path, w0, h0, "the mask's level 0")
    except SlideError as exc:
        raise DataError(str(exc)) from None
    for (h, w), item in levels:
        if _power_of_two(w0, w) == level == _power_of_two(h0, h):
            if h * w > MAX_LEVEL_PIXELS:  # the file's claim, checked before decoding it
                raise DataError(f"{path}: the mask's level {level} claims {w}x{h} px; refusing more than "
                                f"{MAX_LEVEL_PIXELS / 1e6:.0f} M px (a damaged or hostile file)")
            return _as_plane(item.asarray()), (w0, h0), True
    finer = [
        ((h, w), item, k)
        for (h, w), item in levels
        if (k := _power_of_two(w0, w)) is not None and k < level and _power_of_two(h0, h) == k
    ]
    if not finer:
        raise DataError(f"{path}: no pyramid level with a power-of-two downsample to read level {level} from")
    (h, w), item, k = finer[-1]  # the coarsest of the finer levels
    if h * w > MAX_READ_PIXELS:
        raise DataError(
            f"{path}: the mask has no level {level} and its level with downsample {2**k} ({w}x{h}) "
            "is too large to subsample"
        )
    step = 2 ** (level - k)
    plane = _as_plane(item.asarray())
    # ASAP's nearest-neighbour pyramid: the top-left pixel of every step x step block (module docstring)
    return plane[:: step, :: step], (w0, h0), False


def read_mask_tiff(path: str | Path, level: int = EVALUATION_LEVEL) -> LevelMask:
    """Tumor pixels of a mask TIFF at `level` (downsample 2^level), and the mask's level-0 size."""
    return _read_mask_tiff(path, level)[0]


def _read_mask_tiff(path: str | Path, level: int) -> tuple[LevelMask, bool]:
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"mask not found: {path}")
    try:
        with tifffile.TiffFile(path) as tif:
            plane, level0_size, stored = _read_level(tif, path, level)
    except DataError:
        raise
    except Exception as exc:  # tifffile and its codecs raise many types for corrupt or non-TIFF files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: cannot read the mask ({reason})") from None
    tumor, encoding = tumor_from_values(plane, str(path))
    return LevelMask(tumor, level0_size, encoding), stored


def evaluation_shape(level0_size: tuple[int, int], level: int = EVALUATION_LEVEL) -> tuple[int, int]:
    """(rows, columns) of a level-`level` grid that covers every level-0 pixel."""
    width, height = level0_size
    return -(-height // 2**level), -(-width // 2**level)


def rasterize_xml(path: str | Path, level0_size: tuple[int, int], level: int = EVALUATION_LEVEL) -> LevelMask:
    """Rasterise an ASAP XML's tumor polygons (minus exclusions) at `level` for a slide of that size."""
    from fwrd.slide.annotations import load_asap_xml, rasterize

    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"annotation not found: {path}")
    tumor = rasterize(load_asap_xml(path), evaluation_shape(level0_size, level), float(2**level))
    return LevelMask(np.asarray(tumor, dtype=bool), (int(level0_size[0]), int(level0_size[1])), "xml")


def load_mask(
    source: MaskSource, level0_size: tuple[int, int] | None = None, level: int = EVALUATION_LEVEL
) -> LevelMask:
    """Read a slide's mask; `level0_size` is the slide's size (needed for XML, checked for TIFF)."""
    if source.kind == "xml":
        if level0_size is None:
            raise DataError(
                f"{source.path}: an XML annotation needs the slide's size to be rasterised; "
                "pass the slide folder (--slide-dir) or a mask TIFF"
            )
        return rasterize_xml(source.path, level0_size, level)
    mask, stored = _read_mask_tiff(source.path, level)
    if level0_size is not None and tuple(level0_size) != mask.level0_size:
        raise DataError(
            f"{source.path}: mask is {mask.level0_size[0]}x{mask.level0_size[1]} but slide "
            f"{source.slide} is {level0_size[0]}x{level0_size[1]}; wrong mask?"
        )
    if not stored and source.xml is not None:  # no level 5 in the file: the XML is exact
        return rasterize_xml(source.xml, mask.level0_size, level)
    return mask


def slide_size_lookup(folder: str | Path) -> Callable[[str], tuple[int, int] | None]:
    """A function giving a slide's level-0 (width, height) from the slide file `folder/<name>.*`.

    XML annotations hold no image size, so rasterising them needs the slide; TIFF masks are checked
    against it. Slides are matched by file stem, case-insensitively; None when there is no such file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFound(f"slide folder not found: {folder}")
    index: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() not in (".xml", ".csv", ".json", ".txt", ".png"):
            index.setdefault(path.stem.lower(), path)

    def size(name: str) -> tuple[int, int] | None:
        path = index.get(name.lower())
        if path is None:
            return None
        from fwrd.slide.reader import open_slide

        with open_slide(path) as slide:
            width, height = slide.dimensions
        return int(width), int(height)

    return size


def size_lookup(
    recorded: dict[str, tuple[int, int]], folder: str | Path | None = None
) -> Callable[[str], tuple[int, int] | None] | None:
    """A slide's level-0 (width, height) from what a run recorded (summary.json) and/or the slide files
    in `folder`; both must agree. None when neither is available.

    Masks are checked against it, so that a mask of the wrong scale (2x the slide) is refused instead
    of silently matching no detection.
    """
    known = {name.lower(): (int(w), int(h)) for name, (w, h) in recorded.items()}
    from_files = slide_size_lookup(folder) if folder is not None else None
    if from_files is None and not known:
        return None

    def size(name: str) -> tuple[int, int] | None:
        run = known.get(name.lower())
        real = from_files(name) if from_files is not None else None
        if run is not None and real is not None and run != real:
            raise DataError(
                f"slide {name} is {real[0]}x{real[1]} in the slide folder but was scored at {run[0]}x{run[1]}; "
                "was it replaced after the run?"
            )
        return real or run

    return size
