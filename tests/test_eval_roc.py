"""ROC/AUC with scikit-learn's tie handling, the slide-level join, and patch accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from fwrd.errors import DataError
from fwrd.evaluation.detections import SlideScore
from fwrd.evaluation.patches import accuracy_at, best_threshold, patch_metrics
from fwrd.evaluation.roc import evaluate_slides, roc_auc, roc_curve


def test_roc_curve_matches_scikit_learn_documented_example():
    # sklearn.metrics.roc_curve docstring: y = [1, 1, 2, 2], scores = [0.1, 0.4, 0.35, 0.8]
    fpr, tpr, thresholds = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert thresholds.tolist() == [np.inf, 0.8, 0.4, 0.35, 0.1]
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_ties_count_half():
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == pytest.approx(0.5)
    # one positive tied with one of two negatives, above the other: (1 + 0.5) / 2
    assert roc_auc(np.array([1, 0, 0]), np.array([0.7, 0.7, 0.2])) == pytest.approx(0.75)
    fpr, tpr, thr = roc_curve(np.array([1, 0, 0]), np.array([0.7, 0.7, 0.2]))
    assert fpr.tolist() == [0, 0.5, 1] and tpr.tolist() == [0, 1, 1]  # a diagonal step through the tie


@pytest.mark.parametrize("seed", range(4))
def test_auc_equals_the_mann_whitney_statistic(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60).astype(bool)
    labels[:2] = [True, False]
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes many ties
    u = mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert roc_auc(labels, scores) == pytest.approx(u / (labels.sum() * (~labels).sum()))
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fpr2, tpr2, _ = roc_curve(labels, scores)
    assert len(fpr2) <= len(fpr) and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_one_class_or_bad_scores_is_refused():
    with pytest.raises(DataError, match="one class"):
        roc_auc(np.array([1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(DataError, match="finite"):
        roc_auc(np.array([1, 0]), np.array([np.nan, 0.2]))


def reference():
    return {"test_001": ("Test_001", True), "test_002": ("Test_002", False), "test_003": ("Test_003", False),
            "test_049": ("Test_049", True)}


def test_slide_evaluation_joins_case_insensitively_and_excludes():
    scores = {"test_001": SlideScore("test_001", 0.9), "test_002": SlideScore("test_002", 0.95),
              "test_003": SlideScore("test_003", 0.1)}
    result = evaluate_slides(scores, reference(), exclude=["TEST_049"])
    assert result.auc == pytest.approx(0.5) and result.excluded == ["Test_049"]
    assert result.to_dict()["roc"]["thresholds"][0] is None  # +inf is not JSON


def test_slide_evaluation_refuses_partial_joins():
    scores = {"test_001": SlideScore("test_001", 0.9), "test_002": SlideScore("test_002", 0.95),
              "test_003": SlideScore("test_003", 0.1)}
    with pytest.raises(DataError, match="have no score, e.g. Test_049"):
        evaluate_slides(scores, reference())
    with pytest.raises(DataError, match="not in the reference"):
        evaluate_slides({**scores, "test_999": SlideScore("test_999", 0.2)}, reference(), ["test_049"])
    failed = {**scores, "test_003": SlideScore("test_003", None, "failed", "corrupt")}
    with pytest.raises(DataError, match="test_003 \\(failed: corrupt\\)"):
        evaluate_slides(failed, reference(), ["test_049"])


def test_patch_accuracy_and_best_threshold_hand_computed():
    labels = np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    scores = np.array([1.0, 1.5, 2.2, 1.8, 2.5, 3.0])
    assert accuracy_at(labels, scores, 2.0) == pytest.approx(4 / 6)  # 2.2 FP, 1.8 FN
    # cuts: >=3.0 -> 4/6, >=2.5 -> 5/6, >=2.2 -> 4/6, >=1.8 -> 5/6, >=1.5 -> 4/6; first best: 2.5
    threshold, accuracy = best_threshold(labels, scores)
    assert accuracy == pytest.approx(5 / 6) and threshold == pytest.approx((2.5 + 2.2) / 2)
    assert accuracy_at(labels, scores, threshold) == pytest.approx(accuracy)
    m = patch_metrics(labels, scores, 2.0)
    assert (m.sensitivity, m.specificity) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert m.auc == pytest.approx(8 / 9) and (m.normal, m.tumor) == (3, 3)


def test_best_threshold_at_the_extremes():
    # separable: any cut between 0.4 and 0.6 is perfect
    t, acc = best_threshold(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.6, 0.9]))
    assert acc == 1.0 and t == pytest.approx(0.5)
    # tumor scores lower than normal: calling nothing tumor is best (3 normal of 4)
    t, acc = best_threshold(np.array([0, 0, 0, 1], bool), np.array([0.5, 0.6, 0.7, 0.1]))
    assert acc == 0.75 and t > 0.7
    # mostly tumor: calling everything tumor is best
    t, acc = best_threshold(np.array([1, 1, 1, 0], bool), np.array([0.5, 0.6, 0.7, 0.55]))
    assert acc == 0.75 and accuracy_at(np.array([1, 1, 1, 0], bool), np.array([0.5, 0.6, 0.7, 0.55]), t) == 0.75
