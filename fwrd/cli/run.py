"""`fwrd-run`: score slides or a cohort with an exported model (ONNX Runtime or a TensorRT engine), or a
checkpoint with `--backend torch`.

Only parses and delegates: fwrd.runtime.backends.open_backend, fwrd.runtime.cohort.score_cohort (or, with
`--ray`, fwrd.runtime.cluster.score_cohort_on_ray). Never imports torch itself (the torch backend does,
when asked for), nor Ray without `--ray`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fwrd.cli.common import FiniteFloat, FwrdCommand, machine_bound
from fwrd.errors import FwrdError
from fwrd.safe_text import for_terminal

@click.command("run", cls=FwrdCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("slides", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path),
              help="Exported fwrd ONNX model (rd.onnx), or a checkpoint (model.pt) with --backend torch.")
@click.option("--engine", type=click.Path(path_type=Path), help="TensorRT engine built by fwrd-export (rd.plan).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("fwrd-out"), show_default=True,
              help="Output folder; each slide gets OUT/<slide name>/.")
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "onnxruntime", "torch"]), default="auto",
              show_default=True, help="torch: run model.pt in PyTorch (a GPU without TensorRT, or the CPU).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
              help="--backend torch only: cuda when PyTorch sees a GPU, else cpu.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16"]), default="auto", show_default=True,
              help="--backend torch only: fp16 convolutions on CUDA, fp32 on the CPU.")
@click.option("--no-cuda-graphs", "no_cuda_graphs", is_flag=True,
              help="--backend torch on CUDA: run eagerly instead of replaying a captured CUDA graph per batch "
                   "(graphs were 3-6 % faster on an H100; they hold a second copy of the activations).")
@click.option("--tf32", is_flag=True, help="--backend torch fp32 on CUDA: allow TF32 convolutions (~1e-3 relative).")
@click.option("--compile", "compile_", is_flag=True,
              help="--backend torch: compile the tile scorer with torch.compile (inductor, frozen weights, fused "
                   "pointwise kernels) before scoring; costs compilation time once per process (cached on disk "
                   "by PyTorch), falls back to eager with a note when compilation fails. Dense regions run eager.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Decode threads (at most the CPUs this process may use).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime CPU threads (at most the CPUs this process may use) [default: physical cores].")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Grid step in pixels at the model's level [default: the tile size].")
@click.option("--dense", is_flag=True,
              help="Score the grid from region passes (each region's maps computed once, every tile window read "
                   "off them) instead of one pass per tile: the same output files, many times faster at strides "
                   "below the tile size. A second way of scoring, not the same scores: tiles are seen with their "
                   "context: only for a model validated for it (fwrd-export MODEL --validate-dense SLIDES), at the "
                   "margin it was validated at (docs/dense.md).")
@click.option("--region", type=click.IntRange(min=32), default=None,
              help="--dense: largest region side in pixels at the model's level, a multiple of 32 "
                   "[default: on a CPU 1536 or 10 tiles (2560 at 256 px), on a GPU 4096 or 8 tiles; a TensorRT "
                   "engine's region profile].")
@click.option("--margin", type=click.IntRange(min=0), default=None,
              help="--dense: context in pixels kept around every tile window, a multiple of 32 [default: the one "
                   "the model was validated at; it refuses any other].")
@click.option("--mpp", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Level-0 microns per pixel, for slides without (or with wrong) resolution metadata; where it "
                   "contradicts the slide's, a warning names both and summary.json keeps both. Each slide is read "
                   "at the model's resolution: the level within 10% as it is, else a finer level shrunk (never "
                   "enlarged: a slide coarser than the model is refused).")
@click.option("--threshold", type=FiniteFloat(), default=None, help="Tumor threshold [default: the model's].")
@click.option("--shard", default=None, metavar="I/N", help="Score every N-th slide from the I-th (0-based).")
@click.option("--resume", is_flag=True,
              help="Skip slides whose outputs are complete for this model, settings and slide file; "
                   "continue interrupted ones.")
@click.option("--overwrite", is_flag=True, help="Score slides again even when OUT already holds their outputs.")
@click.option("--reader", type=click.Choice(["auto", "openslide"]), default="auto", show_default=True,
              help="auto: decode tiled-JPEG TIFF/SVS tiles directly; openslide: always OpenSlide (slower, "
                   "and stricter about damaged JPEG data).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Schedule the slides on a Ray cluster (pip install fwrd[cluster]): bare --ray starts one on "
                   "this machine; --ray auto or ray://HOST:PORT joins one. OUT, the model and the slides must be "
                   "on a file system every node shares.")
@click.option("--qc", "qc", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Quality control: find pen ink, dirt, air bubbles, folds and out-of-focus tiles (thresholds "
                   "from the model's config) and keep them out of every call; a slide QC cannot vouch for is "
                   "marked `review` (docs/qc.md). off: every tile counts, as before QC existed.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def command(
    slides: tuple[Path, ...], model: Path | None, engine: Path | None, out: Path, backend: str, device: str,
    precision: str, no_cuda_graphs: bool, tf32: bool, compile_: bool, batch_size: int, workers: int,
    threads: int | None, stride: int | None, dense: bool, region: int | None, margin: int | None, mpp: float | None,
    threshold: float | None, shard: str | None, resume: bool, overwrite: bool, reader: str,
    ray_address: str | None, qc: str, quiet: bool,
) -> None:
    """Score SLIDE_OR_DIR... for metastases: heatmaps, detections, tumor contours and slide scores.

    Each slide gets OUT/<slide>/ (complete or absent, never half of a run); OUT/slides.csv lists
    every slide of OUT. Nothing is written before the model and the slides have been checked.
    """
    from fwrd.runtime.backends import open_backend
    from fwrd.runtime.cohort import (
        being_scored, check_output_folder, check_slide_outputs, existing_outputs, parse_shard, score_cohort,
        select_shard,
    )
    from fwrd.runtime.model_file import check_engine_argument
    from fwrd.runtime.settings import RunSettings
    from fwrd.slide.discover import find_slides

    if (model is None) == (engine is None):
        raise FwrdError("give exactly one of --model rd.onnx or --engine rd.plan")
    if resume and overwrite:
        raise FwrdError("give --resume (keep complete outputs) or --overwrite (score again), not both")
    if ray_address is None:  # on Ray, the actors' nodes bound them (cluster.plan_actors, slide_job)
        workers, threads = machine_bound(workers, "--workers"), machine_bound(threads, "--threads")
    settings = RunSettings(
        batch_size=batch_size, workers=workers, stride=stride, mpp=mpp, threshold=threshold, resume=resume,
        prefer_direct=(reader == "auto"), progress=not quiet, dense=dense, region=region, margin=margin,
        qc=(qc == "on"),
    )
    part = parse_shard(shard)
    if ray_address is not None:
        from fwrd.runtime.cluster import check_address, import_ray

        if part is not None:
            raise FwrdError("--shard splits the cohort by hand and --ray balances it over a cluster: give one")
        check_address(ray_address)
        import_ray()  # or one line saying how to install it, before anything else happens
    chosen = select_shard(find_slides(slides), part)
    check_output_folder(out)
    if engine is not None:
        check_engine_argument(engine)
    if not chosen:
        click.echo(f"shard {shard} has no slides (the cohort has fewer than its index)", err=True)
        return
    check_slide_outputs(out, chosen)  # names that are folders, and nothing in OUT fwrd would replace but not own
    present = existing_outputs(out, chosen)
    if present and not (resume or overwrite):
        raise FwrdError(
            f"{out} already holds outputs of {len(present)} of these slides ({', '.join(present[:3])}"
            f"{', ...' if len(present) > 3 else ''}){being_scored(out, present)}; pass --resume to keep complete "
            "ones and score the rest (interrupted or failed), or --overwrite to score them all again"
        )
    options = dict(backend=backend, batch_size=batch_size, threads=threads, device=device, precision=precision,
                   cuda_graphs=not no_cuda_graphs, tf32=tf32, dense=dense, region=region, compile=compile_)
    log = (lambda line: None) if quiet and len(chosen) == 1 else None
    single = len(chosen) == 1  # its error is the Error line, said once
    if ray_address is not None:
        from fwrd.runtime.cluster import BackendSpec, score_cohort_on_ray

        results = score_cohort_on_ray(chosen, BackendSpec(model or engine, options), out, settings, ray_address, log,
                                      say_failures=not single)
    else:
        with open_backend(model or engine, **options) as opened:
            if dense:  # an unvalidated model, another margin or a region too small fails here, before any slide
                from fwrd.runtime.dense_trust import dense_margin
                from fwrd.runtime.regions import check_geometry

                tile = opened.config.tile_size
                check_geometry(opened.region, tile, stride or tile,
                               dense_margin(opened.config, margin, Path(model or engine).name))
            mode = f"; dense, regions up to {opened.region} px" if dense else ""
            click.echo(f"fwrd-run: {len(chosen)} slide(s) on {opened.name} ({opened.device}, {opened.precision}){mode}",
                       err=True)
            for note in getattr(opened, "notes", []):
                click.echo(f"note: {note}", err=True)
            if dense and threshold is None:
                from fwrd.runtime.slide_job import dense_threshold_note

                click.echo(f"note: {dense_threshold_note(opened.config)}", err=True)
            results = score_cohort(chosen, opened, out, settings, log=log, say_failures=not single)
    failed = [r for r in results if r.status == "failed"]
    busy = [r for r in results if r.status == "busy"]
    if len(results) == 1 and (failed or busy):
        raise FwrdError((failed or busy)[0].error)
    _say_where(out, results)
    _say_review(results)
    if failed or busy:
        table = for_terminal(str(out / "slides.csv"))
        said = ([f"{len(failed)} of {len(results)} slides failed (see {table})"] if failed else []) + (
            [f"{len(busy)} of {len(results)} slides left to the other process scoring them (rerun with --resume once "
             "it is done)"] if busy else [])
        click.echo(f"Error: {'; '.join(said)}", err=True)
        sys.exit(1)


def _say_where(out: Path, results: list) -> None:
    """Name the per-slide folder(s) and what they hold, and the table."""
    from fwrd.runtime.outputs.summary import OUTPUT_FILES

    done = [r for r in results if r.status in ("ok", "skipped")]
    if not done:
        return
    folder = done[0].out_dir if len(done) == 1 else out / "<slide>"
    click.echo(for_terminal(f"outputs: {folder}/ ({', '.join(OUTPUT_FILES)}); {out / 'slides.csv'} lists every "
                            f"slide of {out}"), err=True)


def _say_review(results: list) -> None:
    """One line per slide QC could not vouch for: its calls need a person's look (exit status stays 0)."""
    from fwrd.runtime.cohort import slide_verdict

    for r in results:
        if slide_verdict(r) == "review":
            click.echo(f"review: {r.name}: {r.error}", err=True)


main = command
