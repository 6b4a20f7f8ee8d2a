"""Camelyon16 lesion-level FROC, step for step as the organisers' `Evaluation_FROC.py` computes it.

1. Evaluation mask (`evaluation_mask`): tumor pixels at level 5, Euclidean distance transform of the
   rest, keep distance < 75 / (0.243 * 2^5 * 2) px (lesions closer than 75 um merge), fill holes, label
   with 8-connectivity.
2. ITCs (`itc_labels`): regions whose major axis (scikit-image `regionprops` definition, 4 * sqrt of the
   largest eigenvalue of the inertia tensor, `major_axis_lengths`) is < 275 / (0.243 * 2^5) px.
3. Matching (`match_slide`): a detection hits `labels[int(Y / 2^5), int(X / 2^5)]`: label 0 is a false
   positive, an ITC is ignored, a lesion keeps the highest probability (stored as float32, as the
   organisers' `TP_probs` array). Every detection on a normal slide is a false positive.
4. Curve (`froc_curve`): thresholds = sorted distinct probabilities of all FPs and all per-label TP
   entries (zeros of missed lesions and ITCs included), without the 0 (see below); FPs/slide over
   every slide, sensitivity over the lesions (labels minus ITCs), then (0, 0) appended.
5. Score (`froc_score`): mean of `np.interp([1/4, 1/2, 1, 2, 4, 8], fps[::-1], sens[::-1])`.

Numerics match the original to the bit: FP probabilities are compared in float64 and TP entries in
float32 against each threshold (numpy casts the Python-float threshold to float32 there).

Where the organisers' code has a plain bug, the intent is followed:
- Python-2 integer division `Y / pow(2, level)` (an index error in Python 3) -> floor division.
- `is_tumor = case[0:5] == 'Tumor'` (case-sensitive file-name test, so `tumor_001.csv` or any test
  slide counted as normal) -> a slide is a tumor slide when it has a mask.
- An empty tumor mask: scipy's distance transform of an image without tumor pixels measures distances
  to a phantom point outside the corner, which would invent a lesion there -> no lesions.
- A detection just past the last level-5 row or column (a level-0 pixel of a partial block when the
  mask pyramid rounds its size down) -> the last row or column instead of an IndexError; a detection
  outside the mask's level-0 extent is refused as bad input (the original crashes or, when negative,
  wraps around to the far edge).
- No lesion in the whole evaluation (the original divides by zero) -> refused.
- The lowest threshold. The original always drops it (`all_probs[1:]`), which exists to drop the 0
  that missed lesions and ITCs contribute (at a threshold of 0 they would count as found). When no
  lesion is missed and there is no ITC there is no such 0, and it drops the lowest *real* threshold
  instead: a perfect detector scores 6/7 on a 7-lesion cohort. By default fwrd drops thresholds
  <= 0 only, which is the same curve whenever a 0 is present (every cohort with a missed lesion or an
  ITC) and the intended one otherwise; `organisers=True` (`fwrd-eval --organisers-froc`) keeps the
  original's rule exactly, for comparing with leaderboard figures.

    labels = evaluation_mask(tumor_level5)
    outcome = match_slide("tumor_001", detections, labels, itc_labels(labels), level0_size=(w, h))
    curve = froc_curve([outcome, ...]); sens, score = froc_score(curve)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from fwrd.errors import DataError
from fwrd.evaluation.detections import Detections, read_detections, slide_key
from fwrd.evaluation.masks import EVALUATION_LEVEL, MaskSource, load_mask

L0_RESOLUTION = 0.243  # um per level-0 pixel, the organisers' constant for every slide
MERGE_UM = 75.0  # lesions closer than this merge (5 tumor cells)
ITC_UM = 275.0  # regions with a shorter major axis are isolated tumor cells
FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def merge_threshold(resolution: float = L0_RESOLUTION, level: int = EVALUATION_LEVEL) -> float:
    """Distance (level pixels) kept around tumor: 75 / (r * 2^L * 2) = 4.8225 px at level 5."""
    return MERGE_UM / (resolution * pow(2, level) * 2)


def itc_threshold(resolution: float = L0_RESOLUTION, level: int = EVALUATION_LEVEL) -> float:
    """Major-axis length (level pixels) below which a region is an ITC: 35.365 px at level 5."""
    return ITC_UM / (resolution * pow(2, level))


def evaluation_mask(
    tumor: np.ndarray, resolution: float = L0_RESOLUTION, level: int = EVALUATION_LEVEL
) -> np.ndarray:
    """Label image (int32, 0 = background) of the merged, hole-filled lesions of a level-`level` mask.

    Computed on the tumor's bounding box plus a margin wider than the dilation, which gives the same
    result as the whole image (every kept pixel is near tumor; a background component that reaches
    the margin is open to the outside either way) at a fraction of the cost on a slide-sized mask.
    """
    tumor = np.asarray(tumor, dtype=bool)
    labels = np.zeros(tumor.shape, dtype=np.int32)
    rows, cols = np.flatnonzero(tumor.any(axis=1)), np.flatnonzero(tumor.any(axis=0))
    if rows.size == 0:
        return labels
    threshold = merge_threshold(resolution, level)
    margin = int(np.ceil(threshold)) + 1
    box = (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
           slice(max(cols[0] - margin, 0), cols[-1] + margin + 1))
    distance = ndimage.distance_transform_edt(~tumor[box])
    filled = ndimage.binary_fill_holes(distance < threshold)
    labels[box] = ndimage.label(filled, structure=np.ones((3, 3), dtype=bool))[0]
    return labels


def major_axis_lengths(labels: np.ndarray) -> np.ndarray:
    """skimage `regionprops(labels)[i].major_axis_length` for labels 1..max, in numpy.

    The inertia tensor of a region is [[mu02, -mu11], [-mu11, mu20]] / mu00 (central moments of its
    pixel coordinates); its eigenvalues are those of the coordinates' population covariance, and the
    major axis is 4 * sqrt(largest eigenvalue) (= 2a for a filled ellipse of semi-axis a).
    """
    labels = np.asarray(labels)
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return np.zeros(0)
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols].astype(np.intp)
    n = np.bincount(lab, minlength=count + 1).astype(np.float64)
    n = np.maximum(n, 1.0)  # background (and an absent label) would divide 0 by 0
    dr = rows - (np.bincount(lab, rows, count + 1) / n)[lab]
    dc = cols - (np.bincount(lab, cols, count + 1) / n)[lab]
    a = np.bincount(lab, dr * dr, count + 1) / n
    b = np.bincount(lab, dr * dc, count + 1) / n
    c = np.bincount(lab, dc * dc, count + 1) / n
    largest = (a + c) / 2 + np.sqrt(((a - c) / 2) ** 2 + b**2)
    return 4 * np.sqrt(np.maximum(largest[1:], 0.0))


def itc_labels(
    labels: np.ndarray, resolution: float = L0_RESOLUTION, level: int = EVALUATION_LEVEL
) -> np.ndarray:
    """Labels (1-based, sorted) of the regions that count as isolated tumor cells."""
    return np.flatnonzero(major_axis_lengths(labels) < itc_threshold(resolution, level)) + 1


@dataclass
class SlideOutcome:
    """What one slide adds to the FROC: its FP probabilities and one TP entry per label."""

    slide: str
    fp_probs: np.ndarray  # float64, one per false positive
    tp_probs: np.ndarray  # float32, one per label (0: missed lesion or ITC)
    lesions: int  # labels minus ITCs
    itcs: int = 0
    detections: int = 0
    itc_hits: int = 0  # detections ignored because they fell on an ITC
    tumor: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def detected_lesions(self) -> int:
        return int(np.count_nonzero(self.tp_probs > 0))

    def summary(self) -> dict:
        return {
            "slide": self.slide,
            "tumor": self.tumor,
            "lesions": self.lesions,
            "itcs": self.itcs,
            "detected_lesions": self.detected_lesions,
            "detections": self.detections,
            "false_positives": int(self.fp_probs.size),
            "itc_hits_ignored": self.itc_hits,
        }


def match_slide(
    slide: str,
    detections: Detections,
    labels: np.ndarray | None = None,
    itcs: Sequence[int] | np.ndarray = (),
    level0_size: tuple[int, int] | None = None,
    level: int = EVALUATION_LEVEL,
) -> SlideOutcome:
    """Split one slide's detections into FPs and per-lesion max probabilities (labels None: normal)."""
    if labels is None:
        return SlideOutcome(slide, detections.probs.astype(np.float64), np.zeros(0, np.float32), 0,
                            detections=len(detections))
    labels = np.asarray(labels)
    rows, cols = labels.shape
    width, height = level0_size if level0_size is not None else (cols * 2**level, rows * 2**level)
    outside = (detections.x >= width) | (detections.y >= height)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"slide {slide}: detection at ({detections.x[i]:g}, {detections.y[i]:g}) lies outside its "
            f"{width}x{height} mask; wrong mask or coordinates not at level 0?"
        )
    r = np.minimum(np.floor(detections.y / 2**level).astype(np.intp), rows - 1)
    c = np.minimum(np.floor(detections.x / 2**level).astype(np.intp), cols - 1)
    hit = labels[r, c].astype(np.intp)
    count = int(labels.max()) if labels.size else 0
    itc = np.zeros(count + 1, dtype=bool)
    itc[np.asarray(itcs, dtype=np.intp)] = True
    is_fp = hit == 0
    is_itc = itc[hit] & ~is_fp
    is_tp = ~is_fp & ~is_itc
    tp = np.zeros(count, dtype=np.float32)
    np.maximum.at(tp, hit[is_tp] - 1, detections.probs[is_tp].astype(np.float32))
    return SlideOutcome(
        slide,
        detections.probs[is_fp].astype(np.float64),
        tp,
        count - int(itc.sum()),
        itcs=int(itc.sum()),
        detections=len(detections),
        itc_hits=int(is_itc.sum()),
        tumor=True,
    )


