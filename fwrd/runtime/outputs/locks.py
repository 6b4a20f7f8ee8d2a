"""Locks in OUT: which process scores which slide, and which Ray driver is still alive.

    OUT/.<slide>.lock      held by the process scoring the slide; a second fwrd-run on the same OUT refuses
                           that slide in one line naming the holder (pid, host, since when)
    OUT/.fwrd-ray-<id>     a Ray driver's marker (cluster.py), held by the driver while it runs
    OUT/.slides.lock       slides.csv's writers queue on it (slides_table.folder_lock); never removed

The locks are `fcntl.flock` locks, which belong to an open file and end with the process that holds them
(kill -9 included; on NFS the server's lock manager ends them with the client's process). A lock file
whose lock can be taken is therefore abandoned: `remove_abandoned` deletes those at the start of a run,
and a holder deletes its own when done. A process that took the lock of a file deleted meanwhile (its
holder finished between our open and our lock) sees that the name now points elsewhere and tries again.
Every open is O_NOFOLLOW: a symbolic link planted at a lock's name is refused in one line, never followed.
Where no lock can be taken (no fcntl, as on Windows, or a file system that refuses locks) a warning says
so and the run goes on unlocked, as slides.csv's writers do.

    with slide_lock(out, "tumor_001"):      # SlideBusy("tumor_001 is being scored by pid 4242 on node7 ...")
        ... score it ...
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from fwrd.atomic import open_no_follow
from fwrd.errors import FwrdError
from fwrd.safe_text import for_terminal

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"
TABLE_LOCK = ".slides.lock"
RAY_MARKER_PREFIX = ".fwrd-ray-"
_HOLDER_BYTES = 4096


class SlideBusy(FwrdError):
    """Another process is scoring this slide into the same OUT right now."""


def lock_path(out: Path, name: str) -> Path:
    return Path(out) / f".{name}{LOCK_SUFFIX}"


class LockUnavailable(OSError):
    """This system or file system takes no file locks (no fcntl, as on Windows; ENOLCK, EOPNOTSUPP)."""


def try_lock(path: Path, *, create: bool = True) -> int | None:
    """An open fd holding the exclusive lock of `path`, or None while another process holds it (or, with
    `create=False`, when there is no such file). LockUnavailable where no lock can be taken."""
    if fcntl is None:
        raise LockUnavailable(errno.ENOLCK, "no file locking on this system", str(path))
    while True:
        try:
            fd = open_no_follow(path, os.O_RDWR | (os.O_CREAT if create else 0))
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise LockUnavailable(exc.errno, exc.strerror or str(exc), str(path)) from None
        try:
            here = os.lstat(path)
            mine = os.fstat(fd)
            if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it between our open and our lock: take the new one


def release(path: Path, fd: int) -> None:
    """Delete the lock file `path` whose lock `fd` holds, then let go (see the module docstring)."""
    with suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def _holder_record() -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}).encode()


def describe_holder(path: Path) -> str:
    """'pid 4242 on host node7, since ...' from the lock file at `path` (written by its holder)."""
    try:
        fd = open_no_follow(path, os.O_RDONLY)
        try:
            record = json.loads(os.read(fd, _HOLDER_BYTES))
        finally:
            os.close(fd)
        return for_terminal(f"pid {int(record['pid'])} on host {record['host']}, since {record['since']}")
    except (OSError, ValueError, KeyError, TypeError, FwrdError):
        return "a process that has not said which yet"


@contextmanager
def slide_lock(out: Path, name: str) -> Iterator[None]:
    """Hold slide `name`'s lock in `out` for the block; SlideBusy, naming the holder, while another has it."""
    path = lock_path(out, name)
    try:
        fd = try_lock(path)
    except LockUnavailable as exc:
        warnings.warn(f"cannot lock {for_terminal(str(path))} ({exc.strerror}); concurrent runs into "
                      f"{for_terminal(str(out))} are not excluded")
        yield
        return
    if fd is None:
        raise SlideBusy(f"{for_terminal(name)} is being scored into {for_terminal(str(out))} by another process "
                        f"({describe_holder(path)}); wait for it to finish, or score into another --out")
    try:
        with suppress(OSError):  # who holds it is for messages only; a full disk fails where the outputs go
            os.ftruncate(fd, 0)
            os.write(fd, _holder_record())
        yield
    finally:
        release(path, fd)


def busy_holder(out: Path, name: str) -> str | None:
    """Who holds slide `name`'s lock in `out` right now ('pid ... on host ...'), else None."""
    path = lock_path(out, name)
    try:
        fd = try_lock(path, create=False)
    except (LockUnavailable, FwrdError):
        return None
    if fd is None:
        return describe_holder(path) if os.path.lexists(path) else None
    release(path, fd)  # abandoned: nobody holds it
    return None


@contextmanager
def held_marker(path: Path, text: str) -> Iterator[None]:
    """Create the file `path` holding `text` and hold its lock for the block (a Ray driver's marker:
    `remove_abandoned` deletes it after the driver is gone, however it ended)."""
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        if fcntl is not None:
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, text.encode())
        yield
    finally:
        release(path, fd)


def remove_abandoned(out: Path) -> list[Path]:
    """Delete slide locks and Ray markers in `out` that no living process holds (a killed run's)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(out))
    except FileNotFoundError:
        return removed
    for entry in entries:
        ours = entry.name.startswith(RAY_MARKER_PREFIX) or (
            entry.name.startswith(".") and entry.name.endswith(LOCK_SUFFIX) and entry.name != TABLE_LOCK)
        if not ours or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        with suppress(OSError, FwrdError):  # LockUnavailable included: then nothing can be told abandoned
            fd = try_lock(path, create=False)
            if fd is not None:
                release(path, fd)
                removed.append(path)
    return removed
