"""Which slides an evaluation may use: the one place `fwrd-eval` decides by a slide's status.

Every entry point (`fwrd-eval RUN_DIR`, `slides --scores`, `froc --detections`) takes the same rules, so
none reports a figure from inputs another would refuse (issue 21.5):

- a slide the reference lists (or, without one, the table lists) must have a usable row: status `ok`
  (fwrd-run's slides.csv) or none at all (a headerless Camelyon16 file); `failed`, any other status
  and a missing row are refused in one line unless the slide is `--exclude`d;
- a `review` slide (QC could not vouch for its calls) counts only with `--review include`, is left out
  with `--review exclude`, and is refused without either (fwrd.evaluation.review);
- a slide scored but not in the reference is refused;
- a run folder's table must agree with its slide folders, and its slides must come from one model,
  one set of settings and one threshold (`check_run`); fwrd-run's slides.csv given alone is checked
  against the folder it lies in (`check_scores_file`).
A bare Camelyon16 detections folder keeps the organisers' rule (a listed slide without a CSV counts
with no detections, and is named in the result): it has no table saying that a slide failed.

    picked = usable_slides(read_slide_scores(path), reference, exclude)   # [(key, name, tumor, row)]
    summaries = check_run(run_dir)                                        # {slide: summary.json}
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fwrd.errors import DataError
from fwrd.evaluation.detections import SlideScore, slide_key
from fwrd.evaluation.review import review_exclusions

USABLE = ("", "ok")  # "": a headerless name,probability file carries no status


def unusable(row: SlideScore, usable: tuple[str, ...] = USABLE) -> str | None:
    """Why a slide's row cannot be evaluated, for the error line (None: it can)."""
    if row.status.strip().lower() not in usable:
        return f"{row.name} ({row.status}{': ' + row.error if row.error else ''})"
    if row.score is None:
        return f"{row.name} (no score)"
    return None


def usable_slides(
    scores: dict[str, SlideScore], reference: dict[str, tuple[str, bool]] | None, exclude: Iterable[str] = (),
    review: str | None = None,
) -> list[tuple[str, str, bool | None, SlideScore]]:
    """(key, name, tumor or None without a reference, row) of every slide to evaluate, sorted by key;
    DataError, naming the first, for a failed, unscored, missing or unknown slide, or a review slide
    without a `review` choice ("include" or "exclude")."""
    statuses = {row.name: row.status.strip().lower() for row in scores.values()}
    excluded = {slide_key(e) for e in [*exclude, *review_exclusions(statuses, review)]}
    usable = USABLE + (("review",) if review == "include" else ())
    if reference is not None:
        unknown = sorted(s.name for k, s in scores.items() if k not in reference and k not in excluded)
        if unknown:
            raise DataError(f"slide {unknown[0]} is not in the reference ({len(unknown)} such slides)")
        wanted = {k: (name, tumor) for k, (name, tumor) in reference.items()}
    else:
        wanted = {k: (row.name, None) for k, row in scores.items()}
    picked, missing, refused = [], [], []
    for key, (name, tumor) in sorted(wanted.items()):
        if key in excluded:
            continue
        row = scores.get(key)
        problem = None if row is None else unusable(row, usable)
        if row is None:
            missing.append(name)
        elif problem is not None:
            refused.append(problem)
        else:
            picked.append((key, name, tumor, row))
    if refused:
        raise DataError(f"{len(refused)} slide(s) have no usable result, e.g. {refused[0]}; "
                        "re-run them or pass --exclude")
    if missing:
        raise DataError(f"{len(missing)} reference slide(s) have no score, e.g. {missing[0]}; "
                        "score them or pass --exclude")
    return picked


def check_run(out: Path) -> dict[str, dict[str, Any]]:
    """{slide: summary} of a fwrd-run folder's complete slides, after checking that its slides.csv agrees
    with the folder and that every slide was scored by one model with one set of settings (run key) and
    called at one threshold."""
    from fwrd.runtime.outputs.slides_table import check_slides_table

    summaries = check_slides_table(out)
    thresholds: dict[float, str] = {}
    for name, summary in summaries.items():
        if summary.get("threshold") is not None:
            thresholds.setdefault(float(summary["threshold"]), name)
    if len(thresholds) > 1:
        (a, first), (b, second) = list(thresholds.items())[:2]
        raise DataError(f"{out} mixes slides called at different thresholds ({first}: {a:g}; {second}: {b:g}); "
                        "score them again with one model and one threshold into one folder")
    return summaries


def check_scores_file(path: Path, scores: dict[str, SlideScore]) -> None:
    """A slide-score file that is fwrd-run's slides.csv (a status column) is evaluated only together with
    the run folder it describes (`check_run`): a table alone cannot show that one model made it."""
    if not any(row.status for row in scores.values()):
        return  # a headerless name,probability file (a Camelyon16 submission): nothing to check it against
    folder = Path(path).parent
    if not any((folder / row.name).is_dir() for row in scores.values()):
        raise DataError(f"{path} is fwrd-run's slides.csv, but the run folder it describes is not beside it: "
                        "evaluate the run folder (fwrd-eval RUN_DIR), or give a headerless name,probability file")
    check_run(folder)