@dataclass(frozen=True)
class FrocCurve:
    """FPs per slide and sensitivity per threshold (ascending thresholds, then the appended (0, 0))."""

    thresholds: np.ndarray
    fps_per_slide: np.ndarray
    sensitivity: np.ndarray
    slides: int
    lesions: int


def froc_curve(outcomes: Sequence[SlideOutcome], organisers: bool = False) -> FrocCurve:
    """The organisers' `computeFROC`, vectorised with sorted counts instead of a loop per threshold.

    `organisers`: drop the lowest threshold always, as `Evaluation_FROC.py` does, instead of only the
    thresholds <= 0 (module docstring)."""
    if not outcomes:
        raise DataError("no slides to evaluate")
    lesions = sum(o.lesions for o in outcomes)
    if lesions == 0:
        raise DataError(
            "the evaluation holds no lesion (no tumor mask, or only ITCs): sensitivity is undefined"
        )
    fps = np.sort(np.concatenate([o.fp_probs for o in outcomes]).astype(np.float64))
    tps = np.sort(np.concatenate([o.tp_probs for o in outcomes]).astype(np.float32))
    thresholds = np.unique(np.concatenate([fps, tps.astype(np.float64)]))
    thresholds = thresholds[1:] if organisers else thresholds[thresholds > 0]
    fp_counts = fps.size - np.searchsorted(fps, thresholds, side="left")
    tp_counts = tps.size - np.searchsorted(tps, thresholds.astype(np.float32), side="left")
    fp_counts = np.append(fp_counts, 0)
    tp_counts = np.append(tp_counts, 0)
    return FrocCurve(
        thresholds,
        np.asarray(fp_counts) / float(len(outcomes)),
        np.asarray(tp_counts) / float(lesions),
        len(outcomes),
        lesions,
    )


