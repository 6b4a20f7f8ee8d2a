"""A slide's output folder is complete or absent: outputs are made aside and swapped in whole.

    OUT/.<slide>.partial/    while a slide is scored: tiles.csv.part (the --resume journal), then every
                             output, summary.json last; also failure.json when its last attempt failed
    OUT/<slide>/             only ever a complete set of one run's outputs (the staging folder renamed)
    OUT/.<slide>.replaced/   the previous complete folder, for the moment of the swap, then removed

A rescore that fails therefore leaves the previous outputs as they were, never new tiles.csv beside
old detections.csv. The swap is two renames (no portable call replaces a non-empty folder): the old
folder aside, the staging folder in, the old one removed. A kill between the two renames leaves no
OUT/<slide>/ but a complete staging folder, which the next `--resume` swaps in without scoring; a
kill while scoring leaves the journal in the staging folder, which `--resume` continues.

    staging = fresh_staging(out, "tumor_001")        # or open_staging(...) to keep the journal
    ... write outputs into staging, summary.json last ...
    swap_in(staging, out / "tumor_001")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from fwrd.atomic import remove_stale_temps, write_json
from fwrd.runtime.outputs.summary import read_json_dict

STAGING_SUFFIX = ".partial"
REPLACED_SUFFIX = ".replaced"
FAILURE = "failure.json"


def staging_dir(out: Path, name: str) -> Path:
    return Path(out) / f".{name}{STAGING_SUFFIX}"


def replaced_dir(out: Path, name: str) -> Path:
    return Path(out) / f".{name}{REPLACED_SUFFIX}"


def slide_name_of_staging(folder: Path) -> str | None:
    """`tumor_001` for `OUT/.tumor_001.partial`, else None."""
    name = folder.name
    if name.startswith(".") and name.endswith(STAGING_SUFFIX) and len(name) > len(STAGING_SUFFIX) + 1:
        return name[1:-len(STAGING_SUFFIX)]
    return None


def is_scratch(folder: Path) -> bool:
    """A staging or replaced folder (never a slide's outputs, whatever it holds)."""
    name = folder.name
    return name.startswith(".") and (name.endswith(STAGING_SUFFIX) or name.endswith(REPLACED_SUFFIX))


def open_staging(out: Path, name: str) -> Path:
    """The slide's staging folder, kept as it is (a journal to continue); created when missing."""
    folder = staging_dir(out, name)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)  # this process owns the slide now
    return folder


def fresh_staging(out: Path, name: str) -> Path:
    """An empty staging folder for the slide (whatever an earlier attempt left there is removed)."""
    folder = staging_dir(out, name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def discard_staging(out: Path, name: str) -> None:
    shutil.rmtree(staging_dir(out, name), ignore_errors=True)


def swap_in(staging: Path, final: Path) -> None:
    """Replace `final` (if any) by the complete folder `staging`; see the module docstring."""
    (staging / FAILURE).unlink(missing_ok=True)
    aside = replaced_dir(final.parent, final.name)
    if aside.exists():
        shutil.rmtree(aside)
    if final.exists():
        os.rename(final, aside)
    os.rename(staging, final)
    shutil.rmtree(aside, ignore_errors=True)


def write_failure(out: Path, name: str, slide_path: str | Path, error: str) -> None:
    """Record that the slide's latest attempt failed (read back by the slides table)."""
    folder = staging_dir(out, name)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / FAILURE, {"slide": name, "path": str(slide_path), "error": error})


def read_failure(staging: Path) -> dict[str, Any] | None:
    return read_json_dict(staging / FAILURE)


def clear_failure(out: Path, name: str) -> None:
    (staging_dir(out, name) / FAILURE).unlink(missing_ok=True)
