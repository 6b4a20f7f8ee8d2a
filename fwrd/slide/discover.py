"""Which files are slides: the paths a user names, with folders expanded (one level, by suffix).

Every command that takes SLIDE_OR_DIR... (fwrd-patches, fwrd-run, fwrd-export --calibration) goes
through `find_slides`, so they agree on what a folder holds and all refuse two slides with one name
(their outputs, named after the slide, would collide). A slide keeps the name the user gave it: a link
`tumor_001.svs -> /archive/8f3a.svs` is scored as tumor_001. A FIFO, socket or device named as a slide
is refused before anything opens it (opening a FIFO blocks until someone writes to it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from fwrd.errors import DataError, InputNotFound
from fwrd.safe_text import for_terminal

# file types OpenSlide reads (a folder is searched for these; files named directly are taken as they are)
SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm", ".czi",
)


def find_slides(paths: Iterable[str | Path]) -> list[Path]:
    """Slides named directly plus those in named folders (not recursive), sorted by name.

    Hidden files and Camelyon16 masks (`*_Mask.tif`) in a folder are skipped. Paths are made absolute,
    never resolved (a link keeps its own name); the same file given twice is taken once. InputNotFound for
    a path that does not exist; DataError for a FIFO or device, a folder without slides or two slides
    with the same name.
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
            inside = sorted(
                p for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES and not p.name.startswith(".")
                and not p.stem.lower().endswith("_mask")
            )
            if not inside:
                raise DataError(f"{path}: no slides in this folder ({', '.join(SLIDE_SUFFIXES)})")
            found.extend(inside)
        else:
            found.append(path)
    by_file: dict[str, Path] = {}
    for p in sorted((Path(os.path.abspath(p)) for p in found), key=lambda p: (p.stem, str(p))):
        by_file.setdefault(os.path.realpath(p), p)
    unique = list(by_file.values())
    seen: dict[str, Path] = {}
    for p in unique:
        if p.stem in seen:
            raise DataError(f"two slides are named {for_terminal(p.stem)!r} ({for_terminal(str(seen[p.stem]))} and "
                            f"{for_terminal(str(p))}); outputs would collide")
        seen[p.stem] = p
    return unique
