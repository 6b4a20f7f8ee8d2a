"""Lesion FROC: hand-computed vectors and a bit-exact comparison with the organisers' loops."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.errors import DataError
from fwrd.evaluation.detections import Detections
from fwrd.evaluation.froc import (
    evaluation_mask,
    froc_curve,
    froc_score,
    itc_labels,
    itc_threshold,
    major_axis_lengths,
    match_slide,
    merge_threshold,
)

L = 32  # level-0 pixels per level-5 pixel


def dets(*rows: tuple[float, float, float]) -> Detections:
    """Detections from (prob, x, y) rows; x, y in level-0 pixels."""
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return Detections(a[:, 0], a[:, 1], a[:, 2])


def at(prob: float, row: int, col: int) -> tuple[float, float, float]:
    """A detection in the middle of level-5 pixel (row, col)."""
    return (prob, col * L + L // 2, row * L + L // 2)


# --- the organisers' Evaluation_FROC.py, transcribed to Python 3 (only `/` -> `//`) -----------------

def oracle_fp_tp(Ycorr, Xcorr, Probs, is_tumor, evaluation_mask, Isolated_Tumor_Cells, level):
    max_label = np.amax(evaluation_mask)
    FP_probs = []
    TP_probs = np.zeros((max_label,), dtype=np.float32)
    if is_tumor:
        for i in range(0, len(Xcorr)):
            HittedLabel = evaluation_mask[Ycorr[i] // pow(2, level), Xcorr[i] // pow(2, level)]
            if HittedLabel == 0:
                FP_probs.append(Probs[i])
            elif HittedLabel not in Isolated_Tumor_Cells:
                if Probs[i] > TP_probs[HittedLabel - 1]:
                    TP_probs[HittedLabel - 1] = Probs[i]
    else:
        for i in range(0, len(Xcorr)):
            FP_probs.append(Probs[i])
    num_of_tumors = max_label - len(Isolated_Tumor_Cells)
    return FP_probs, TP_probs, num_of_tumors


def oracle_froc(FROC_data):
    unlisted_FPs = [item for sublist in FROC_data[1] for item in sublist]
    unlisted_TPs = [item for sublist in FROC_data[2] for item in sublist]
    total_FPs, total_TPs = [], []
    all_probs = sorted(set(unlisted_FPs + unlisted_TPs))
    for Thresh in all_probs[1:]:
        total_FPs.append((np.asarray(unlisted_FPs) >= Thresh).sum())
        total_TPs.append((np.asarray(unlisted_TPs) >= Thresh).sum())
    total_FPs.append(0)
    total_TPs.append(0)
    total_FPs = np.asarray(total_FPs) / float(len(FROC_data[0]))
    total_sensitivity = np.asarray(total_TPs) / float(sum(FROC_data[3]))
    return total_FPs, total_sensitivity


# --- constants and the major axis ------------------------------------------------------------------

def test_constants_are_the_organisers():
    assert merge_threshold() == pytest.approx(75 / (0.243 * 32 * 2))
    assert merge_threshold() == pytest.approx(4.8225308642)
    assert itc_threshold() == pytest.approx(35.3652263374)


def test_major_axis_hand_computed_ellipse():
    # x^2/2^2 + y^2/1^2 <= 1 on integer points: 5 pixels in the middle row, one above and below.
    image = np.zeros((5, 7), dtype=np.int32)
    image[2, 1:6] = 1
    image[1, 3] = image[3, 3] = 1
    # column variance (4+1+0+1+4)/7 = 10/7, row variance 2/7, no covariance
    assert major_axis_lengths(image)[0] == pytest.approx(4 * np.sqrt(10 / 7))


def test_major_axis_rotated_and_lines():
    n = 10
    line = np.zeros((3, n), dtype=np.int32)
    line[1] = 1
    assert major_axis_lengths(line)[0] == pytest.approx(4 * np.sqrt((n * n - 1) / 12))
    diagonal = np.eye(n, dtype=np.int32)  # covariance [[v, v], [v, v]] -> largest eigenvalue 2v
    assert major_axis_lengths(diagonal)[0] == pytest.approx(4 * np.sqrt(2 * (n * n - 1) / 12))
    anti = np.fliplr(diagonal) * 2  # label 2 only: label 1 is absent and gets length 0
    assert major_axis_lengths(anti)[1] == pytest.approx(4 * np.sqrt(2 * (n * n - 1) / 12))


def test_major_axis_of_a_large_disc_is_its_diameter():
    yy, xx = np.mgrid[0:201, 0:201]
    disc = ((yy - 100) ** 2 + (xx - 100) ** 2 <= 80**2).astype(np.int32)
    assert major_axis_lengths(disc)[0] == pytest.approx(160, rel=0.01)


# --- the evaluation mask ---------------------------------------------------------------------------

def two_blocks(gap: int) -> np.ndarray:
    tumor = np.zeros((60, 120), dtype=bool)
    tumor[10:50, 10:50] = True
    tumor[10:50, 50 + gap : 90 + gap] = True
    return tumor


def test_lesions_closer_than_75um_merge():
    # gap of 8 level-5 pixels (62 um): every gap pixel is within 4 px of tumor -> one lesion
    assert evaluation_mask(two_blocks(8)).max() == 1
    # gap of 9 (70 um): the middle pixel is 5 px away, beyond 4.82 -> two lesions (the grid quirk)
    assert evaluation_mask(two_blocks(9)).max() == 2
    assert evaluation_mask(two_blocks(12)).max() == 2


def test_dilation_is_euclidean_and_strict():
    tumor = np.zeros((40, 40), dtype=bool)
    tumor[20, 20] = True
    region = evaluation_mask(tumor) > 0
    assert region[20, 24] and not region[20, 25]  # 4 < 4.8225 <= 5
    assert region[23, 23] and not region[24, 23]  # sqrt(18) = 4.24 kept, 5 dropped
    assert region.sum() == np.count_nonzero(
        (np.mgrid[0:40, 0:40][0] - 20) ** 2 + (np.mgrid[0:40, 0:40][1] - 20) ** 2 < merge_threshold() ** 2
    )


def test_hole_inside_a_lesion_is_filled():
    yy, xx = np.mgrid[0:80, 0:80]
    r = np.hypot(yy - 40, xx - 40)
    ring = (r >= 20) & (r <= 30)
    labels = evaluation_mask(ring)
    assert labels.max() == 1 and labels[40, 40] == 1  # the 20 px hole is far beyond the dilation
    outcome = match_slide("t", dets(at(0.7, 40, 40)), labels, itc_labels(labels))
    assert outcome.tp_probs.tolist() == [pytest.approx(0.7)] and outcome.fp_probs.size == 0


def test_regions_touching_at_a_corner_are_one_lesion_8_connectivity():
    # pixels (10, 10) and (15, 19), 10.3 px (80 um) apart: their dilated, hole-filled discs touch only
    # diagonally, so 8-connectivity makes one lesion where 4-connectivity would make two
    from scipy import ndimage

    tumor = np.zeros((40, 40), dtype=bool)
    tumor[10, 10] = tumor[15, 19] = True
    labels = evaluation_mask(tumor)
    assert labels.max() == 1
    assert ndimage.label(labels > 0)[1] == 2
    tumor[15, 19] = False
    tumor[15, 20] = True
    assert evaluation_mask(tumor).max() == 2


@pytest.mark.parametrize("seed", range(3))
def test_evaluation_mask_equals_the_whole_image_computation(seed):
    # the organisers' computeEvaluationMask on the whole image (skimage's 8-connected label -> scipy)
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    tumor = np.zeros((120, 160), dtype=bool)
    for _ in range(12):
        r, c = rng.integers(30, 90), rng.integers(40, 120)
        h, w = rng.integers(1, 20, size=2)
        tumor[r : r + h, c : c + w] = True
    tumor[40:60, 60:80] &= rng.uniform(size=(20, 20)) < 0.5  # ragged edges, small holes
    distance = ndimage.distance_transform_edt(255 - tumor.astype(np.uint8) * 255)
    filled = ndimage.binary_fill_holes(distance < 75 / (0.243 * pow(2, 5) * 2))
    expected = ndimage.label(filled, structure=np.ones((3, 3)))[0]
    assert np.array_equal(evaluation_mask(tumor), expected)
    edge = np.zeros((50, 50), dtype=bool)
    edge[0:3, 10:40] = edge[45:50, 0:2] = True  # tumor on the image border: no margin to crop
    distance = ndimage.distance_transform_edt(~edge)
    expected = ndimage.label(ndimage.binary_fill_holes(distance < merge_threshold()), np.ones((3, 3)))[0]
    assert np.array_equal(evaluation_mask(edge), expected)


def test_empty_mask_has_no_lesion():
    assert evaluation_mask(np.zeros((20, 30), dtype=bool)).max() == 0


# --- matching ---------------------------------------------------------------------------------------

def lesion_and_itc() -> tuple[np.ndarray, np.ndarray]:
    tumor = np.zeros((100, 100), dtype=bool)
    tumor[20:60, 20:60] = True  # a 40 x 40 block: a lesion
    tumor[85, 85] = True  # one pixel: dilated to a disc of diameter 9 px < 35.4 -> ITC
    labels = evaluation_mask(tumor)
    return labels, itc_labels(labels)


def test_itc_is_ignored_and_not_counted():
    labels, itcs = lesion_and_itc()
    assert labels.max() == 2 and len(itcs) == 1
    itc = int(itcs[0])
    assert labels[85, 85] == itc
    outcome = match_slide("t", dets(at(0.9, 85, 85), at(0.4, 30, 30)), labels, itcs)
    assert outcome.lesions == 1 and outcome.itcs == 1 and outcome.itc_hits == 1
    assert outcome.fp_probs.size == 0
    assert outcome.tp_probs[itc - 1] == 0 and outcome.tp_probs[labels[30, 30] - 1] == np.float32(0.4)


def test_detection_just_inside_and_outside_the_75um_zone():
    labels, itcs = lesion_and_itc()
    # the block's last column is 59: columns 60..63 are within 4 px, column 64 is 5 px away
    inside = (0.8, 63 * L + L - 1, 40 * L)  # last level-0 pixel of column 63 (integer division)
    outside = (0.6, 64 * L, 40 * L)  # first level-0 pixel of column 64
    outcome = match_slide("t", dets(inside, outside), labels, itcs)
    assert outcome.tp_probs[labels[40, 40] - 1] == np.float32(0.8)
    assert outcome.fp_probs.tolist() == [0.6]


def test_one_tp_per_lesion_at_its_max_and_missed_lesions_stay_zero():
    tumor = np.zeros((100, 200), dtype=bool)
    tumor[10:60, 10:60] = True
    tumor[10:60, 120:170] = True
    labels = evaluation_mask(tumor)
    a, b = labels[30, 30], labels[30, 150]
    outcome = match_slide("t", dets(at(0.3, 30, 30), at(0.9, 40, 40), at(0.5, 20, 20)), labels, itc_labels(labels))
    assert outcome.lesions == 2 and outcome.detected_lesions == 1
    assert outcome.tp_probs[a - 1] == np.float32(0.9) and outcome.tp_probs[b - 1] == 0


def test_normal_slide_every_detection_is_a_false_positive():
    outcome = match_slide("n", dets((0.2, 1e6, 1e6), (0.9, 0, 0)))
    assert outcome.fp_probs.tolist() == [0.2, 0.9] and outcome.lesions == 0 and outcome.tp_probs.size == 0


def test_detection_outside_the_mask_is_refused():
    labels, itcs = lesion_and_itc()
    with pytest.raises(DataError, match="outside"):
        match_slide("t", dets((0.5, 100 * L, 10)), labels, itcs, level0_size=(100 * L, 100 * L))
    # a level-0 pixel of a partial last block (mask size rounded down) maps to the last column
    outcome = match_slide("t", dets((0.5, 100 * L + 5, 10)), labels, itcs, level0_size=(100 * L + 20, 100 * L))
    assert outcome.fp_probs.tolist() == [0.5]


# --- the curve --------------------------------------------------------------------------------------

def test_hand_computed_froc():
    labels, itcs = lesion_and_itc()  # one lesion (label 1) and one ITC
    tumor = np.zeros((100, 200), dtype=bool)
    tumor[10:60, 10:60] = True
    tumor[10:60, 120:170] = True
    labels2 = evaluation_mask(tumor)
    slide_a = match_slide("a", dets(at(0.9, 30, 30), at(0.6, 40, 40), at(0.8, 85, 85), at(0.7, 95, 5)), labels, itcs)
    slide_b = match_slide("b", dets(at(0.4, 30, 30), at(0.3, 90, 100)), labels2, itc_labels(labels2))
    slide_c = match_slide("c", dets((0.5, 0, 0), (0.95, 10, 10)))
    curve = froc_curve([slide_a, slide_b, slide_c])
    # FPs: a 0.7; b 0.3; c 0.5, 0.95.  TP entries: a 0.9 and 0 (ITC); b 0.4 and 0 (missed).
    # thresholds: {0, .3, .4, .5, .7, .9f, .95} without 0
    assert curve.thresholds.tolist() == pytest.approx([0.3, 0.4, 0.5, 0.7, 0.9, 0.95])
    assert curve.fps_per_slide.tolist() == pytest.approx([4 / 3, 1, 1, 2 / 3, 1 / 3, 1 / 3, 0])
    assert curve.sensitivity.tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, 0, 0])
    assert curve.lesions == 3 and curve.slides == 3
    sens, score = froc_score(curve)
    # reversed: fps [0, 1/3, 1/3, 2/3, 1, 1, 4/3], sens [0, 0, 1/3, 1/3, 1/3, 2/3, 2/3]
    expected = np.interp([0.25, 0.5, 1, 2, 4, 8], [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 4 / 3],
                         [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert sens.tolist() == pytest.approx(expected.tolist())
    assert sens[0] == 0 and sens[1] == pytest.approx(1 / 3) and sens[-1] == pytest.approx(2 / 3)
    assert score == pytest.approx(float(np.mean(expected)))


def test_no_lesion_at_all_is_refused():
    with pytest.raises(DataError, match="no lesion"):
        froc_curve([match_slide("n", dets((0.5, 0, 0)))])
    with pytest.raises(DataError):
        froc_curve([])


def random_case(rng: np.random.Generator, tumor_slide: bool) -> tuple[Detections, np.ndarray | None]:
    shape = (48, 64)
    labels = None
    if tumor_slide:
        tumor = np.zeros(shape, dtype=bool)
        for _ in range(rng.integers(1, 6)):
            r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            h, w = rng.integers(1, 30, size=2)
            tumor[r : r + h, c : c + w] = True
        labels = evaluation_mask(tumor)
    n = int(rng.integers(0, 40))
    probs = np.round(rng.uniform(0, 1, n), 1)  # few distinct values: ties between FPs and TPs
    probs[rng.uniform(size=n) < 0.3] = 0.1  # float64 0.1 vs float32 0.1 are different thresholds
    xs = rng.integers(0, shape[1] * L, n)
    ys = rng.integers(0, shape[0] * L, n)
    return Detections(probs, xs.astype(np.float64), ys.astype(np.float64)), labels


@pytest.mark.parametrize("seed", range(6))
def test_bit_exact_against_the_organisers_loops(seed):
    rng = np.random.default_rng(seed)
    outcomes, data = [], [[], [], [], []]
    for i in range(8):
        d, labels = random_case(rng, tumor_slide=i % 3 != 2)
        itcs = itc_labels(labels) if labels is not None else np.zeros(0, int)
        outcomes.append(match_slide(f"s{i}", d, labels, itcs))
        fp, tp, n = oracle_fp_tp(
            [int(v) for v in d.y], [int(v) for v in d.x], [float(p) for p in d.probs], labels is not None,
            labels if labels is not None else 0, [int(v) for v in itcs], 5,
        )
        data[0].append(f"s{i}")
        data[1].append(fp)
        data[2].append(tp)
        data[3].append(n)
        assert outcomes[-1].fp_probs.tolist() == fp
        assert np.array_equal(outcomes[-1].tp_probs, tp) and outcomes[-1].lesions == n
    if sum(data[3]) == 0:
        pytest.skip("no lesion drawn")
    curve = froc_curve(outcomes, organisers=True)
    fps, sens = oracle_froc(data)
    assert np.array_equal(curve.fps_per_slide, fps)
    assert np.array_equal(curve.sensitivity, sens)
    expected = np.interp([0.25, 0.5, 1, 2, 4, 8], fps[::-1], sens[::-1])
    assert np.array_equal(froc_score(curve)[0], expected)
    if min(min(min(fp, default=1) for fp in data[1]), min(min(tp, default=1) for tp in data[2])) == 0:
        # a 0 (missed lesion, ITC or a 0 detection) is what the organisers' rule drops: the same curve
        default = froc_curve(outcomes)
        assert np.array_equal(default.fps_per_slide, fps) and np.array_equal(default.sensitivity, sens)


def test_a_perfect_detector_scores_one():
    # issue 11.13: `all_probs[1:]` drops the lowest real threshold when no lesion is missed
    tumor = np.zeros((200, 500), dtype=bool)
    corners = [(20 + 65 * i, 30 + 40 * (i % 3)) for i in range(7)]
    for c, r in corners:
        tumor[r:r + 40, c:c + 40] = True  # 40 px at level 5 (311 um): no ITC; 25 px apart: no merging
    labels = evaluation_mask(tumor)
    assert labels.max() == 7 and len(itc_labels(labels)) == 0
    probs = [0.9, 0.8, 0.75, 0.7, 0.6, 0.55, 0.5]
    outcome = match_slide("t", dets(*[at(p, r + 20, c + 20) for p, (c, r) in zip(probs, corners)]), labels)
    assert outcome.detected_lesions == 7 and outcome.fp_probs.size == 0
    assert froc_score(froc_curve([outcome]))[1] == 1.0
    organisers = froc_curve([outcome], organisers=True)
    assert froc_score(organisers)[1] == pytest.approx(6 / 7)  # what Evaluation_FROC.py reports
    fps, sens = oracle_froc([["t"], [[]], [outcome.tp_probs], [7]])
    assert np.array_equal(organisers.sensitivity, sens) and np.array_equal(organisers.fps_per_slide, fps)
