"""ROC curve and AUC in numpy, with ties handled as scikit-learn's `roc_curve` / `roc_auc_score`.

Scores are sorted in decreasing order (stable), one ROC point is made per distinct score (tied scores
move TPR and FPR together, i.e. a diagonal step, which counts a tied positive/negative pair as 1/2),
collinear points are dropped, the curve starts at (0, 0) with threshold +inf, and the AUC is the
trapezoidal area. Also the slide-level task (Camelyon16 task 1): one score per slide against
`reference.csv`.

    fpr, tpr, thresholds = roc_curve(labels, scores)
    auc = roc_auc(labels, scores)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fwrd.errors import DataError
from fwrd.evaluation.detections import SlideScore, slide_key
from fwrd.evaluation.slide_status import usable_slides


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.size != scores.size:
        raise DataError(f"{labels.size} labels but {scores.size} scores")
    if not np.isfinite(scores).all():
        raise DataError("scores must be finite numbers")
    if labels.all() or not labels.any():
        raise DataError("ROC AUC needs both positive and negative examples; only one class is present")
    return labels, scores


def roc_curve(
    labels: np.ndarray, scores: np.ndarray, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for `score >= threshold` = positive; thresholds[0] is +inf."""
    labels, scores = _check(labels, scores)
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last index of each distinct score
    tps = np.cumsum(labels)[last].astype(np.float64)
    fps = 1.0 + last - tps
    thresholds = scores[last]
    if drop_intermediate and tps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under y(x) by the trapezoidal rule (x monotonic)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (= P(score_pos > score_neg) + P(tie) / 2)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return trapezoid(tpr, fpr)


@dataclass(frozen=True)
class SlideEvaluation:
    """Slide-level ROC of the scored slides against the reference."""

    names: list[str]
    labels: np.ndarray  # bool, tumor
    scores: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    excluded: list[str]

    def to_dict(self) -> dict:
        return {
            "task": "slide classification (Camelyon16 task 1)",
            "auc": self.auc,
            "slides": len(self.names),
            "tumor_slides": int(self.labels.sum()),
            "normal_slides": int((~self.labels).sum()),
            "excluded": self.excluded,
            "roc": {
                "fpr": self.fpr.tolist(),
                "tpr": self.tpr.tolist(),
                "thresholds": [None if not np.isfinite(t) else float(t) for t in self.thresholds],
            },
            "per_slide": [
                {"slide": n, "tumor": bool(lab), "score": float(s)}
                for n, lab, s in zip(self.names, self.labels, self.scores)
            ],
        }


def evaluate_slides(
    scores: dict[str, SlideScore],
    reference: dict[str, tuple[str, bool]],
    exclude: Iterable[str] = (),
    review: str | None = None,
) -> SlideEvaluation:
    """Join slide scores with the reference (case-insensitive names) and compute the ROC AUC.

    Every reference slide that is not excluded needs a usable score, and every scored slide must be in the
    reference (fwrd.evaluation.slide_status): a partial join would quietly change the figure.
    """
    picked = usable_slides(scores, reference, exclude, review)
    excluded = {slide_key(e) for e in exclude} | ({slide_key(k) for k in reference} - {key for key, *_ in picked})
    names = [row.name for _, _, _, row in picked]
    labels = [bool(tumor) for _, _, tumor, _ in picked]
    values = [row.score for _, _, _, row in picked]
    label_arr = np.asarray(labels, dtype=bool)
    score_arr = np.asarray(values, dtype=np.float64)
    fpr, tpr, thresholds = roc_curve(label_arr, score_arr)
    return SlideEvaluation(
        names, label_arr, score_arr, fpr, tpr, thresholds, trapezoid(tpr, fpr),
        sorted(reference[k][0] if k in reference else k for k in excluded),
    )
