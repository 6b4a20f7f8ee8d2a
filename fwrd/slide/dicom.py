"""DICOM whole-slide images: one slide is one series, and fwrd takes a series as its folder.

A DICOM WSI is a series of instance files: one per pyramid level (VOLUME), plus LABEL, OVERVIEW and
THUMBNAIL instances. OpenSlide 4 opens any instance and finds the rest of its series in the same folder
(libdicom reads their headers), so scoring each file as a slide would score the same slide once per
instance, label included, under the instance's name. fwrd therefore keeps each series in its own folder,
names the slide after that folder, and opens it through any of its instances; a folder holding instances
of several series is refused in one line (move each series into a folder of its own). Which series an
instance belongs to is OpenSlide's `dicom.SeriesInstanceUID` property, so no DICOM parser is needed.

    dicom_files(Path("case_17"))      # [.../level0.dcm, .../label.dcm, ...]
    series_instance(Path("case_17"))  # the instance to hand to OpenSlide (any one of the series)
"""

from __future__ import annotations

from pathlib import Path

import openslide

from fwrd.errors import DataError, SlideError

DICOM_SUFFIX = ".dcm"
SERIES_PROPERTY = "dicom.SeriesInstanceUID"


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM instance files (`*.dcm`, any case, not hidden) directly in `folder`, sorted."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    return sorted(p for p in entries
                  if p.suffix.lower() == DICOM_SUFFIX and not p.name.startswith(".") and p.is_file())


def is_dicom_series(path: Path) -> bool:
    """Whether `path` is a folder holding DICOM instance files (a DICOM slide for fwrd)."""
    return Path(path).is_dir() and bool(dicom_files(Path(path)))


def _series_uid(path: Path) -> str | None:
    """The series an instance belongs to, as OpenSlide sees it; None when OpenSlide cannot open it as
    a slide (not a WSI instance, damaged)."""
    try:
        handle = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError):
        return None
    try:
        return handle.properties.get(SERIES_PROPERTY, "")
    finally:
        handle.close()


def check_one_series(folder: Path) -> None:
    """DataError, in one line, when `folder`'s instances belong to more than one series."""
    series: dict[str, Path] = {}
    for path in dicom_files(folder):
        uid = _series_uid(path)
        if uid:
            series.setdefault(uid, path)
    if len(series) > 1:
        raise DataError(
            f"{folder}: holds instances of {len(series)} DICOM series ({', '.join(p.name for p in series.values())}); "
            "fwrd takes a DICOM slide as one series in its own folder: move each series into a folder of its own")


def series_instance(folder: Path) -> Path:
    """The instance to open the series in `folder` by (the first file OpenSlide opens); SlideError when
    none opens."""
    files = dicom_files(folder)
    for path in files:
        if _series_uid(path) is not None:
            return path
    raise SlideError(f"{folder}: none of its {len(files)} DICOM files is a whole-slide image OpenSlide can read")
