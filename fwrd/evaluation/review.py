"""Slides a run marked `review` (QC could not vouch for their calls: fwrd.runtime.qc_gate) in an evaluation.

A review slide's score and detections come from the tiles QC kept, but a person should look at it first:
counting it silently could flatter or hurt a figure. So every `fwrd-eval` entry that reads a run's statuses
refuses one holding review slides unless told what to do with them: `--review include` (count them with the
score and detections the run gave) or `--review exclude` (leave them out, as `--exclude` would). The
printed tables say which slides were left out.

    names_to_exclude = review_exclusions({"tumor_001": "ok", "normal_007": "review"}, choice="exclude")
"""

from __future__ import annotations

from collections.abc import Mapping

from fwrd.errors import DataError

CHOICES = ("include", "exclude")


def review_exclusions(statuses: Mapping[str, str], choice: str | None) -> list[str]:
    """The slides to leave out for `choice` (sorted): the review ones for "exclude", none for "include".
    DataError when review slides are present and no choice was made."""
    review = sorted(name for name, status in statuses.items() if status == "review")
    if not review:
        return []
    if choice not in CHOICES:
        shown = ", ".join(review[:5]) + (f" (+{len(review) - 5} more)" if len(review) > 5 else "")
        raise DataError(f"{len(review)} slide(s) are marked review by QC ({shown}): their calls need a look before "
                        "they count; pass --review include (count them as scored) or --review exclude (leave "
                        "them out)")
    return review if choice == "exclude" else []
