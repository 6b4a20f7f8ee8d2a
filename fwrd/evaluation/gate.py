"""Accuracy gates, torch-free: one graph's (or engine's) scores against PyTorch fp32 on the verification tiles.

The ONNX export gate (`fwrd.export.verify`, ONNX Runtime on CPU) and the engine gate
(`fwrd.export.tensorrt_build`, the TensorRT engine on the GPU) measure with the same function and the same
bounds, on the same tiles: the export keeps them beside the graph (`rd.onnx.verify.npz`) so that an
engine built later, on another machine without torch, is checked against the PyTorch reference too, and
so that the runtime scores them again whenever it loads the model (fwrd.runtime.self_test).

    report = compare_scores("int8", reference, {1: scores_b1, 64: scores_b64}, is_tumor, threshold, runner="tensorrt")
    enforce(report)   # ExportGateFailed unless it passed
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fwrd.errors import ExportGateFailed, ModelError
from fwrd.evaluation.roc import roc_auc


@dataclass(frozen=True)
class Gate:
    """Bounds an export must meet against PyTorch fp32 on the verification tiles; None = reported, not bounded."""

    max_abs_delta: float | None  # on the 0..3 patch-score scale
    max_rel_delta: float | None
    min_spearman: float
    max_auroc_change: float
    max_flip_fraction: float | None = None  # tiles whose call at the model's threshold differs from fp32's


_HALF = Gate(max_abs_delta=0.01, max_rel_delta=0.005, min_spearman=0.999, max_auroc_change=0.005)
GATES = {
    "fp32": Gate(max_abs_delta=None, max_rel_delta=1e-4, min_spearman=0.9999, max_auroc_change=1e-6),
    "fp16": _HALF,
    "tf32": _HALF,  # an fp32 engine built with --tf32: inner products on 10-bit mantissas, like fp16's
    # int8 moves every score a little (quantisation noise raises 1 - cos most where teacher and student
    # agree, i.e. on normal tissue); what a slide result depends on is the ranking and the call at the
    # threshold, so those are gated and the drift is reported.
    "int8": Gate(max_abs_delta=None, max_rel_delta=None, min_spearman=0.95, max_auroc_change=0.02,
                 max_flip_fraction=0.02),
}

# What to do when a gate fails, by precision (the engine gate's advice is the export's).
NEXT_STEPS = {
    "int8": "export with --precision fp16 instead (fp32 on a CPU), or calibrate int8 on more of your own "
            "slides: --calibration SLIDE_OR_FOLDER (repeatable)",
    "fp16": "export with --precision fp32",
    "tf32": "build the fp32 engine without --tf32",
}


@dataclass
class VerifyReport:
    precision: str  # the gate applied: fp32 | fp16 | tf32 | int8
    tiles: int
    max_abs_delta: float
    max_rel_delta: float
    spearman: float
    auroc_reference: float | None
    auroc_exported: float | None
    batches: tuple[int, ...]
    passed: bool
    failures: list[str]
    runner: str = "onnxruntime-cpu"  # what produced the scores: onnxruntime-cpu | tensorrt
    threshold: float | None = None  # the model's tile threshold the calls are made at
    flipped: int = 0  # tiles whose call at the threshold differs from PyTorch fp32's (worst batch size)
    mean_delta: float = 0.0  # signed mean score change (worst batch size by |mean|): int8's drift

    def to_dict(self) -> dict:
        """JSON-ready (lists, not tuples), so a manifest read back equals the one returned."""
        data = asdict(self)
        data["batches"] = list(self.batches)
        data["flip_fraction"] = self.flip_fraction
        return data

    @property
    def flip_fraction(self) -> float:
        return self.flipped / self.tiles if self.tiles else 0.0

    def summary(self) -> str:
        auroc = ""
        if self.auroc_reference is not None:
            auroc = f", patch AUROC {self.auroc_reference:.4f} -> {self.auroc_exported:.4f}"
        calls = ""
        if self.threshold is not None:
            calls = (f", calls at threshold {self.threshold:.4g} flipped on {self.flipped} "
                     f"({100 * self.flip_fraction:.1f} %)")
        return (
            f"{self.precision} ({self.runner}) vs PyTorch fp32 on {self.tiles} tiles "
            f"(batches {', '.join(map(str, self.batches))}): "
            f"max |delta score| {self.max_abs_delta:.3g} (relative {self.max_rel_delta:.3g}, "
            f"mean {self.mean_delta:+.3g}), Spearman {self.spearman:.5f}{auroc}{calls}"
        )


def compare_scores(
    precision: str,
    reference: np.ndarray,
    scores_by_batch: dict[int, np.ndarray],
    is_tumor: np.ndarray | None,  # labels of the first len(is_tumor) tiles (tumor = True)
    threshold: float | None,  # the model's tile threshold; None only where no gate bounds the calls
    runner: str = "onnxruntime-cpu",
) -> VerifyReport:
    """Worst case over the batch sizes of |delta|, relative delta, Spearman and the calls flipped at
    `threshold`, plus the patch AUROC change."""
    from scipy.stats import spearmanr  # here, not at import: the runtime imports this module on every load

    gate = GATES[precision]
    if gate.max_flip_fraction is not None and threshold is None:
        raise ValueError(f"the {precision} gate bounds the calls at the threshold: give the threshold")
    reference = np.asarray(reference, np.float64)
    worst_abs, worst_rel, worst_rho, worst_flips, worst_mean, exported = 0.0, 0.0, 1.0, 0, 0.0, reference
    for scores in scores_by_batch.values():
        scores = np.asarray(scores, np.float64)
        if scores.shape != reference.shape or not np.all(np.isfinite(scores)):
            worst_abs = worst_rel = float("inf")
            worst_rho = min(worst_rho, -1.0)
            worst_flips = len(reference)
            exported = np.nan_to_num(scores, nan=0.0) if scores.shape == reference.shape else reference
            continue
        delta = scores - reference
        worst_abs = max(worst_abs, float(np.abs(delta).max(initial=0.0)))
        worst_rel = max(worst_rel, float((np.abs(delta) / np.maximum(np.abs(reference), 1e-6)).max(initial=0.0)))
        mean = float(delta.mean()) if len(delta) else 0.0
        worst_mean = mean if abs(mean) > abs(worst_mean) else worst_mean
        rho = float(spearmanr(scores, reference).statistic) if len(reference) > 2 else 1.0
        worst_rho = min(worst_rho, rho)
        if threshold is not None:
            worst_flips = max(worst_flips, flipped_calls(reference, scores, threshold))
        exported = scores
    auroc_ref = auroc_exp = None
    if is_tumor is not None and 0 < int(is_tumor.sum()) < len(is_tumor):
        n = len(is_tumor)  # the labelled tiles come first
        auroc_ref, auroc_exp = roc_auc(is_tumor, reference[:n]), roc_auc(is_tumor, exported[:n])
    failures = []
    if _over(worst_abs, gate.max_abs_delta) or _over(worst_rel, gate.max_rel_delta):
        failures.append(
            f"max |delta score| {worst_abs:.3g} (relative {worst_rel:.3g}) exceeds "
            f"the bound ({_bound(gate.max_abs_delta)} absolute, {_bound(gate.max_rel_delta)} relative)"
        )
    if worst_rho < gate.min_spearman:
        failures.append(f"Spearman {worst_rho:.5f} < {gate.min_spearman}")
    if auroc_ref is not None and abs(auroc_exp - auroc_ref) > gate.max_auroc_change:
        failures.append(f"patch AUROC changed by {abs(auroc_exp - auroc_ref):.4f} > {gate.max_auroc_change}")
    n = len(reference)
    if gate.max_flip_fraction is not None and n and worst_flips / n > gate.max_flip_fraction:
        failures.append(
            f"the call at threshold {threshold:.4g} flipped on {worst_flips} of {n} tiles "
            f"({100 * worst_flips / n:.1f} % > {100 * gate.max_flip_fraction:g} %; mean score drift "
            f"{worst_mean:+.3g})"
        )
    return VerifyReport(precision, n, worst_abs, worst_rel, worst_rho, auroc_ref, auroc_exp,
                        tuple(scores_by_batch), not failures, failures, runner, threshold, worst_flips, worst_mean)


def flipped_calls(reference: np.ndarray, scores: np.ndarray, threshold: float) -> int:
    """Tiles called tumor (score >= threshold, as fwrd-run calls them) by one and not the other."""
    return int(np.count_nonzero((np.asarray(reference) >= threshold) != (np.asarray(scores) >= threshold)))


def enforce(report: VerifyReport, what: str = "export") -> None:
    """ExportGateFailed, naming what failed and what to do next, unless `report` passed."""
    if not report.passed:
        advice = NEXT_STEPS.get(report.precision)
        raise ExportGateFailed(f"{report.precision} {what} failed its accuracy gate: {'; '.join(report.failures)}"
                               + (f". Next: {advice}" if advice else ""))


def _over(value: float, bound: float | None) -> bool:
    return bound is not None and value > bound


def _bound(bound: float | None) -> str:
    return "none" if bound is None else f"{bound:g}"


@dataclass
class VerificationSet:
    """The tiles an export was checked on, PyTorch fp32's scores for them, and the labels of the first ones."""

    tiles: np.ndarray  # uint8 [N, T, T, 3]
    reference: np.ndarray  # float64 [N]
    is_tumor: np.ndarray | None = None  # bool [n <= N]
    onnx_sha256: str = ""  # the graph these were checked against
    extra: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        from fwrd.atomic import atomic_open

        labels = self.is_tumor if self.is_tumor is not None else np.zeros(0, bool)
        with atomic_open(Path(path), "wb") as f:
            np.savez_compressed(f, tiles=self.tiles, reference=self.reference, is_tumor=labels,
                                onnx_sha256=np.array(self.onnx_sha256))

    @classmethod
    def load(cls, path: Path, onnx_sha256: str | None = None) -> "VerificationSet":
        """Read `path`; with `onnx_sha256`, refuse a set made for another graph."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                tiles, reference = data["tiles"], data["reference"].astype(np.float64)
                labels, sha = data["is_tumor"].astype(bool), str(data["onnx_sha256"])
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path.name} is not an fwrd verification set ({exc})") from None
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or len(tiles) != len(reference) or len(labels) > len(tiles):
            raise ModelError(f"{path.name} is not an fwrd verification set (inconsistent arrays)")
        if onnx_sha256 is not None and sha != onnx_sha256:
            raise ModelError(f"{path.name} was made for another graph (sha256 differs): export the graph again")
        return cls(tiles, reference, labels if len(labels) else None, sha)


def verification_path(onnx_path: Path) -> Path:
    """`rd.onnx` -> `rd.onnx.verify.npz`."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".verify.npz")
