"""Atomic file writes: a temp name in the same folder, then `os.replace`.

A reader (or `--resume`) therefore sees either the previous complete file or the new complete file,
never half of one, even when the run is killed mid-write. A kill can leave the temp file behind
(`.heatmap.npy.k3j9x_2a.tmp`: up to a checkpoint's size); whoever owns the folder next removes it with
`remove_stale_temps`. An OS error while writing (a full disk) names the file being written, not the
temp name or nothing at all.

    with atomic_path(out / "heatmap.npy") as tmp:
        np.save(tmp, grid)
    remove_stale_temps(out)                       # at the start of the next run that owns `out`

The temp file is created with O_EXCL and the rename replaces whatever is at the final name (a symbolic link
included) instead of writing through it, so a link planted in an output folder never redirects a write.
Files that are written in place (a journal, a lock) are opened with `open_no_follow` instead.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fwrd.errors import FwrdError
from fwrd.safe_text import for_terminal


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on failure remove it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise naming(exc, path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# Windows has none of these flags (and its links need privileges to make): there the checks below remain
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def open_no_follow(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """`os.open` that never follows a symbolic link at `path` and opens only a regular file (a FIFO or a
    device there would block or mislead): FwrdError naming the path otherwise. A file it creates gets the
    usual permissions (0666 less the umask), so a group sharing a folder shares its lock files too."""
    try:
        fd = os.open(path, flags | _NO_FOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FwrdError(f"{_shown(path)} is a symbolic link, and fwrd never writes through links it did not "
                            "make: remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FwrdError(f"{_shown(path)} is not a regular file, although fwrd writes a file of that name: remove it")
    return fd


def _shown(path: str | Path) -> str:
    return for_terminal(os.fspath(path))


def naming(exc: OSError, path: str | Path) -> OSError:
    """`exc` with `path` as its file name (ENOSPC from a write() names no file; a temp name is no help)."""
    if exc.filename is not None and not _TEMP.match(os.path.basename(os.fspath(exc.filename))):
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), os.fspath(path))


# mkstemp's names: prefix, 8 characters of [a-z0-9_], suffix
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temps(folder: str | Path, names: list[str] | None = None) -> list[Path]:
    """Remove the temp files `atomic_path` leaves when killed mid-write, in `folder` (not below it).

    Only the caller may know that nobody is writing there right now: call it where a run or a
    training owns the folder. `names` limits it to the temps of those final file names (a training
    folder may hold other commands' files). Returns what was removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None or (names is not None and match["name"] not in names):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            pass
    return removed


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open()` for writing whose result appears under `path` only once the block completes."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle


def write_json(path: str | Path, data: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, allow_nan=False)
        handle.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
