"""`fwrd-export`: checkpoint -> one fused, verified ONNX graph, optionally a TensorRT engine."""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand


@click.command(cls=FwrdCommand, name="export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("rd.onnx"), show_default=True,
              help="The fused ONNX graph (uint8 tiles in; score and anomaly map out; config in its metadata).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="fp16: convolutions in half precision (for GPUs / TensorRT); int8: QDQ for ONNX Runtime on CPU.")
@click.option("--engine", type=click.Path(path_type=Path), default=None,
              help="Also build a TensorRT engine (e.g. rd.plan) from the graph; needs a GPU and TensorRT.")
@click.option("--min-batch", type=click.IntRange(1), default=1, show_default=True, help="Engine profile: smallest batch.")
@click.option("--opt-batch", type=click.IntRange(1), default=32, show_default=True, help="Engine profile: batch tuned for.")
@click.option("--max-batch", type=click.IntRange(1), default=64, show_default=True, help="Engine profile: largest batch.")
@click.option("--workspace-gb", type=click.FloatRange(0.1), default=4.0, show_default=True, help="Engine builder workspace limit.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None,
              help="TensorRT timing cache file, read if present and updated after the build.")
@click.option("--calibration", type=click.Path(path_type=Path), multiple=True,
              help="Slide or folder of slides whose tissue tiles calibrate int8 and join the accuracy check "
                   "(repeatable). Default: a synthetic slide only.")
@click.option("--seed", type=int, default=0, show_default=True)
def command(checkpoint: Path, output: Path, precision: str, engine: Path | None, min_batch: int, opt_batch: int,
            max_batch: int, workspace_gb: float, timing_cache: Path | None, calibration: tuple[Path, ...],
            seed: int) -> None:
    """Export CHECKPOINT (model.pt) to one self-contained ONNX graph that verifies itself.

    Preprocessing, teacher, bottleneck, student, anomaly maps and the patch score are one graph. Before
    the file is written, ONNX Runtime runs it against PyTorch fp32 on labelled tissue tiles and noise at
    batch 1 and 8; a failed accuracy gate exits non-zero and writes nothing.
    """
    from fwrd.export.pipeline import ExportSettings, export_model

    settings = ExportSettings(
        checkpoint=checkpoint, output=output, precision=precision, calibration=list(calibration), engine=engine,
        min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_gb=workspace_gb,
        timing_cache=timing_cache, seed=seed,
    )
    export_model(settings, log=lambda line: click.echo(line, err=True))


main = command
