"""Atomic file writes: a temp name in the same folder, then `os.replace`.

A reader (or `--resume`) therefore sees either the previous complete file or the new complete file,
never half of one, even when the run is killed mid-write.

    with atomic_path(out / "heatmap.npy") as tmp:
        np.save(tmp, grid)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
