"""The accuracy gates on constructed score vectors: int8 gates the ranking, the patch AUROC and the calls
at the model's threshold, and reports (does not bound) the score drift; fp16/fp32 still bound the drift."""

import numpy as np
import pytest

from fwrd.errors import ExportGateFailed
from fwrd.export.gate import GATES, compare_scores, enforce, flipped_calls

THRESHOLD = 1.0


def _scores():
    """16 tumor tiles around 2, 16 normal around 0.8 (labelled, first), 4 noise tiles at 2.4."""
    rng = np.random.default_rng(0)
    tumor, normal = 2.0 + 0.2 * rng.standard_normal(16), 0.8 + 0.02 * rng.standard_normal(16)
    scores = np.r_[tumor, normal, 2.4 + 0.01 * np.arange(4)]
    return scores, np.r_[np.ones(16, bool), np.zeros(16, bool)]


def test_int8_drift_that_keeps_ranking_and_calls_passes_and_is_reported():
    """The 1-epoch model's case: every score up by ~0.15 (over the old 0.15 / 10 % bound), order kept."""
    reference, is_tumor = _scores()
    exported = reference + 0.15 + 0.002 * np.sin(np.arange(len(reference)))
    report = compare_scores("int8", reference, {1: exported, 8: exported}, is_tumor, THRESHOLD)
    assert report.passed, report.failures
    assert report.max_abs_delta == pytest.approx(np.abs(exported - reference).max())
    assert report.max_rel_delta > 0.15  # reported, not bounded
    assert report.mean_delta == pytest.approx(0.15, abs=0.002) and report.flipped == 0
    assert "mean +0.15" in report.summary() and "flipped on 0 (0.0 %)" in report.summary()
    data = report.to_dict()
    assert data["threshold"] == THRESHOLD and data["flip_fraction"] == 0.0 and data["flipped"] == 0


def test_int8_drift_across_the_threshold_fails_on_the_flipped_calls():
    """The same shape of drift, but large enough to carry normal tissue over the threshold."""
    reference, is_tumor = _scores()
    exported = reference + 0.25  # normal tiles 0.8 -> 1.05 >= 1.0: called tumor
    report = compare_scores("int8", reference, {1: exported}, is_tumor, THRESHOLD)
    assert not report.passed and report.spearman == pytest.approx(1.0)
    assert report.auroc_exported == report.auroc_reference  # ranking intact: only the calls say it is wrong
    assert report.flipped == 16 and report.flip_fraction == pytest.approx(16 / 36)
    assert report.failures == ["the call at threshold 1 flipped on 16 of 36 tiles (44.4 % > 2 %; "
                               "mean score drift +0.25)"]


def test_int8_flip_bound_counts_the_worst_batch_and_allows_no_more_than_2_percent():
    reference = np.linspace(0.0, 2.0, 100)
    one_flip, three_flips = reference.copy(), reference.copy()
    one_flip[49] = 1.01  # 0.9899 -> 1.01 crosses 1.0
    three_flips[47:50] = 1.01
    assert compare_scores("int8", reference, {1: one_flip, 8: one_flip}, None, THRESHOLD).passed
    report = compare_scores("int8", reference, {1: one_flip, 8: three_flips}, None, THRESHOLD)
    assert not report.passed and report.flipped == 3 and "3 of 100 tiles (3.0 % > 2 %" in report.failures[0]


def test_flipped_calls_uses_the_runners_rule_score_at_or_above_is_tumor():
    reference = np.array([0.99, 1.0, 1.2, 0.5])
    assert flipped_calls(reference, np.array([1.0, 0.99, 1.3, 0.4]), THRESHOLD) == 2
    assert flipped_calls(reference, reference, THRESHOLD) == 0


def test_int8_gate_still_bounds_the_ranking_and_the_auroc():
    reference, is_tumor = _scores()
    shuffled = np.random.default_rng(1).permutation(reference)  # same values, ranking lost
    report = compare_scores("int8", reference, {1: shuffled}, is_tumor, THRESHOLD)
    assert not report.passed and any(f.startswith("Spearman") for f in report.failures)
    assert any(f.startswith("patch AUROC changed") for f in report.failures)


def test_int8_needs_the_threshold_and_fails_on_non_finite_scores():
    reference, is_tumor = _scores()
    with pytest.raises(ValueError, match="give the threshold"):
        compare_scores("int8", reference, {1: reference}, is_tumor, None)
    broken = reference.copy()
    broken[3] = np.nan
    report = compare_scores("int8", reference, {1: broken}, is_tumor, THRESHOLD)
    assert not report.passed and report.flipped == len(reference)


def test_fp16_still_bounds_the_drift_and_only_reports_the_calls():
    reference, is_tumor = _scores()
    report = compare_scores("fp16", reference, {1: reference + 0.02}, is_tumor, THRESHOLD)
    assert not report.passed and report.failures[0].startswith("max |delta score| 0.02")
    assert GATES["fp16"].max_flip_fraction is None
    report = compare_scores("fp16", reference, {1: reference + 0.25}, is_tumor, None)  # no threshold: no calls
    assert report.flipped == 0 and "flipped" not in report.summary()


@pytest.mark.parametrize("precision,advice", [
    ("int8", ["--precision fp16", "--calibration"]),
    ("fp16", ["--precision fp32"]),
])
def test_failed_gate_message_says_what_to_do_next(precision, advice):
    reference, is_tumor = _scores()
    report = compare_scores(precision, reference, {1: reference + 0.5}, is_tumor, THRESHOLD)
    with pytest.raises(ExportGateFailed) as failed:
        enforce(report)
    message = str(failed.value)
    assert message.startswith(f"{precision} export failed its accuracy gate: ") and "\n" not in message
    assert all(a in message.split(". Next: ")[1] for a in advice)
    with pytest.raises(ExportGateFailed, match=f"^{precision} engine failed"):
        enforce(report, "engine")
