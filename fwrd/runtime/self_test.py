"""The self-test at load: a model scores the tiles its export was verified on before it scores a slide.

`fwrd-export` keeps its verification tiles and PyTorch fp32's scores for them beside the graph
(`rd.onnx.verify.npz`, fwrd.evaluation.gate.VerificationSet). When that file is there, `open_backend`
runs the opened backend on those tiles, the way a run will use it (tile batches, or one-tile regions read
by the dense window rule when opened for regions), and refuses the model unless the scores pass the
export gate of its precision. That catches what no metadata check can (issue 21.7): metadata that lies (a
dynamic-shape graph whose metadata says 128 px is run at 128 px; another graph carrying this model's
metadata), a wrong or tampered graph, a bad TensorRT engine, broken GPU numerics. The set must also name
this graph (its sha256): a set made for another graph is refused rather than trusted.

No file beside the model is not an error (a graph copied without it, an export older than this rule):
the run goes on with a note saying its scores were not checked at load. A checkpoint run by the torch
backend is the reference itself and has nothing to be checked against. What it costs at load is the
scoring of the set (36 tiles without calibration slides, up to 100 with): SECURITY.md ("Models").

    note = self_test(backend, Path("rd.onnx"))     # ModelError when the scores disagree; else a note or None
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fwrd.errors import ModelError
from fwrd.evaluation.gate import GATES, VerificationSet, compare_scores, verification_path
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.model_file import ENGINE_SUFFIXES
from fwrd.runtime.window_scores import scores_at


def self_test(backend: Backend, model: Path, model_sha256: str) -> str | None:
    """Score `model`'s verification tiles on `backend` and refuse it unless they pass its precision's gate.
    Returns a note for the user (no verification file, or how it went), or raises ModelError."""
    sidecar, graph_sha = _verification_file(backend, model, model_sha256)
    if sidecar is None:
        return None
    if not sidecar.is_file():
        return (f"no verification tiles beside {model.name} ({sidecar.name}): its scores were not checked at "
                "load; keep the file fwrd-export wrote beside the graph to have them checked")
    checks = VerificationSet.load(sidecar)
    if checks.onnx_sha256 != graph_sha:
        raise ModelError(f"{sidecar.name} was made for another graph than {model.name} (sha256 differs): the model "
                         "is not the one that was exported and verified; export it again")
    tile = backend.config.tile_size
    if checks.tiles.shape[1:] != (tile, tile, 3):
        raise ModelError(f"{model.name} says it takes {tile} px tiles, but it was verified on "
                         f"{checks.tiles.shape[1]} px tiles ({sidecar.name}): its metadata does not describe it; "
                         "export it again")
    gate = _gate(backend)
    scores = _scores(backend, checks.tiles)
    report = compare_scores(gate, checks.reference, {len(checks.tiles): scores}, checks.is_tumor,
                            backend.config.threshold, runner=f"{backend.name} at load")
    if not report.passed:
        raise ModelError(f"{model.name} failed its self-test at load on {backend.name} ({backend.device}): "
                         f"{'; '.join(report.failures)} against the {gate} export gate on its {len(scores)} "
                         "verification tiles; the graph, its metadata or this device's numerics are not what "
                         "was verified: export it (or build the engine) again, or run it elsewhere")
    return None


def _verification_file(backend: Backend, model: Path, model_sha256: str) -> tuple[Path | None, str]:
    """(the verification set that belongs beside `model`, the sha256 of the graph it must name); (None, "")
    for a checkpoint."""
    if model.suffix.lower() in ENGINE_SUFFIXES:  # a TensorRT plan: the set of the graph it was built from, beside it
        onnx = (getattr(backend, "manifest", None) or {}).get("onnx") or {}
        name = Path(str(onnx.get("file") or model.stem + ".onnx")).name
        return verification_path(model.with_name(name)), str(onnx.get("sha256", ""))
    if backend.name == "torch":
        return None, ""
    return verification_path(model), model_sha256


def _gate(backend: Backend) -> str:
    """The export gate of the backend's precision (an fp32 engine built with TF32: the tf32 gate)."""
    manifest = getattr(backend, "manifest", None) or {}
    precision = "tf32" if backend.precision == "fp32" and manifest.get("tf32") else backend.precision
    if precision not in GATES:
        raise ModelError(f"the model's precision {precision!r} has no export gate (expected one of "
                         f"{', '.join(GATES)})")
    return precision


def _scores(backend: Backend, tiles: np.ndarray) -> np.ndarray:
    """The tiles' scores as a run gets them: batches of tiles, or (opened for regions) one-tile regions."""
    if backend.region is not None:
        origin = np.zeros((1, 2), np.int64)
        return np.array([scores_at(maps, backend.tile_size, origin)[0]
                         for _, maps in backend.run_regions((k, tile) for k, tile in enumerate(tiles))], np.float64)
    batch = backend.max_batch or int(getattr(backend, "batch_size", 16) or 16)
    out = [score for _, score, _ in backend.run_batches((k, tiles[k:k + batch]) for k in range(0, len(tiles), batch))]
    return np.concatenate(out).astype(np.float64)
