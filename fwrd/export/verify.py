"""Accuracy gates: every export runs itself in ONNX Runtime and is compared with PyTorch fp32.

Inputs: tissue tiles (labelled tumor/normal, from synthetic slides, plus any calibration slides) and
uniform noise, at batch 1 and at a larger batch. fp32 must match to 1e-4 relative; fp16 and int8 must
keep the score close, the ranking (Spearman) and the patch AUROC. A failed gate raises
ExportGateFailed, and the caller never writes the final file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from fwrd.config import INPUT_NAME, FWRDConfig
from fwrd.errors import DependencyMissing, ExportGateFailed
from fwrd.evaluation.roc import roc_auc
from fwrd.model.anomaly_map import patch_score
from fwrd.model.network import ReverseDistillation
from fwrd.model.preprocess import normalise_tiles


@dataclass(frozen=True)
class Gate:
    """Bounds an exported graph must meet against PyTorch fp32 on the verification tiles."""

    max_abs_delta: float  # on the 0..3 patch-score scale
    max_rel_delta: float
    min_spearman: float
    max_auroc_change: float


GATES = {
    "fp32": Gate(max_abs_delta=float("inf"), max_rel_delta=1e-4, min_spearman=0.9999, max_auroc_change=1e-6),
    "fp16": Gate(max_abs_delta=0.01, max_rel_delta=0.005, min_spearman=0.999, max_auroc_change=0.005),
    "int8": Gate(max_abs_delta=0.15, max_rel_delta=0.10, min_spearman=0.95, max_auroc_change=0.02),
}


@dataclass
class VerifyReport:
    precision: str
    tiles: int
    max_abs_delta: float
    max_rel_delta: float
    spearman: float
    auroc_reference: float | None
    auroc_exported: float | None
    batches: tuple[int, ...]
    passed: bool
    failures: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        auroc = ""
        if self.auroc_reference is not None:
            auroc = f", patch AUROC {self.auroc_reference:.4f} -> {self.auroc_exported:.4f}"
        return (
            f"{self.precision} vs PyTorch fp32 on {self.tiles} tiles (batches {', '.join(map(str, self.batches))}): "
            f"max |delta score| {self.max_abs_delta:.3g} (relative {self.max_rel_delta:.3g}), "
            f"Spearman {self.spearman:.5f}{auroc}"
        )


def reference_scores(model: ReverseDistillation, config: FWRDConfig, tiles: np.ndarray, batch: int = 16) -> np.ndarray:
    """PyTorch fp32 patch scores, the yardstick for every precision."""
    model = model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(tiles), batch):
            x = normalise_tiles(torch.from_numpy(tiles[start : start + batch]), config)
            teacher, student = model(x)
            out.append(patch_score(teacher, student, config.tile_size).numpy())
    return np.concatenate(out).astype(np.float64)


def onnx_scores(path: Path, tiles: np.ndarray, batch: int, threads: int | None = None) -> np.ndarray:
    """Scores from ONNX Runtime (CPU) at a fixed batch size (the last batch may be smaller)."""
    session = cpu_session(path, threads)
    out = []
    for start in range(0, len(tiles), batch):
        score, _ = session.run(None, {INPUT_NAME: tiles[start : start + batch]})
        out.append(score)
    return np.concatenate(out).astype(np.float64)


def cpu_session(path: Path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise DependencyMissing("verifying an export needs ONNX Runtime: pip install 'fwrd[cpu]'") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def verify_graph(
    path: Path,
    precision: str,
    reference: np.ndarray,
    tiles: np.ndarray,
    is_tumor: np.ndarray | None,  # labels of the first len(is_tumor) tiles (tumor = True)
    batches: tuple[int, ...] = (1, 8),
) -> VerifyReport:
    """Compare the graph at `path` with `reference` at each batch size; never raises on a failed gate."""
    gate = GATES[precision]
    worst_abs, worst_rel, worst_rho, exported = 0.0, 0.0, 1.0, None
    for batch in batches:
        scores = onnx_scores(path, tiles, batch)
        delta = np.abs(scores - reference)
        worst_abs = max(worst_abs, float(delta.max()))
        worst_rel = max(worst_rel, float((delta / np.maximum(np.abs(reference), 1e-6)).max()))
        rho = float(spearmanr(scores, reference).statistic) if len(tiles) > 2 else 1.0
        worst_rho = min(worst_rho, rho)
        exported = scores
    auroc_ref = auroc_exp = None
    if is_tumor is not None and 0 < int(is_tumor.sum()) < len(is_tumor):
        n = len(is_tumor)  # the labelled tiles come first
        auroc_ref, auroc_exp = roc_auc(is_tumor, reference[:n]), roc_auc(is_tumor, exported[:n])
    failures = []
    if worst_abs > gate.max_abs_delta or worst_rel > gate.max_rel_delta:
        failures.append(
            f"max |delta score| {worst_abs:.3g} (relative {worst_rel:.3g}) exceeds "
            f"the bound ({gate.max_abs_delta:g} absolute, {gate.max_rel_delta:g} relative)"
        )
    if worst_rho < gate.min_spearman:
        failures.append(f"Spearman {worst_rho:.5f} < {gate.min_spearman}")
    if auroc_ref is not None and abs(auroc_exp - auroc_ref) > gate.max_auroc_change:
        failures.append(f"patch AUROC changed by {abs(auroc_exp - auroc_ref):.4f} > {gate.max_auroc_change}")
    return VerifyReport(
        precision, len(tiles), worst_abs, worst_rel, worst_rho, auroc_ref, auroc_exp, tuple(batches), not failures, failures
    )


def enforce(report: VerifyReport) -> None:
    if not report.passed:
        raise ExportGateFailed(f"{report.precision} export failed its accuracy gate: {'; '.join(report.failures)}")
