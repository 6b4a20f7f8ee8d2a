"""A slide's output folder is complete or absent: outputs are made aside and swapped in whole.

    OUT/.<slide>.partial/      while a slide is scored: tiles.csv.part (the --resume journal), then every
                               output, summary.json last; removed when the attempt fails (kept, for
                               --resume, when a full disk or another OS error stopped it)
    OUT/<slide>/               only ever a complete set of one run's outputs (the staging folder renamed)
    OUT/.<slide>.replaced/     the previous complete folder, for the moment of the swap, then removed
    OUT/.<slide>.failed.json   the error of the slide's latest attempt, when it failed (read by slides.csv)

A rescore that fails therefore leaves the previous outputs as they were, never new tiles.csv beside
old detections.csv. The swap is two renames (no portable call replaces a non-empty folder): the old
folder aside, the staging folder in, the old one removed. A kill between the two renames leaves no
OUT/<slide>/ but a complete staging folder, which the next `--resume` swaps in without scoring; a
kill while scoring leaves the journal in the staging folder, which `--resume` continues.

OUT may be shared with other people (a lab server), so fwrd writes and deletes only what it owns:
- a slide's output name is one plain path component (`output_name`: never `.`, `..`, a separator, a
  control character or a name starting with `.`, which are fwrd's scratch names);
- OUT/<slide>/ is replaced only when it is recognisably fwrd's (a summary.json with fwrd's run key) or
  empty; a user's own folder of that name, a file or a symbolic link is refused in one line naming it;
- a staging or replaced folder is used only when it is a real folder (lstat, never a link to elsewhere);
  files in it are written atomically or opened without following links (tiles.py).

    name = output_name(Path("slides/tumor_001.svs"))      # "tumor_001"
    staging = fresh_staging(out, name)                    # or open_staging(...) to keep the journal
    ... write outputs into staging, summary.json last ...
    swap_in(staging, out / name)
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

from fwrd.atomic import remove_stale_temps, write_json
from fwrd.errors import FwrdError
from fwrd.runtime.outputs.summary import SUMMARY, read_json_dict
from fwrd.runtime.outputs.tiles import journal_path
from fwrd.safe_text import for_terminal
from fwrd.slide.discover import slide_name

STAGING_SUFFIX = ".partial"
REPLACED_SUFFIX = ".replaced"
FAILED_SUFFIX = ".failed.json"
RESERVED = ("slides.csv",)  # OUT's own files: a slide of that name would take their place
NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems
_SCRATCH_EXTRA = 1 + len(FAILED_SUFFIX)  # the longest scratch name: OUT/.<slide>.failed.json


class NotOurs(FwrdError):
    """A path in OUT that fwrd would write or delete, but that fwrd did not make."""


def output_name(slide_path: str | Path) -> str:
    """The name of the slide's outputs (OUT/<name>/): the file name the user gave, without its suffix (a
    DICOM series: its folder's name, fwrd.slide.discover.slide_name).

    FwrdError when that is not one plain path component: `..svs` would name OUT itself, a control
    character would reach every terminal that lists OUT, a leading `.` is fwrd's own scratch names.
    """
    path = Path(slide_path)
    name = slide_name(path)
    problem = ""
    if name in ("", ".", ".."):
        problem = "an empty name, '.' and '..' are OUT itself or its parent"
    elif "/" in name or "\\" in name or "\0" in name:
        problem = "it holds a path separator"
    elif name != for_terminal(name):
        problem = "it holds control characters or bytes that are not UTF-8"
    elif name.startswith("."):
        problem = "names starting with '.' are fwrd's scratch folders"
    elif name in RESERVED:
        problem = f"{name} is OUT's own table"
    elif len(name.encode()) > NAME_MAX - _SCRATCH_EXTRA:
        problem = f"it is longer than {NAME_MAX - _SCRATCH_EXTRA} bytes, too long for its scratch names"
    if problem:
        raise FwrdError(f"{for_terminal(str(path))}: the slide's name {for_terminal(name)!r} cannot name an output "
                        f"folder ({problem}); rename the file (or link it under a plain name)")
    return name


def staging_dir(out: Path, name: str) -> Path:
    return Path(out) / f".{name}{STAGING_SUFFIX}"


def replaced_dir(out: Path, name: str) -> Path:
    return Path(out) / f".{name}{REPLACED_SUFFIX}"


def failure_record(out: Path, name: str) -> Path:
    return Path(out) / f".{name}{FAILED_SUFFIX}"


def slide_name_of_failure(path: Path) -> str | None:
    """`tumor_001` for `OUT/.tumor_001.failed.json`, else None."""
    name = path.name
    if name.startswith(".") and name.endswith(FAILED_SUFFIX) and len(name) > len(FAILED_SUFFIX) + 1:
        return name[1:-len(FAILED_SUFFIX)]
    return None


def is_fwrd_outputs(folder: Path) -> bool:
    """Whether `folder` is a real folder holding fwrd-run's outputs (a summary.json with a run key)."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode) or not stat.S_ISREG(os.lstat(folder / SUMMARY).st_mode):
            return False
    except OSError:
        return False
    summary = read_json_dict(folder / SUMMARY)
    return summary is not None and "run_key" in summary and "score" in summary


