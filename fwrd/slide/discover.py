"""Which files are slides: the paths a user names, with folders expanded (one level, by suffix).

Every command that takes SLIDE_OR_DIR... (fwrd-patches, fwrd-run, fwrd-export --calibration) goes
through `find_slides`, so they agree on what a folder holds and all refuse two slides with one name
(their outputs, named after the slide, would collide).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fwrd.errors import DataError, InputNotFound

# file types OpenSlide reads (a folder is searched for these; files named directly are taken as they are)
SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm", ".czi",
)


def find_slides(paths: Iterable[str | Path]) -> list[Path]:
    """Slides named directly plus those in named folders (not recursive), sorted by name.

    Hidden files and Camelyon16 masks (`*_Mask.tif`) in a folder are skipped. InputNotFound for a path
    that does not exist; DataError for a folder without slides or two slides with the same name.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputNotFound(f"{path}: no such file or folder")
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
    unique = sorted(dict.fromkeys(p.resolve() for p in found), key=lambda p: (p.stem, str(p)))
    seen: dict[str, Path] = {}
    for p in unique:
        if p.stem in seen:
            raise DataError(f"two slides are named {p.stem!r} ({seen[p.stem]} and {p}); outputs would collide")
        seen[p.stem] = p
    return unique
