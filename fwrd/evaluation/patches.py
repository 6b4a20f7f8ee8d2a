"""Patch-level accuracy, the paper's Table 2 metric, on a `normal/` + `tumor/` folder of tiles.

A patch is called tumor when its FW-RD score (mean anomaly map) is >= the threshold. Reported: the
accuracy at the model's own threshold, the best accuracy over all thresholds with the threshold that
gives it, and the ROC AUC. The best threshold is placed halfway between the lowest score called tumor
and the next lower score (any value in that gap gives the same accuracy; the middle is the safest to
deploy); ties between equally accurate gaps go to the highest threshold (fewest false alarms).

Scoring is torch-free: tiles are read with Pillow and sent in batches to a `Backend`.

    labels, scores, paths = score_patch_folder(backend, "patches/val", batch_size=32)
    metrics = patch_metrics(labels, scores, threshold=backend.config.threshold)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fwrd.errors import DataError, InputNotFound
from fwrd.evaluation.roc import roc_auc, roc_curve
from fwrd.slide.patch_image import read_patch_rgb

if TYPE_CHECKING:
    from fwrd.runtime.backends.base import Backend

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
CLASSES = ("normal", "tumor")  # label 0, label 1 (tumor is the positive class)


def accuracy_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Fraction of patches classified right when `score >= threshold` means tumor."""
    labels = np.asarray(labels, dtype=bool)
    return float(np.mean((np.asarray(scores) >= threshold) == labels))


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy over every cut between distinct scores."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise DataError("no patches to threshold")
    distinct = np.unique(scores)[::-1]  # candidate cuts: score >= distinct[i] is tumor, plus "none"
    order = np.argsort(scores)[::-1]
    sorted_scores, sorted_labels = scores[order], labels[order]
    called = np.searchsorted(-sorted_scores, -distinct, side="right")  # patches with score >= cut
    tp = np.r_[0, np.cumsum(sorted_labels)][called]
    fp = called - tp
    negatives = scores.size - labels.sum()
    correct = np.r_[negatives, tp + (negatives - fp)]  # index 0: nothing called tumor
    best = int(np.argmax(correct))  # first maximum = highest threshold
    if best == 0:
        threshold = float(np.nextafter(distinct[0], np.inf))
    elif best == distinct.size:
        threshold = float(distinct[-1])
    else:
        middle = (distinct[best - 1] + distinct[best]) / 2.0
        threshold = float(middle if middle > distinct[best] else distinct[best - 1])
    return threshold, float(correct[best] / scores.size)


@dataclass(frozen=True)
class PatchMetrics:
    """Patch classification figures at the model threshold and at the best threshold."""

    threshold: float
    accuracy: float
    sensitivity: float  # tumor patches called tumor, at `threshold`
    specificity: float  # normal patches called normal, at `threshold`
    best_threshold: float
    best_accuracy: float
    auc: float
    normal: int
    tumor: int
    fpr: np.ndarray
    tpr: np.ndarray

    def to_dict(self) -> dict:
        return {
            "task": "patch classification (paper Table 2)",
            "patches": self.normal + self.tumor,
            "normal": self.normal,
            "tumor": self.tumor,
            "threshold": self.threshold,
            "accuracy": self.accuracy,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "best_threshold": self.best_threshold,
            "best_accuracy": self.best_accuracy,
            "auc": self.auc,
            "roc": {"fpr": self.fpr.tolist(), "tpr": self.tpr.tolist()},
        }


def patch_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> PatchMetrics:
    """All patch figures for labels (True = tumor) and scores (higher = more tumor)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.all() or not labels.any():
        raise DataError("patch evaluation needs both normal and tumor patches")
    called = scores >= threshold
    best_t, best_acc = best_threshold(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    return PatchMetrics(
        threshold=float(threshold),
        accuracy=accuracy_at(labels, scores, threshold),
        sensitivity=float(called[labels].mean()),
        specificity=float((~called[~labels]).mean()),
        best_threshold=best_t,
        best_accuracy=best_acc,
        auc=roc_auc(labels, scores),
        normal=int((~labels).sum()),
        tumor=int(labels.sum()),
        fpr=fpr,
        tpr=tpr,
    )


def list_patches(folder: str | Path) -> tuple[list[Path], np.ndarray]:
    """Image files of `folder/normal` and `folder/tumor` (sorted) and their labels (True = tumor)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFound(f"patch folder not found: {folder}")
    paths: list[Path] = []
    labels: list[bool] = []
    for label, name in enumerate(CLASSES):
        sub = folder / name
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if sub.is_dir() else []
        if not files:
            raise DataError(
                f"{sub}: no patch images; expected {folder}/normal/*.png and {folder}/tumor/*.png"
            )
        paths += files
        labels += [bool(label)] * len(files)
    return paths, np.asarray(labels, dtype=bool)


def _batches(paths: list[Path], tile_size: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    buffer = np.empty((batch_size, tile_size, tile_size, 3), dtype=np.uint8)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        for i, path in enumerate(chunk):
            buffer[i] = read_patch_rgb(path, tile_size, "the model takes")  # size checked before decoding
        yield start, buffer[: len(chunk)]


def score_patch_folder(
    backend: Backend, folder: str | Path, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Score every patch of a normal/ + tumor/ folder: (labels, scores float64, paths)."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    paths, labels = list_patches(folder)
    if backend.max_batch is not None:
        batch_size = min(batch_size, backend.max_batch)
    scores = np.empty(len(paths), dtype=np.float64)
    for start, score, _ in backend.run_batches(_batches(paths, backend.tile_size, batch_size)):
        scores[start : start + len(score)] = np.asarray(score, dtype=np.float64)
    return labels, scores, paths
