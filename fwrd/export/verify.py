"""Accuracy gates: every export runs itself in ONNX Runtime and is compared with PyTorch fp32.

Inputs: tissue tiles (labelled tumor/normal, from synthetic slides, plus any calibration slides) and
uniform noise, at batch 1 and at a larger batch. fp32 must match to 1e-4 relative; fp16 must keep the
score close, the ranking (Spearman) and the patch AUROC; int8 must keep the ranking, the patch AUROC
and the call at the model's threshold (its score drift is reported, not bounded). A failed gate raises
ExportGateFailed, and the caller never writes the final file. The bounds and the comparison live in
`fwrd.evaluation.gate` (torch-free), which the TensorRT engine gate shares.

On an x86 CPU, ONNX Runtime runs an fp16 graph's convolutions through casts to fp32, so the fp16 gate
here measures the rounding of the weights to fp16, not fp16 arithmetic; the engine gate on the GPU is
the real fp16 check.

`verify_regions` checks the graph's other use, dense scoring: on a region that is neither square nor a
whole number of tiles (a mosaic of the verification tiles), the dense scores of its tile windows read
off the graph's per-scale maps are compared with those of PyTorch fp32, under the same gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fwrd.config import INPUT_NAME, OUTPUT_MAPS, OUTPUT_SCORE, FWRDConfig
from fwrd.errors import DependencyMissing
from fwrd.evaluation.gate import GATES, Gate, VerifyReport, compare_scores, enforce  # noqa: F401  (re-exported)
from fwrd.model.fused_scorer import FusedScorer
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
        (score,) = session.run([OUTPUT_SCORE], {INPUT_NAME: tiles[start : start + batch]})
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


def region_mosaic(tiles: np.ndarray) -> np.ndarray:
    """uint8 [2T, 3T - 32, 3]: six tiles side by side, the last column cut short (not a whole tile)."""
    t = tiles.shape[1]
    picked = tiles[np.arange(6) % len(tiles)]
    rows = [np.concatenate(list(picked[r * 3:(r + 1) * 3]), axis=1) for r in range(2)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:, : 3 * t - 32])


def verify_regions(path: Path, precision: str, model: ReverseDistillation, config: FWRDConfig,
                   tiles: np.ndarray) -> VerifyReport:
    """Dense scores of every tile window (stride T/4) of a mosaic region: the graph in ONNX Runtime vs
    PyTorch fp32 (`FusedScorer`, the module exported); never raises on a failed gate."""
    from fwrd.runtime.window_scores import window_scores

    t = config.tile_size
    region = region_mosaic(tiles)
    ys = np.arange(0, region.shape[0] - t + 1, t // 4)
    xs = np.arange(0, region.shape[1] - t + 1, t // 4)
    maps = cpu_session(path).run(list(OUTPUT_MAPS), {INPUT_NAME: region[None]})
    got = window_scores([m[0] for m in maps], t, xs, ys)
    with torch.no_grad():
        reference = FusedScorer(model, config).eval()(torch.from_numpy(region[None]))[2:]
    want = window_scores([m[0].numpy() for m in reference], t, xs, ys)
    return compare_scores(precision, want.ravel(), {1: got.ravel()}, None, config.threshold_for(dense=True),
                          runner="onnxruntime-cpu-regions")  # calls at the threshold fwrd-run --dense uses
