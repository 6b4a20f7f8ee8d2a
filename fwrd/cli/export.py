"""`fwrd-export`: checkpoint -> one fused, verified ONNX graph, optionally a TensorRT engine."""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand


@click.command(cls=FwrdCommand, name="export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("rd.onnx"), show_default=True,
              help="The fused ONNX graph (uint8 tiles in; score and anomaly map out; config in its metadata).")
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
@click.option("--region", "region_side", type=click.IntRange(32), default=4096, show_default=True,
              help="Engine region profile for fwrd-run --dense: regions of one tile up to this side (px, a multiple of 32).")
@click.option("--workspace-gb", type=click.FloatRange(0.1), default=4.0, show_default=True, help="Engine builder workspace limit.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None,
              help="TensorRT timing cache file, read if present and updated after the build.")
@click.option("--calibration", type=click.Path(path_type=Path), multiple=True,
              help="Slide or folder of slides whose tissue tiles calibrate int8 and join the accuracy check "
                   "(repeatable). Default: a synthetic slide only.")
@click.option("--seed", type=int, default=0, show_default=True)
def command(checkpoint: Path, output: Path, precision: str | None, target: str | None, engine: Path | None,
            tf32: bool, min_batch: int, opt_batch: int, max_batch: int, region_side: int, workspace_gb: float,
            timing_cache: Path | None, calibration: tuple[Path, ...], seed: int) -> None:
    """Export CHECKPOINT (model.pt) to one self-contained ONNX graph that verifies itself.

    Preprocessing, teacher, bottleneck, student, anomaly maps and the patch score are one graph. Before
    the file is written, ONNX Runtime runs it against PyTorch fp32 on labelled tissue tiles and noise at
    batch 1 and 8; a failed accuracy gate exits non-zero and writes nothing. An engine (--engine) is run
    on the same tiles and written only if it passes the gate of its precision.

    With an .onnx CHECKPOINT (exported earlier, e.g. on a machine without a GPU), only the engine is
    built, gated on the verification set the export wrote beside the graph (rd.onnx.verify.npz).
    """
    from fwrd.export.pipeline import ExportSettings, build_engine_from_onnx, export_model

    settings = ExportSettings(
        checkpoint=checkpoint, output=output, precision=precision or "fp16", calibration=list(calibration),
        engine=engine, target=target, tf32=tf32, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
        region_side=region_side, workspace_gb=workspace_gb, timing_cache=timing_cache, seed=seed,
    )
    log = lambda line: click.echo(line, err=True)  # noqa: E731
    if checkpoint.suffix.lower() == ".onnx":
        build_engine_from_onnx(settings, precision, log=log)
    else:
        export_model(settings, log=log)


main = command
