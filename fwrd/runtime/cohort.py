"""Score many slides: expand folders, take this shard, score each, keep slides.csv up to date.

One slide failing (corrupt, unreadable, no tissue) becomes a `failed` row and the others go on.
`--shard i/N` takes every N-th slide from the i-th (0-based) of the sorted list, so N independent
jobs (a Slurm array, N GPUs) split a cohort with no coordination; each shard writes its own
`slides.shard-i-of-N.csv` so that jobs sharing one output folder never overwrite each other.
slides.csv is `slide,score,status,error` with status `ok` (outputs complete, including slides that
--resume found already done) or `failed` (error says why), rewritten atomically after every slide.

    slides = select_shard(find_slides(["slides/"]), parse_shard("0/4"))
    results = score_cohort(slides, backend, Path("out"), RunSettings(resume=True))
"""

from __future__ import annotations

import csv
import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from fwrd.atomic import write_text
from fwrd.errors import FwrdError
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import SlideResult, score_slide


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/N' -> (i, N) with 0 <= i < N; None for None."""
    if text is None:
        return None
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise FwrdError(f"--shard takes i/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise FwrdError(f"--shard {text}: need 0 <= i < N")
    return index, count


def select_shard(slides: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Every N-th slide from the i-th: shards are disjoint and together cover the list."""
    if shard is None:
        return list(slides)
    index, count = shard
    return slides[index::count]


def slides_csv_name(shard: tuple[int, int] | None) -> str:
    return "slides.csv" if shard is None else f"slides.shard-{shard[0]}-of-{shard[1]}.csv"


def prepare_output(out: Path) -> None:
    """Create `out` and prove it is writable, or raise one clear line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".fwrd-write-test-"):
            pass
    except FileExistsError:
        raise FwrdError(f"cannot write outputs to {out}: it exists and is not a folder") from None
    except OSError as exc:
        raise FwrdError(f"cannot write outputs to {out}: {exc.strerror or exc}") from None


def score_cohort(
    slides: list[Path],
    backend: Backend,
    out: Path,
    settings: RunSettings,
    shard: tuple[int, int] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[SlideResult]:
    """Score `slides` in order (already sharded); one line per slide to `log` (stderr by default)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(out)
    prepare_output(out)
    table = out / slides_csv_name(shard)
    results: list[SlideResult] = []
    for number, path in enumerate(slides, start=1):
        try:
            result = score_slide(path, backend, out, settings)
        except (FwrdError, OSError) as exc:
            result = SlideResult(path.stem, path, "failed", None, _one_line(exc))
        except Exception as exc:  # a bug or an unexpected library error: report it, go on
            result = SlideResult(path.stem, path, "failed", None, f"{exc.__class__.__name__}: {_one_line(exc)}")
        results.append(result)
        _write_table(table, results)
        log(_cohort_line(number, len(slides), result))
    failed = sum(r.status == "failed" for r in results)
    log(f"cohort: {len(results)} slides, {len(results) - failed} ok, {failed} failed; {table}")
    return results


def _cohort_line(number: int, total: int, r: SlideResult) -> str:
    head = f"[{number}/{total}] {r.name}:"
    if r.status == "failed":
        return f"{head} FAILED: {r.error}"
    s = r.summary
    if r.status == "skipped":
        return f"{head} score {r.score:.4g} (complete outputs exist; skipped)"
    return (
        f"{head} score {r.score:.4g}, {s.get('tiles_scored')} tiles, {s.get('tiles_per_s')} tiles/s "
        f"({s.get('bottleneck') or 'nothing new'}-bound)"
    )


def _write_table(path: Path, results: list[SlideResult]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["slide", "score", "status", "error"])
    for r in results:
        score = "" if r.score is None else f"{r.score:.9g}"
        status = "failed" if r.status == "failed" else "ok"  # a skipped slide's outputs are complete
        writer.writerow([r.name, score, status, r.error])
    write_text(path, buffer.getvalue())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return text or exc.__class__.__name__
