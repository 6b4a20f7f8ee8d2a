"""tiles.csv: the journal written while a slide streams, and the final file written from the grid.

While scoring, every batch is appended to `tiles.csv.part` (first line `#key=<score key>`, then the
`x,y,score` header and rows) and flushed, so an interrupted slide can continue where it stopped
(`--resume`) without rescoring: `read_journal` returns the rows of a journal with the same key,
ignoring a torn last line. At the end `write_tiles_csv` writes `tiles.csv` atomically from the
score grid in row-major order (the same order whatever the worker count) and the journal is removed.

The scores themselves are not bit-identical across worker counts: the workers decide which tiles
share a batch and how large the last, partial batches are, and a model's arithmetic can depend on the
batch (ONNX Runtime CPU picks kernels by batch size). Measured with a 64 px fp32 model (the tests'
demo recipe) on this project's CPU: batches of 8 and 16, and 1 or 3 workers at batch 16, gave
identical scores; scoring every tile in a batch of 1 changed 120 of 300 tiles by up to 2.4e-7
(relative 2e-7). The tests' stand-in model is batch-independent: there the files are byte-identical.
The journal's key also covers the slide file (fwrd.slide.identity), so a replaced slide never
continues another file's journal. The journal is opened without following links (fwrd.atomic.open_no_follow):
a link planted at its name in a staging folder is not a journal fwrd wrote, so `read_journal` ignores it
and `TileJournal` replaces the link itself, never the file it points to.

Scores are written with 9 significant digits, which round-trips float32 exactly.

With QC on (fwrd.runtime.qc_gate) the journal also carries each tile's QC features (the columns after
`score`, fwrd.slide.qc.FEATURES, also at 9 digits), so a resumed slide is judged on exactly the numbers a
fresh run would have, and tiles.csv gains a `qc` column: `ok`, or the artifact kind that kept the tile out
of the calls (its score stays in the file, raw).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO

import numpy as np

from fwrd.atomic import atomic_open, naming, open_no_follow
from fwrd.errors import FwrdError
from fwrd.runtime.outputs.heatmap import ScoreGrid

HEADER = "x,y,score"
JOURNAL_SUFFIX = ".part"


def _rows_text(xs: np.ndarray, ys: np.ndarray, scores: np.ndarray, extra: np.ndarray | None = None) -> str:
    if extra is None:
        return "".join(f"{int(x)},{int(y)},{float(s):.9g}\n" for x, y, s in zip(xs, ys, scores))
    return "".join(f"{int(x)},{int(y)},{float(s):.9g}," + ",".join(f"{float(v):.9g}" for v in row) + "\n"
                   for x, y, s, row in zip(xs, ys, scores, extra))


def write_tiles_csv(grid: ScoreGrid, path: str | Path, kinds: np.ndarray | None = None) -> None:
    """tiles.csv from the grid, row-major; with `kinds` (str per heatmap cell) a `qc` column too."""
    g = grid.geometry
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER + ("" if kinds is None else ",qc") + "\n")
        for xs, ys, scores in grid.rows():
            if kinds is None:
                handle.write(_rows_text(xs, ys, scores))
                continue
            names = kinds[ys // g.stride, xs // g.stride]
            handle.write("".join(f"{int(x)},{int(y)},{float(s):.9g},{k}\n" for x, y, s, k in zip(xs, ys, scores, names)))


class TileJournal:
    """Append-only `tiles.csv.part` for one slide run; one flush per batch."""

    def __init__(self, path: str | Path, key: str, *, continue_existing: bool, columns: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self._handle: IO[str] | None = None
        try:
            if continue_existing:
                fd = open_no_follow(self.path, os.O_WRONLY | os.O_APPEND)
                self._handle = open(fd, "a", encoding="utf-8", newline="")
            else:
                self.path.unlink(missing_ok=True)  # an old journal, or a link: the link itself, never its target
                fd = open_no_follow(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                self._handle = open(fd, "w", encoding="utf-8", newline="")
                self._handle.write(f"#key={key}\n{journal_header(columns)}\n")
                self._handle.flush()
        except OSError as exc:  # a full disk: say which file
            self.close()
            raise naming(exc, self.path) from None

    def append(self, coords: np.ndarray, scores: np.ndarray, extra: np.ndarray | None = None) -> None:
        assert self._handle is not None
        try:
            self._handle.write(_rows_text(coords[:, 0], coords[:, 1], scores, extra))
            self._handle.flush()
        except OSError as exc:
            raise naming(exc, self.path) from None

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()  # flushes what a failed write left buffered
            except OSError:
                pass  # the write that failed has already said why

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def journal_header(columns: tuple[str, ...] = ()) -> str:
    return ",".join((HEADER, *columns))


def read_journal(path: str | Path, key: str, columns: tuple[str, ...] = ()
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(coords int64 (N, 2), scores float32 (N,), extra float32 (N, len(columns))) of a journal written
    under `key` with those extra columns; None if there is none or it belongs to another model/settings.
    A torn last line is cut off the file."""
    path = Path(path)
    try:
        fd = open_no_follow(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except FwrdError:
        return None  # a link or a FIFO at the journal's name: not a journal fwrd wrote (TileJournal replaces it)
    with open(fd, "r+b") as handle:
        data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            handle.truncate(len(complete))
    lines = complete.decode("utf-8", errors="replace").splitlines()
    if len(lines) < 2 or lines[0] != f"#key={key}" or lines[1] != journal_header(columns):
        return None
    body = "\n".join(lines[2:])
    width = 3 + len(columns)
    if not body.strip():
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32), np.zeros((0, len(columns)), np.float32)
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    if table.shape[1] != width:
        return None
    return table[:, :2].astype(np.int64), table[:, 2].astype(np.float32), table[:, 3:].astype(np.float32)


def journal_path(tiles_csv: str | Path) -> Path:
    return Path(os.fspath(tiles_csv) + JOURNAL_SUFFIX)
