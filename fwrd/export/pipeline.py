"""`fwrd-export` end to end: checkpoint -> verified ONNX graph (fp32 | fp16 | int8) -> optional engine.

Every graph is written under a temporary name, run in ONNX Runtime against PyTorch fp32 on labelled
synthetic tissue tiles, calibration-slide tiles and noise at batch 1 and batch 8, and renamed to its
final name only when it passes its gate. A JSON report of the figures goes beside it. A graph that can
go to TensorRT (fp32, fp16, int8 for `--target tensorrt`) must also pass the static scan of TensorRT's
parser rules. Every graph keeps its verification tiles and PyTorch's scores beside it (`rd.onnx.verify.npz`),
so an engine built from it later, on another machine (`build_engine_from_onnx`, torch-free), is gated on
the same tiles, and every load of the graph scores them again (fwrd.runtime.self_test). An engine is only written when it passes the gate of its precision too.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fwrd.atomic import write_json
from fwrd.digest import file_sha256
from fwrd.config import META_PRECISION
from fwrd.errors import DependencyMissing, ExportGateFailed, FwrdError, InputNotFound
from fwrd.export.calibration import labelled_synthetic_tiles, noise_tiles, slide_tissue_tiles
from fwrd.evaluation.gate import VerificationSet, VerifyReport, enforce, verification_path

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("cpu", "tensorrt")


@dataclass
class ExportSettings:
    checkpoint: Path
    output: Path
    precision: str = "fp16"
    calibration: list[Path] = field(default_factory=list)
    engine: Path | None = None
    target: str | None = None  # int8 only: "cpu" (default) or "tensorrt" (default with an engine)
    tf32: bool = False  # fp32 engines: allow TF32 (gated as "tf32", not to 1e-4)
    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 64
    workspace_gb: float = 4.0
    timing_cache: Path | None = None
    region_side: int = 4096  # the engine's region profile (dense scoring): regions up to this side (GPU_SIDE)
    calibration_tiles: int = 64
    verify_batches: tuple[int, ...] = (1, 8)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise FwrdError(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise FwrdError("batch sizes must satisfy 1 <= --min-batch <= --opt-batch <= --max-batch")
        if self.target is not None and self.target not in TARGETS:
            raise FwrdError(f"unknown target {self.target!r}; expected one of {', '.join(TARGETS)}")
        if self.precision == "int8" and self.target is None:
            self.target = "tensorrt" if self.engine is not None else "cpu"
        if self.precision == "int8" and self.target == "cpu" and self.engine is not None:
            raise FwrdError("the int8 CPU graph (uint8 activations) cannot become a TensorRT engine: "
                            "use --target tensorrt, the default with --engine")

    @property
    def for_tensorrt(self) -> bool:
        """Whether the graph may go to TensorRT (and so must pass its parser's rules)."""
        return self.precision != "int8" or self.target == "tensorrt"

@dataclass
class ExportResult:
    onnx: Path
    report: VerifyReport
    seconds: float
    size_bytes: int
    engine: dict | None = None
    regions: VerifyReport | None = None  # dense scoring's region check (fp32 and fp16 graphs)


def export_model(settings: ExportSettings, log: Callable[[str], None] = print) -> ExportResult:
    started = time.perf_counter()
    if settings.engine is not None:
        _check_engine_possible(settings)
    from fwrd.export.onnx_export import export_fused_onnx, write_metadata
    from fwrd.export.quantize import quantize_int8
    from fwrd.export.verify import reference_scores, verify_graph, verify_regions
    from fwrd.model.checkpoint import load_checkpoint

    model, config = load_checkpoint(settings.checkpoint)
    sha = file_sha256(settings.checkpoint)
    output = Path(settings.output)
    if output.suffix.lower() != ".onnx":
        raise FwrdError(f"output must end in .onnx, got {output}")
    output.parent.mkdir(parents=True, exist_ok=True)

    log(f"checkpoint {settings.checkpoint}: {config.architecture}, {config.tile_size} px tiles, "
        f"threshold {config.threshold:g}"
        + (f" (dense: {config.dense_threshold:g}, trained with {config.context} px context)"
           if config.dense_threshold is not None else "") + "; verification tiles...")
    tiles, is_tumor = _verification_set(settings, config)
    reference = reference_scores(model, config, tiles)

    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as work:
        graph = Path(work) / "graph.onnx"
        log(f"exporting the fused {settings.precision} graph...")
        if settings.precision == "int8":
            fp32 = Path(work) / "fp32.onnx"
            export_fused_onnx(model, config, fp32, half=False)
            quantize_int8(fp32, graph, tiles, target=settings.target or "cpu", log=log)
        else:
            export_fused_onnx(model, config, graph, half=settings.precision == "fp16")
        report = verify_graph(graph, settings.precision, reference, tiles, is_tumor, config.threshold,
                              settings.verify_batches, log=log)
        log(report.summary())
        enforce(report)
        regions = None
        if settings.precision != "int8":  # fwrd-run --dense takes fp32 and fp16 graphs
            regions = verify_regions(graph, settings.precision, model, config, tiles)
            log(f"dense scoring: {regions.summary()}")
            enforce(regions, "region pass")
        if settings.for_tensorrt:
            _check_tensorrt_rules(graph)
        write_metadata(graph, config, settings.precision, sha, target=settings.target)
        os.replace(graph, output)
    checks = VerificationSet(tiles, reference, is_tumor, file_sha256(output))
    checks.save(verification_path(output))  # engines are gated on it, and every load scores it (self_test)
    seconds = time.perf_counter() - started
    result = ExportResult(output, report, seconds, output.stat().st_size, regions=regions)
    write_json(output.with_name(output.name + ".json"), {
        "onnx": output.name, "precision": settings.precision, "target": settings.target,
        "checkpoint_sha256": sha, "config": config.to_dict(), "verification": report.to_dict(),
        "verification_regions": regions.to_dict() if regions is not None else None,
        "verification_set": verification_path(output).name,
        "export_seconds": round(seconds, 2), "size_bytes": result.size_bytes,
    })
    log(f"wrote {output} ({result.size_bytes / 1e6:.1f} MB) in {seconds:.1f} s")
    if settings.engine is not None:
        result.engine = _build_engine(settings, output, checks, log)
    return result


def build_engine_from_onnx(settings: ExportSettings, precision: str | None = None,
                           log: Callable[[str], None] = print) -> dict:
    """`fwrd-export rd.onnx --engine rd.plan`: an engine from a graph exported earlier (anywhere), gated on the
    verification set saved beside it. Needs no torch; the engine's precision is the graph's unless given."""
    from fwrd.runtime.model_file import read_onnx_metadata
    from fwrd.runtime.onnx_data import refuse_outside_data

    onnx_path = Path(settings.checkpoint)
    if not onnx_path.is_file():
        raise InputNotFound(f"ONNX model not found: {onnx_path}")
    if settings.engine is None:
        raise FwrdError(f"{onnx_path.name} is already an ONNX graph: give --engine to build a TensorRT engine from it")
    refuse_outside_data(onnx_path)
    _check_engine_possible(settings)
    sidecar = verification_path(onnx_path)
    if not sidecar.is_file():
        raise FwrdError(f"{onnx_path.name} has no verification set {sidecar.name} beside it, so its engine "
                        "could not be checked: export the graph again with fwrd-export (it writes one)")
    checks = VerificationSet.load(sidecar, file_sha256(onnx_path))
    settings.precision = precision or read_onnx_metadata(onnx_path).get(META_PRECISION, settings.precision)
    return _build_engine(settings, onnx_path, checks, log)


def _check_tensorrt_rules(graph: Path) -> None:
    """Refuse to write a graph meant for TensorRT that its parser would refuse (a bug, never a user error)."""
    import onnx

    from fwrd.export.tensorrt_rules import tensorrt_problems

    problems = tensorrt_problems(onnx.load(str(graph)))
    if problems:
        raise ExportGateFailed(f"the exported graph breaks TensorRT's parser rules ({len(problems)}): {problems[0]}")


def _verification_set(settings: ExportSettings, config) -> tuple[np.ndarray, np.ndarray]:
    """Labelled synthetic tissue first, then calibration-slide tissue, then noise (both unlabelled).

    int8 calibrates on all of them: without the noise tiles their activations fall outside the
    calibrated ranges and their scores drift by ~0.3 (measured on the demo model; tissue tiles drift
    ~0.03 either way), and real slides hold out-of-distribution debris, pen and blur too.
    """
    labelled, is_tumor = labelled_synthetic_tiles(config, per_class=16, seed=settings.seed)
    parts = [labelled]
    if settings.calibration:
        parts.append(slide_tissue_tiles(settings.calibration, config, settings.calibration_tiles, settings.seed))
    parts.append(noise_tiles(config, 4, settings.seed))
    return np.concatenate(parts), is_tumor


def _check_engine_possible(settings: ExportSettings) -> None:
    """Fail before the (long) export when the engine cannot be built here."""
    from fwrd.runtime.backends.tensorrt import tensorrt_status

    available, reason = tensorrt_status()
    if not available:
        raise DependencyMissing(f"cannot build {settings.engine}: {reason}")


def _build_engine(settings: ExportSettings, onnx_path: Path, checks: VerificationSet, log) -> dict:
    from fwrd.export.tensorrt_build import build_engine

    return build_engine(
        onnx_path, settings.engine, verification=checks, min_batch=settings.min_batch,
        opt_batch=settings.opt_batch, max_batch=settings.max_batch, workspace_gb=settings.workspace_gb,
        timing_cache=settings.timing_cache, precision=settings.precision, tf32=settings.tf32,
        region_side=settings.region_side, log=log,
    )
