"""`fwrd-export`: checkpoint -> one fused, verified ONNX graph, optionally a TensorRT engine."""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand
from fwrd.errors import FwrdError


@click.command(cls=FwrdCommand, name="export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="The fused ONNX graph (uint8 tiles in; score and anomaly map out; config in its metadata) "
                   "[default: rd.onnx; with --validate-dense: CHECKPOINT itself, rewritten].")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="fp16 (default): convolutions in half precision (for GPUs / TensorRT); int8: QDQ, see --target. "
                   "With an .onnx CHECKPOINT: the engine's precision (default: the graph's).")
@click.option("--target", type=click.Choice(["cpu", "tensorrt"]), default=None,
              help="int8 only: cpu (default; uint8 activations, ONNX Runtime's fast CPU path) or tensorrt "
                   "(symmetric int8 Q/DQ that TensorRT fuses; the default with --engine).")
@click.option("--engine", type=click.Path(path_type=Path), default=None,
              help="Also build a TensorRT engine (e.g. rd.plan) from the graph, checked on the export's tiles; "
                   "needs a GPU and TensorRT.")
@click.option("--tf32/--no-tf32", default=False, show_default=True,
              help="fp32 engines: let TensorRT use TF32 (faster; gated like fp16 instead of to 1e-4).")
@click.option("--min-batch", type=click.IntRange(1), default=1, show_default=True, help="Engine profile: smallest batch.")
@click.option("--opt-batch", type=click.IntRange(1), default=32, show_default=True, help="Engine profile: batch tuned for.")
@click.option("--max-batch", type=click.IntRange(1), default=64, show_default=True, help="Engine profile: largest batch.")
@click.option("--region", "region_side", type=click.IntRange(32), default=None,
              help="Engine region profile for fwrd-run --dense: regions of one tile up to this side (px, a multiple "
                   "of 32) [default: 4096]. With --validate-dense: the region side to validate at [default: "
                   "fwrd-run's on this machine].")
@click.option("--workspace-gb", type=click.FloatRange(0.1), default=4.0, show_default=True, help="Engine builder workspace limit.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None,
              help="TensorRT timing cache file, read if present and updated after the build.")
@click.option("--calibration", type=click.Path(path_type=Path), multiple=True,
              help="Slide or folder of slides whose tissue tiles calibrate int8 and join the accuracy check "
                   "(repeatable). Default: a synthetic slide only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--validate-dense", "validate_dense", type=click.Path(path_type=Path), multiple=True,
              metavar="SLIDE_OR_DIR",
              help="Instead of exporting: score these annotated slides (not the training slides; repeatable) per "
                   "tile and in region passes at fwrd-run's dense geometry, and write the result into CHECKPOINT "
                   "(an fp32/fp16 .onnx or a model.pt): fwrd-run --dense runs only models validated so (docs/dense.md).")
@click.option("--annotations", type=click.Path(path_type=Path), multiple=True,
              help="--validate-dense: folder of <slide>.xml (ASAP) and/or <slide>_Mask.tif; repeatable.")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="--validate-dense: grid step in pixels [default: the tile size / 4].")
@click.option("--margin", type=click.IntRange(min=0), default=None,
              help="--validate-dense: the dense margin to validate at, a multiple of 32 [default: fwrd-run's].")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="--validate-dense: decode threads.")
def command(checkpoint: Path, output: Path | None, precision: str | None, target: str | None, engine: Path | None,
            tf32: bool, min_batch: int, opt_batch: int, max_batch: int, region_side: int | None, workspace_gb: float,
            timing_cache: Path | None, calibration: tuple[Path, ...], seed: int, validate_dense: tuple[Path, ...],
            annotations: tuple[Path, ...], stride: int | None, margin: int | None, workers: int) -> None:
    """Export CHECKPOINT (model.pt) to one self-contained ONNX graph that verifies itself.

    Preprocessing, teacher, bottleneck, student, anomaly maps and the patch score are one graph. Before
    the file is written, ONNX Runtime runs it against PyTorch fp32 on labelled tissue tiles and noise at
    batch 1 and 8; a failed accuracy gate exits non-zero and writes nothing. An engine (--engine) is run
    on the same tiles and written only if it passes the gate of its precision.

    With an .onnx CHECKPOINT (exported earlier, e.g. on a machine without a GPU), only the engine is
    built, gated on the verification set the export wrote beside the graph (rd.onnx.verify.npz).

    With --validate-dense SLIDES --annotations DIR, nothing is exported: CHECKPOINT (a graph or a model.pt)
    scores the slides per tile and in region passes, and the result goes into its config; fwrd-run --dense
    runs only models validated so, at the margin they were validated at.
    """
    log = lambda line: click.echo(line, err=True)  # noqa: E731
    if validate_dense:
        if engine is not None or precision or target or calibration:
            raise click.UsageError("--validate-dense measures CHECKPOINT as it is: --precision, --target, --engine "
                                   "and --calibration belong to an export (export first, then validate the graph)")
        _validate_dense(checkpoint, output, validate_dense, annotations, stride, margin, region_side, workers, log)
        return
    if annotations or stride is not None or margin is not None:
        raise click.UsageError("--annotations, --stride and --margin go with --validate-dense")
    from fwrd.export.pipeline import ExportSettings, build_engine_from_onnx, export_model

    settings = ExportSettings(
        checkpoint=checkpoint, output=output or Path("rd.onnx"), precision=precision or "fp16",
        calibration=list(calibration), engine=engine, target=target, tf32=tf32, min_batch=min_batch,
        opt_batch=opt_batch, max_batch=max_batch, region_side=4096 if region_side is None else region_side,
        workspace_gb=workspace_gb, timing_cache=timing_cache, seed=seed,
    )
    if checkpoint.suffix.lower() == ".onnx":
        build_engine_from_onnx(settings, precision, log=log)
    else:
        export_model(settings, log=log)


def _validate_dense(model: Path, output: Path | None, slides: tuple[Path, ...], annotations: tuple[Path, ...],
                    stride: int | None, margin: int | None, region: int | None, workers: int, log) -> None:
    from fwrd.config import FWRDConfig
    from fwrd.export.dense_validation import DenseValidationSettings, validate_dense, write_record
    from fwrd.runtime.dense_trust import dense_margin

    settings = DenseValidationSettings(model, list(slides), list(annotations), output, stride, margin, region, workers)
    record = validate_dense(settings, log)
    written = write_record(model, record, output)
    log(f"wrote the dense-validation record into {written}")
    try:  # what fwrd-run --dense will say about it
        dense_margin(FWRDConfig(dense_validation=record), None, written.name)
        log(f"fwrd-run --dense will score with it at a {record['margin']} px margin")
    except FwrdError as refused:
        log(f"fwrd-run --dense will refuse it: {refused}")


main = command