def check_replaceable(out: Path, name: str) -> None:
    """NotOurs, naming the path, unless every path fwrd may write or delete for slide `name` in `out` is
    absent or its own: OUT/<name>/ fwrd's outputs (or empty), the scratch folders real folders."""
    final = Path(out) / name
    if (_real_folder(final, f"fwrd-run puts slide {name!r}'s outputs there") and not is_fwrd_outputs(final)
            and any(os.scandir(final))):
        raise NotOurs(f"{for_terminal(str(final))} is not a folder fwrd-run wrote (no fwrd summary.json in it), and "
                      "fwrd replaces only its own outputs: move it away or choose another --out")
    for scratch in (staging_dir(out, name), replaced_dir(out, name)):
        _real_folder(scratch)


def _kind(path: Path) -> str | None:
    """None (absent), 'folder' (a real one), 'file' (a regular one), 'link' or 'other' (a FIFO, a device),
    without following a link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return "link"
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _real_folder(path: Path, why: str = "fwrd-run names its scratch folders so") -> bool:
    """True for a real folder, False when absent; NotOurs for a link (never followed) or anything else."""
    kind = _kind(path)
    if kind == "link":
        raise NotOurs(f"{for_terminal(str(path))} is a symbolic link, not a folder fwrd-run made, and fwrd never "
                      "writes through links in OUT: remove it or choose another --out")
    if kind in ("file", "other"):
        raise NotOurs(f"{for_terminal(str(path))} is not a folder, and {for_terminal(why)}: move it away or choose "
                      "another --out")
    return kind == "folder"


def open_staging(out: Path, name: str) -> Path:
    """The slide's staging folder, kept as it is (a journal to continue); created when missing."""
    folder = staging_dir(out, name)
    if not _real_folder(folder):
        folder.mkdir(parents=True)
    remove_stale_temps(folder)  # this process owns the slide now
    return folder


def fresh_staging(out: Path, name: str) -> Path:
    """An empty staging folder for the slide (whatever an earlier attempt left there is removed)."""
    folder = staging_dir(out, name)
    if _real_folder(folder):
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def discard_staging(out: Path, name: str) -> None:
    """Remove the slide's staging folder (only a real folder: a link there is not fwrd's to follow)."""
    folder = staging_dir(out, name)
    if _kind(folder) == "folder":
        shutil.rmtree(folder, ignore_errors=True)


def swap_in(staging: Path, final: Path) -> None:
    """Replace `final` (if any) by the complete folder `staging`; see the module docstring."""
    out, name = final.parent, final.name
    check_replaceable(out, name)
    aside = replaced_dir(out, name)
    if _real_folder(aside):
        shutil.rmtree(aside)
    if _kind(final) is not None:
        os.rename(final, aside)
    os.rename(staging, final)
    shutil.rmtree(aside, ignore_errors=True)
    clear_failure(out, name)


def fail_slide(out: Path, name: str, slide_path: str | Path, error: str, keep_journal: bool = False) -> None:
    """Record that the slide's latest attempt failed (read back by the slides table) and remove what the
    attempt staged, so a failure leaves no folder behind and the next run simply tries the slide again.
    `keep_journal`: a failure of the machine's, not the slide's (a full disk), keeps a journal with scores
    in it for `--resume` to continue once that is fixed. Call it holding the slide's lock (locks.slide_lock)."""
    journal = journal_path(staging_dir(out, name) / "tiles.csv")
    if not (keep_journal and _kind(journal) == "file"):
        discard_staging(out, name)
    write_json(failure_record(out, name), {"slide": name, "path": str(slide_path), "error": error})


def read_failure(out: Path, name: str) -> dict[str, Any] | None:
    path = failure_record(out, name)
    if _kind(path) != "file":  # never read through a link, never block on a FIFO
        return None
    return read_json_dict(path)


def clear_failure(out: Path, name: str) -> None:
    failure_record(out, name).unlink(missing_ok=True)  # unlink removes a link itself, never its target
