"""Which files are slides: the paths a user names, with folders expanded (one level, by suffix).

Every command that takes SLIDE_OR_DIR... (fwrd-patches, fwrd-run, fwrd-export --calibration) goes
through `find_slides`, so they agree on what a folder holds and all refuse two slides with one name
(their outputs, named after the slide, would collide).

A DICOM slide is a series of `.dcm` instance files in a folder of its own (fwrd.slide.dicom): the folder
is the slide and names it, whether the user names the folder, one of its instances, or the folder above
it; label, overview and thumbnail instances are never slides of their own.
A slide keeps the name the user gave it: a link `tumor_001.svs -> /archive/8f3a.svs` is scored as
tumor_001. A FIFO, socket or device named as a slide is refused before anything opens it (opening a FIFO
blocks until someone writes to it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from fwrd.errors import DataError, InputNotFound
from fwrd.safe_text import for_terminal
from fwrd.slide.dicom import DICOM_SUFFIX, check_one_series, dicom_files, is_dicom_series

# file types OpenSlide reads (a folder is searched for these; files named directly are taken as they are)
SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm", ".czi",
)


def slide_name(path: str | Path) -> str:
    """The name a slide's outputs go under: the file's stem, or the folder's name for a DICOM series."""
    path = Path(path)
    return path.name if path.is_dir() else path.stem


def find_slides(paths: Iterable[str | Path]) -> list[Path]:
    """Slides named directly plus those in named folders (not recursive, but a DICOM series folder
    inside a named folder is a slide), sorted by name.

    Hidden files and Camelyon16 masks (`*_Mask.tif`) in a folder are skipped. Paths are made absolute,
    never resolved (a link keeps its own name); the same file given twice is taken once. InputNotFound for
    a path that does not exist; DataError for a FIFO or device, a folder without slides, a folder of
    several DICOM series, or two slides with the same name.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputNotFound(f"{for_terminal(str(path))}: no such file or folder")
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise DataError(f"{for_terminal(str(path))}: not a regular file (a FIFO, socket or device); "
                            "slides must be files")
        if path.is_dir():
            inside = _folder_slides(path)
            if not inside:
                raise DataError(f"{path}: no slides in this folder ({', '.join(SLIDE_SUFFIXES)}, or folders "
                                "of DICOM series)")
            found.extend(inside)
        elif path.suffix.lower() == DICOM_SUFFIX:
            found.append(path.parent)  # an instance stands for its series, whose folder is the slide
        else:
            found.append(path)
    by_file: dict[str, Path] = {}
    for p in sorted((Path(os.path.abspath(p)) for p in found), key=lambda p: (slide_name(p), str(p))):
        by_file.setdefault(os.path.realpath(p), p)
    unique = list(by_file.values())
    seen: dict[str, Path] = {}
    for p in unique:
        name = slide_name(p)
        if name in seen:
            raise DataError(f"two slides are named {for_terminal(name)!r} ({for_terminal(str(seen[name]))} and "
                            f"{for_terminal(str(p))}); outputs would collide")
        seen[name] = p
        if p.is_dir():
            check_one_series(p)
    return unique


def _folder_slides(folder: Path) -> list[Path]:
    """The slide files in `folder`, the folder itself when it holds a DICOM series, and its subfolders
    that hold one."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    inside = [
        p for p in entries
        if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES and p.suffix.lower() != DICOM_SUFFIX
        and not p.stem.lower().endswith("_mask")
    ]
    if dicom_files(folder):
        inside.append(folder)
    inside.extend(p for p in entries if p.is_dir() and is_dicom_series(p))
    return inside
