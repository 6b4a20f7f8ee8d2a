"""Accuracy gates: every export runs itself in ONNX Runtime and is compared with PyTorch fp32.

Inputs: tissue tiles (labelled tumor/normal, from synthetic slides, plus any calibration slides) and
uniform noise, at batch 1 and at a larger batch. fp32 must match to 1e-4 relative; fp16 must keep the
score close, the ranking (Spearman) and the patch AUROC; int8 must keep the ranking, the patch AUROC
and the call at the model's threshold (its score drift is reported, not bounded). A failed gate raises
ExportGateFailed, and the caller never writes the final file. The bounds and the comparison live in
`fwrd.export.gate` (torch-free), which the TensorRT engine gate shares.

On an x86 CPU, ONNX Runtime runs an fp16 graph's convolutions through casts to fp32, so the fp16 gate
here measures the rounding of the weights to fp16, not fp16 arithmetic; the engine gate on the GPU is
the real fp16 check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fwrd.config import INPUT_NAME, FWRDConfig
from fwrd.errors import DependencyMissing
from fwrd.export.gate import GATES, Gate, VerifyReport, compare_scores, enforce  # noqa: F401  (re-exported)
from fwrd.model.anomaly_map import patch_score
from fwrd.model.network import ReverseDistillation
from fwrd.model.preprocess import normalise_tiles


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
    threshold: float | None,  # the model's tile threshold: the int8 gate bounds the calls flipped at it
    batches: tuple[int, ...] = (1, 8),
    log: Callable[[str], None] = lambda line: None,
) -> VerifyReport:
    """Compare the graph at `path` with `reference` at each batch size; never raises on a failed gate."""
    scores = {}
    for n, batch in enumerate(batches, 1):
        log(f"verification pass {n}/{len(batches)}: {precision} in ONNX Runtime at batch {batch} on {len(tiles)} tiles...")
        scores[batch] = onnx_scores(path, tiles, batch)
    return compare_scores(precision, reference, scores, is_tumor, threshold)
