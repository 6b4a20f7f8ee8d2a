"""`fwrd-bench`: throughput of every stage of fwrd-run, the bottleneck, backends and baselines compared.

Only parses and delegates to fwrd.benchmark. Never imports torch (the naive baseline does, when run).
"""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand, machine_bound


def _ints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise click.BadParameter(f"expected numbers >= 1, got {value!r}")
    return tuple(dict.fromkeys(numbers))


def _words(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


@click.command("bench", cls=FwrdCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "models", type=click.Path(path_type=Path), multiple=True,
              help="Exported fwrd ONNX model; repeat for the fp32 / fp16 / int8 graphs of one checkpoint. "
                   "A checkpoint (model.pt) runs on the torch backends.")
@click.option("--engine", "engines", type=click.Path(path_type=Path), multiple=True,
              help="TensorRT plan built by fwrd-export (repeatable).")
@click.option("--slide", type=click.Path(path_type=Path), default=None,
              help="Slide to read [default: a synthetic one of --size pixels a side].")
@click.option("--size", type=click.IntRange(min=256), default=4096, show_default=True,
              help="Side of the synthetic slide in pixels (the memory stage also uses one of twice the side).")
@click.option("--batch-sizes", default="16", show_default=True, callback=_ints, help="Comma-separated.")
@click.option("--workers", default="1,2", show_default=True, callback=_ints, help="Decode threads, comma-separated.")
@click.option("--backends", default="auto", show_default=True, callback=_words,
              help="Comma-separated: auto, onnxruntime, ort-cpu, ort-cuda, ort-tensorrt, tensorrt, "
                   "torch, torch-fp16, torch-fp32 (the last three run a model.pt).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
              help="Where the torch backends and the naive loop run.")
@click.option("--cuda-graphs/--no-cuda-graphs", default=True, show_default=True,
              help="The torch backends on CUDA replay a captured CUDA graph per batch.")
@click.option("--compile", "compile_", is_flag=True,
              help="The torch backends compile their tile scorer (torch.compile) when they open; not timed.")
@click.option("--precisions", default="", callback=_words,
              help="Keep only models of these precisions (fp32, fp16, int8) [default: all given].")
@click.option("--stages", default="decode,inference,end-to-end,naive", show_default=True, callback=_words,
              help="Comma-separated: decode, inference, end-to-end, naive, memory.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Time per decode, inference and naive measurement (end to end scores the whole slide).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Measurements per figure; the median and spread are reported.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Uncounted batches before each inference measurement (tiles for the naive loop).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime and PyTorch CPU threads [default: physical cores].")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Grid step [default: the tile size].")
@click.option("--dense", is_flag=True,
              help="Also score the slide end to end with fwrd-run --dense and report dense vs per tile (speed ratio, "
                   "agreement of the tile scores).")
@click.option("--region", type=click.IntRange(min=32), default=None,
              help="--dense: region side in pixels [default: the backend's, as fwrd-run].")
@click.option("--mpp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Level-0 microns per pixel for a slide without resolution metadata.")
@click.option("--reader", type=click.Choice(["auto", "openslide"]), default="auto", show_default=True,
              help="auto: decode tiled-JPEG TIFF/SVS tiles directly; openslide: always OpenSlide.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="model.pt the graphs came from: runs the naive PyTorch eager baseline (needs torch).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Write every figure, the machine and versions here (e.g. benchmarks/results/cpu.json).")
@click.option("--markdown", type=click.Path(path_type=Path), default=None,
              help="Write a short markdown summary here (e.g. benchmarks/results/cpu.md).")
@click.option("--save", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write DIR/<machine>-<tile>px.json and .md, named after the GPU (or CPU and cores).")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def command(
    models: tuple[Path, ...], engines: tuple[Path, ...], slide: Path | None, size: int,
    batch_sizes: tuple[int, ...], workers: tuple[int, ...], backends: tuple[str, ...], device: str,
    cuda_graphs: bool, compile_: bool, precisions: tuple[str, ...],
    stages: tuple[str, ...], seconds: float, repeats: int, warmup: int, threads: int | None, stride: int | None,
    dense: bool, region: int | None, mpp: float | None, reader: str, checkpoint: Path | None, json_out: Path | None, markdown: Path | None,
    save: Path | None, quiet: bool,
) -> None:
    """Measure decode, inference and end-to-end throughput of fwrd-run, and a naive PyTorch loop.

    Prints a table and a verdict: which stage bounds end-to-end throughput, and end to end as a fraction
    of min(decode, inference). Example:

        fwrd-bench --model rd.onnx --model rd_int8.onnx --batch-sizes 8,32 --checkpoint model.pt
    """
    from fwrd.benchmark.harness import BenchSettings, run_benchmark
    from fwrd.benchmark.report import render_text, results_stem, write_results
    from fwrd.benchmark.targets import is_engine
    from fwrd.errors import FwrdError, InputNotFound

    if not models and not engines:
        raise FwrdError("give at least one --model rd.onnx or --engine rd.plan")
    for engine in engines:
        if not is_engine(engine):
            raise FwrdError(f"--engine takes a TensorRT plan (.plan, .engine, .trt), got {engine}")
    for path in (*models, *engines, *([slide] if slide else []), *([checkpoint] if checkpoint else [])):
        if not path.exists():
            raise InputNotFound(f"{path}: no such file")
    workers = tuple(dict.fromkeys(machine_bound(w, "--workers") for w in workers))
    threads = machine_bound(threads, "--threads")
    settings = BenchSettings(
        models=models + engines, slide=slide, size=size, batch_sizes=batch_sizes, workers=workers, backends=backends,
        precisions=precisions, stages=stages, seconds=seconds, repeats=repeats, warmup=warmup, threads=threads,
        stride=stride, mpp=mpp, prefer_direct=(reader == "auto"), checkpoint=checkpoint, device=device,
        cuda_graphs=cuda_graphs, compile=compile_, dense=dense, region=region,
    )
    log = (lambda line: None) if quiet else (lambda line: click.echo(f"fwrd-bench: {line}", err=True))
    result = run_benchmark(settings, log=log)
    click.echo(render_text(result), nl=False)
    if save is not None:
        stem = results_stem(result)
        json_out, markdown = json_out or save / f"{stem}.json", markdown or save / f"{stem}.md"
    write_results(result, json_out, markdown)
    for path in (json_out, markdown):
        if path is not None:
            log(f"wrote {path}")


main = command