def froc_score(curve: FrocCurve, rates: Sequence[float] = FP_RATES) -> tuple[np.ndarray, float]:
    """Sensitivity at each FP rate (np.interp on the reversed curve) and their mean, the FROC score."""
    sens = np.interp(list(rates), curve.fps_per_slide[::-1], curve.sensitivity[::-1])
    return sens, float(np.mean(sens))


@dataclass
class FrocResult:
    """The lesion task's figures, per-slide outcomes and what was assumed on the way."""

    curve: FrocCurve
    rates: tuple[float, ...]
    sensitivities: np.ndarray
    score: float
    outcomes: list[SlideOutcome]
    without_detections_file: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    masks_not_evaluated: list[str] = field(default_factory=list)  # no CSV and no reference to list them
    organisers: bool = False  # thresholds by the organisers' exact rule

    def to_dict(self) -> dict:
        tumor = [o for o in self.outcomes if o.tumor]
        return {
            "task": "lesion detection FROC (Camelyon16 task 2)",
            "froc": self.score,
            "lowest_threshold_rule": "organisers: always dropped" if self.organisers else "fwrd: thresholds <= 0 dropped",
            "fp_rates": list(self.rates),
            "sensitivities": self.sensitivities.tolist(),
            "level": EVALUATION_LEVEL,
            "resolution_um_per_px": L0_RESOLUTION,
            "slides": self.curve.slides,
            "tumor_slides": len(tumor),
            "normal_slides": self.curve.slides - len(tumor),
            "lesions": self.curve.lesions,
            "itcs": sum(o.itcs for o in tumor),
            "detected_lesions": sum(o.detected_lesions for o in tumor),
            "detections": sum(o.detections for o in self.outcomes),
            "false_positives": int(sum(o.fp_probs.size for o in self.outcomes)),
            "without_detections_file": self.without_detections_file,
            "excluded": self.excluded,
            "masks_not_evaluated": self.masks_not_evaluated,
            "curve": {
                "thresholds": self.curve.thresholds.tolist(),
                "fps_per_slide": self.curve.fps_per_slide.tolist(),
                "sensitivity": self.curve.sensitivity.tolist(),
            },
            "per_slide": [o.summary() for o in self.outcomes],
        }


