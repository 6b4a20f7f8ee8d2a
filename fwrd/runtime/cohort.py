"""Score many slides: expand folders, take this shard, score each, keep OUT/slides.csv true.

One slide failing (corrupt, unreadable, no tissue, non-finite scores) is recorded as failed and the
others go on. `--shard i/N` takes every N-th slide from the i-th (0-based) of the sorted list, so N
independent jobs (a Slurm array, N GPUs) split a cohort with no coordination, sharing one output
folder: after every slide, OUT/slides.csv (`slide,score,status,error`) is rebuilt from the folder under
a lock (outputs/slides_table.py), so it lists every slide of OUT with complete outputs, whichever shard
or earlier run made them, plus the slides whose latest attempt failed. Two runs that are given the same
slides and OUT by mistake never score one slide at once: the second skips it (status `busy`, not
recorded), naming the process that holds it (outputs/locks.py), and exits non-zero.

    slides = select_shard(find_slides(["slides/"]), parse_shard("0/4"))
    results = score_cohort(slides, backend, Path("out"), RunSettings(resume=True))
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from fwrd.errors import FwrdError
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.outputs.locks import TABLE_LOCK, SlideBusy, busy_holder, remove_abandoned
from fwrd.runtime.outputs.slide_folder import check_replaceable, output_name, staging_dir
from fwrd.runtime.outputs.slides_table import update_slides_table
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import SlideResult, error_line, score_slide
from fwrd.safe_text import for_terminal
from fwrd.slide.discover import slide_name


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


def check_output_folder(out: Path) -> None:
    """Refuse an output folder that cannot be written, without creating anything (outputs are made
    only once the model and the slides have been checked)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FwrdError(f"cannot write outputs to {out}: it exists and is not a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FwrdError(f"cannot write outputs to {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FwrdError(f"cannot write outputs to {out}: {existing} is not writable")


def check_slide_outputs(out: Path, slides: list[Path]) -> None:
    """Before anything is written: FwrdError, in one line, when a slide's name cannot name a folder or
    OUT holds something at a path fwrd would write or delete that fwrd did not make (a user's folder of a
    slide's name, a symbolic link; slide_folder.check_replaceable)."""
    out = Path(out)
    names = [output_name(p) for p in slides]
    if os.path.islink(out / TABLE_LOCK):
        raise FwrdError(f"{for_terminal(str(out / TABLE_LOCK))} is a symbolic link, and fwrd never writes through "
                        "links in OUT: remove it or choose another --out")
    if out.is_dir():
        for name in names:
            check_replaceable(out, name)


def existing_outputs(out: Path, slides: list[Path]) -> list[str]:
    """Names of `slides` that already have outputs (complete, or an interrupted attempt's journal) in `out`;
    a failed attempt leaves none (rerunning the same command tries it again)."""
    out = Path(out)
    names = [output_name(p) for p in slides]
    return [n for n in names if os.path.lexists(out / n) or os.path.lexists(staging_dir(out, n))]


def being_scored(out: Path, names: list[str]) -> str:
    """'; tumor_001 is being scored now by pid 4242 on host node7, since ...' for the first of `names` that
    another process holds, else ''."""
    for name in names:
        holder = busy_holder(Path(out), name)
        if holder:
            return f"; {for_terminal(name)} is being scored now by {holder}"
    return ""


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
    log: Callable[[str], None] | None = None,
    say_failures: bool = True,
) -> list[SlideResult]:
    """Score `slides` in order (already sharded); one line per slide to `log` (stderr by default), except
    failed slides' with `say_failures=False` (a caller that reports the error itself, once)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(out)
    prepare_output(out)
    remove_abandoned(out)  # locks and Ray markers of killed runs
    results: list[SlideResult] = []
    for number, path in enumerate(slides, start=1):
        result = score_or_fail(path, backend, out, settings)
        results.append(result)
        if result.status != "failed" or say_failures:
            log(_cohort_line(number, len(slides), result))
        try:
            table = update_slides_table(out)
        except OSError as exc:  # a full disk: say what failed first, then what could not be recorded
            first = f"{for_terminal(result.name)} failed ({result.error}), and " if result.status == "failed" else ""
            raise FwrdError(f"{first}cannot update the slides table: {error_line(exc)}") from None
    if not slides:
        table = update_slides_table(out)
    log(cohort_line(results, table))
    return results


def cohort_line(results: list[SlideResult], table: Path) -> str:
    """The run's last line: how many slides ended how (ok, review, failed, left to another process), and
    where the table is."""
    busy = sum(r.status == "busy" for r in results)
    others = f", {busy} left to the process scoring them" if busy else ""
    return f"cohort: {len(results)} slides, {status_counts(results)}{others}; {for_terminal(str(table))}"


def score_or_fail(path: Path, backend: Backend, out: Path, settings: RunSettings) -> SlideResult:
    """`score_slide`, with the slide's own failure (corrupt, unreadable, a library error) as a `failed`
    result instead of an exception: what every scheduler (this loop, a cluster actor) records."""
    try:
        return score_slide(path, backend, out, settings)
    except SlideBusy as exc:  # another process scores it: nothing recorded, its result is the one that counts
        return SlideResult(slide_name(path), path, "busy", None, str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected library error too: report it, go on
        return SlideResult(slide_name(path), path, "failed", None, error_line(exc))


def status_counts(results: list[SlideResult]) -> str:
    """`2 ok, 1 review, 0 failed` (skipped slides count as what their outputs say; slides another process
    scores are not counted)."""
    review = sum(slide_verdict(r) == "review" for r in results)
    failed = sum(r.status == "failed" for r in results)
    busy = sum(r.status == "busy" for r in results)
    return f"{len(results) - review - failed - busy} ok, {review} review, {failed} failed"


def slide_verdict(result: SlideResult) -> str:
    """ok, review or failed, whether the slide was scored now or its complete outputs were kept."""
    if result.status == "skipped":
        return str(result.summary.get("status") or "ok")
    return result.status


def _cohort_line(number: int, total: int, r: SlideResult) -> str:
    """The slide's line, then one `warning:` line per warning its summary records (--mpp over metadata),
    each escaped for the terminal."""
    lines = [_cohort_text(number, total, r)]
    if r.status not in ("failed", "busy"):
        lines += [f"warning: {r.name}: {w}" for w in r.summary.get("warnings") or ()]
    return "\n".join(for_terminal(line) for line in lines)


def _cohort_text(number: int, total: int, r: SlideResult) -> str:
    head = f"[{number}/{total}] {r.name}:"
    if r.status == "failed":
        return f"{head} FAILED: {r.error}"
    if r.status == "busy":
        return f"{head} NOT SCORED: {r.error}"
    if slide_verdict(r) == "review":
        head = f"{head} REVIEW ({r.error}):"
    s = r.summary
    if r.status == "skipped":
        return f"{head} score {r.score:.4g} (complete outputs exist; skipped)"
    if not s.get("tiles_this_run"):
        return f"{head} score {r.score:.4g}, {s.get('tiles_scored')} tiles, all from the interrupted run's journal"
    return (
        f"{head} score {r.score:.4g}, {s.get('tiles_scored')} tiles, {s.get('tiles_per_s')} tiles/s "
        f"({s.get('bottleneck')}-bound)"
    )
