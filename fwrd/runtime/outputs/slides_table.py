"""OUT/slides.csv: one row per slide of an output folder, rebuilt from the folder itself.

The table is never written from one run's memory: `update_slides_table` lists every slide folder of
OUT with complete outputs (summary.read_complete) plus every slide whose latest attempt failed (its
failure record, slide_folder.fail_slide; a failure wins over older complete outputs). Whatever ran
before (other shards, runs over other slides, a killed run), the table therefore tells the truth about
the folder, and `fwrd-eval RUN_DIR` refuses one that does not (`check_slides_table`).

Columns `slide,score,status,error`, sorted by slide; status `ok`, `review` (QC cannot vouch for the calls:
fwrd.runtime.qc_gate; error gives the reason, score is still the slide score of the tiles QC kept) or
`failed` (error says why). Slide names and errors come from other people's files: a cell a spreadsheet
would run as a formula (`=`, `+`, `-`, `@`, tab, CR) is written with a leading `'` (OWASP's rule,
fwrd.safe_text.csv_cell), which every reader of the table in fwrd takes off again (`read_table`, fwrd-eval).

Concurrent writers (shards of one cohort sharing OUT, a cluster driver) serialise on an exclusive
`fcntl.flock` of `OUT/.slides.lock`: each holds it while it records failures, scans the folder and
writes the table, so the last writer's table includes everyone's finished slides. flock works on local
disks and on NFS (Linux maps it to NFS byte-range locks); Lustre needs the `flock` mount option (with
`localflock` the lock only excludes writers on the same node). Where no lock can be taken (no fcntl, as
on Windows, or a file system that refuses it) the table is written without one and a warning says so:
two writers finishing at the same instant can then leave a table missing the other's last slide, which
`fwrd-eval` notices and the next `fwrd-run --resume` into the folder repairs.

    update_slides_table(out, failures=[("corrupt_007", Path("slides/corrupt_007.tif"), "corrupt JPEG tile")])
    summaries = check_slides_table(out)      # fwrd-eval: {slide: summary} of the table's ok rows
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwrd.atomic import open_no_follow, remove_stale_temps, write_text
from fwrd.errors import DataError
from fwrd.runtime.outputs.locks import TABLE_LOCK, SlideBusy, slide_lock
from fwrd.runtime.outputs.slide_folder import fail_slide, read_failure, slide_name_of_failure
from fwrd.runtime.outputs.summary import read_complete
from fwrd.safe_text import csv_cell, from_csv_cell

TABLE = "slides.csv"
HEADER = ["slide", "score", "status", "error"]


@dataclass(frozen=True)
class TableRow:
    slide: str
    score: float | None
    status: str  # "ok" | "review" | "failed"
    error: str = ""


def complete_slides(out: Path) -> dict[str, dict[str, Any]]:
    """{slide name: summary} of every complete slide folder in `out` (staging folders never count)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue  # scratch folders (no slide's name starts with "."), and never a link to elsewhere
        summary = read_complete(Path(entry.path))
        if summary is not None:
            found[entry.name] = summary
    return found


def failed_slides(out: Path) -> dict[str, str]:
    """{slide name: error} of the slides whose latest attempt failed."""
    found: dict[str, str] = {}
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        name = slide_name_of_failure(Path(entry.path))
        if name is not None:
            record = read_failure(out, name)
            if record is not None:
                found[name] = str(record.get("error", ""))
    return found


def table_rows(out: Path) -> list[TableRow]:
    """What slides.csv must say about `out` now."""
    rows = {name: TableRow(name, float(s["score"]), *slide_status(s)) for name, s in complete_slides(out).items()}
    rows.update({name: TableRow(name, None, "failed", error) for name, error in failed_slides(out).items()})
    return [rows[name] for name in sorted(rows)]


def slide_status(summary: dict[str, Any]) -> tuple[str, str]:
    """(status, reason) of a complete slide: `review` with QC's reason, else `ok` (summaries written before
    QC existed have no status)."""
    if summary.get("status") == "review":
        return "review", str(summary.get("review_reason") or "QC could not vouch for the calls")
    return "ok", ""