def evaluate_lesions(
    detection_files: dict[str, tuple[str, Path]],
    masks: dict[str, MaskSource],
    reference: dict[str, tuple[str, bool]] | None = None,
    exclude: Iterable[str] = (),
    slide_size: Callable[[str], tuple[int, int] | None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    organisers: bool = False,
) -> FrocResult:
    """Run the whole lesion evaluation over a cohort.

    The slides are the reference's when given, else those with a detections file (the organisers'
    rule, which silently leaves out a tumor slide without a CSV: such masks are listed in the
    result), minus `exclude`. A slide is a tumor slide when it has a mask (checked against the
    reference when given). A listed slide without a detections file counts with no detections, as
    the rules require every slide to have a CSV. `slide_size(name)` gives a slide's level-0 size (needed for XML masks; checks TIFFs);
    `progress(index, total, name)` is called before each slide; `organisers` picks the organisers'
    exact threshold rule (see `froc_curve`).
    """
    excluded = {slide_key(e) for e in exclude}
    if reference is not None:
        unknown = sorted(name for key, (name, _) in detection_files.items()
                         if key not in reference and key not in excluded)
        if unknown:
            raise DataError(f"slide {unknown[0]} has detections but is not in the reference "
                            f"({len(unknown)} such slides)")
        slides = {key: reference[key] for key in sorted(reference) if key not in excluded}
        for key, (name, tumor) in slides.items():
            if tumor and key not in masks:
                raise DataError(
                    f"slide {name} is Tumor in the reference but has no mask or XML in the mask folders"
                )
            if not tumor and key in masks:
                raise DataError(f"slide {name} is Normal in the reference but has a mask: {masks[key].path}")
    else:
        slides = {key: (name, key in masks) for key, (name, _) in sorted(detection_files.items())
                  if key not in excluded}
    if not slides:
        raise DataError("no slides to evaluate (no detection files, or all excluded)")
    outcomes, missing = [], []
    for index, (key, (name, tumor)) in enumerate(slides.items(), start=1):
        if progress is not None:
            progress(index, len(slides), name)
        if key in detection_files:
            detections = read_detections(detection_files[key][1])
        else:
            detections = Detections.empty()
            missing.append(name)
        if not tumor:
            outcomes.append(match_slide(name, detections))
            continue
        size = slide_size(name) if slide_size is not None else None
        mask = load_mask(masks[key], size)
        labels = evaluation_mask(mask.tumor)
        outcomes.append(match_slide(name, detections, labels, itc_labels(labels), mask.level0_size))
    curve = froc_curve(outcomes, organisers)
    sens, score = froc_score(curve)
    excluded_names = sorted((reference or {}).get(k, (k, False))[0] for k in excluded)
    unlisted = [] if reference is not None else sorted(
        source.slide for key, source in masks.items() if key not in slides and key not in excluded
    )
    return FrocResult(curve, FP_RATES, sens, score, outcomes, missing, excluded_names, unlisted, organisers)