def render(rows: Iterable[TableRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for r in rows:
        writer.writerow([csv_cell(r.slide), "" if r.score is None else f"{r.score:.9g}", r.status, csv_cell(r.error)])
    return buffer.getvalue()


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out/.slides.lock` (see the module docstring for where none exists)."""
    try:
        import fcntl
    except ImportError:  # Windows
        warnings.warn(f"no file locking on this system: concurrent runs into {out} may race on {TABLE}")
        yield
        return
    path = Path(out) / TABLE_LOCK
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)  # a link planted there is refused, never followed
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            warnings.warn(f"cannot lock {path} ({exc.strerror}); writing {TABLE} without a lock")
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def update_slides_table(out: Path, failures: Iterable[tuple[str, str | Path, str]] = ()) -> Path:
    """Record `failures` (slide name, slide path, error) and rewrite OUT/slides.csv from the folder.

    The one place the table is written, for `fwrd-run` and any other driver of `score_slide`. Leaves
    the file untouched when it already says the same (a `--resume` with nothing to do writes nothing,
    so it works on a full disk). `score_slide` records its own failures; `failures` are those it could
    not record (a Ray actor that died scoring the slide), each written under the slide's lock and
    skipped while another process scores that slide (its result is the one that counts).
    """
    out = Path(out)
    path = out / TABLE
    with folder_lock(out):
        for name, slide_path, error in failures:
            with suppress(SlideBusy), slide_lock(out, name):
                fail_slide(out, name, slide_path, error)
        remove_stale_temps(out, [TABLE])
        text = render(table_rows(out))
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            write_text(path, text)
    return path


def read_table(path: Path) -> dict[str, dict[str, str]]:
    """{slide: row} of a slides.csv, with the cells `render` neutralised read back as written."""
    try:
        rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
        return {from_csv_cell(r["slide"]): {**r, "slide": from_csv_cell(r["slide"]),
                                            "error": from_csv_cell(r.get("error") or "")} for r in rows}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def check_slides_table(out: Path) -> dict[str, dict[str, Any]]:
    """{slide: summary} of the complete slides (ok and review) of a run folder, after checking that slides.csv agrees
    with the folder and that every slide was scored with the same model and settings (run_key).

    Raises DataError naming the first disagreement: `fwrd-eval` must not report from a stale table
    (an old run's, one shard's) or from a folder that mixes two models.
    """
    out = Path(out)
    path = out / TABLE
    table = read_table(path)
    expected = {r.slide: r for r in table_rows(out)}
    fix = f"`fwrd-run ... --out {out} --resume` rewrites it from the slide folders"
    for name, row in expected.items():
        got = table.get(name)
        if got is None:
            raise DataError(f"{path} does not list slide {name}, which has {row.status} outputs in {out}; {fix}")
        if got.get("status") != row.status or (row.score is not None and got.get("score") != f"{row.score:.9g}"):
            raise DataError(
                f"{path} says {name} is {got.get('status')} with score {got.get('score') or 'none'}, but its "
                f"folder says {row.status}" + ("" if row.score is None else f" with score {row.score:.9g}")
                + f"; {fix}"
            )
    extra = sorted(set(table) - set(expected))
    if extra:
        raise DataError(f"{path} lists slide {extra[0]}, which has no complete outputs in {out}; {fix}")
    summaries = complete_slides(out)
    used = {name: summaries[name] for name, row in expected.items() if row.status in ("ok", "review")}
    keys: dict[str, str] = {}
    for name, summary in used.items():
        keys.setdefault(str(summary.get("run_key")), name)
    if len(keys) > 1:
        (key_a, a), (key_b, b) = list(keys.items())[:2]
        raise DataError(
            f"{out} mixes slides scored with different models or settings ({a}: run key {key_a}, model "
            f"{_model(used[a])}; {b}: run key {key_b}, model {_model(used[b])}); score them again with one "
            "model into one folder"
        )
    return used


def _model(summary: dict[str, Any]) -> str:
    model = summary.get("model") or {}
    return f"{model.get('path', '?')} (sha256 {str(model.get('sha256', '?'))[:12]})"
