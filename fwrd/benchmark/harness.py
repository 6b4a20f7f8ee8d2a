"""One benchmark run: open every model on every backend, make or open the slide, measure each stage
`repeats` times (interleaved, so drift shows up as spread rather than as a bias between stages),
summarise, and attach the verdict.

    settings = BenchSettings(models=(Path("rd.onnx"), Path("rd_int8.onnx")), batch_sizes=(8, 32))
    result = run_benchmark(settings, log=print)
    print(render_text(result))

Stages: decode (per worker count), inference (per model x backend x batch size), end-to-end (per model
x backend x batch size x worker count: the whole slide through score_slide), naive (the PyTorch loop,
after all the others so that torch's threads never overlap them) and, on request, memory (peak RSS of
a fresh fwrd-run process on a synthetic slide and on one of 4x its area). With `dense`, end to end also
scores the slide with `fwrd-run --dense` (per model x backend x worker count) and compares the two modes
on it: the ratio of their end-to-end speeds and how their tile scores agree (fwrd.benchmark.dense).
"""

from __future__ import annotations

import collections
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fwrd.benchmark.dense import dense_rows
from fwrd.benchmark.machine import describe_machine
from fwrd.benchmark.memory import peak_rss_mb
from fwrd.benchmark.naive import (
    TileScorer,
    load_torch_scorer,
    naive_sample,
    naive_unavailable,
)
from fwrd.benchmark.report import overall_verdict, stage_verdict
from fwrd.benchmark.stages import (
    Sample,
    decode_sample,
    end_to_end_sample,
    inference_sample,
    sample_tiles,
)
from fwrd.benchmark.stats import summarise
from fwrd.benchmark.targets import (
    KINDS,
    PRECISIONS,
    Target,
    canonical_kind,
    is_engine,
    model_precision,
    not_applicable,
    open_target,
)
from fwrd.config import FWRDConfig
from fwrd.errors import DependencyMissing, FwrdError, ModelError
from fwrd.runtime.backends.onnxruntime import physical_cores
from fwrd.digest import file_sha256
from fwrd.runtime.plan import SlidePlan, plan_slide
from fwrd.runtime.regions import ALIGN
from fwrd.runtime.settings import RunSettings
from fwrd.slide.reader import open_slide
from fwrd.slide.synthetic import make_synthetic_slide
from fwrd.slide.tile_reader import open_tile_reader

SCHEMA = "fwrd-bench-v1"
STAGE_NAMES = ("decode", "inference", "end-to-end", "naive", "memory")
DEFAULT_STAGES = ("decode", "inference", "end-to-end", "naive")
SYNTHETIC_MPP = 0.243  # a model trained without a resolution reads level 0 of a slide like Camelyon16's

Log = Callable[[str], None]


def _silent(_: str) -> None:
    return None


@dataclass(frozen=True)
class BenchSettings:
    """What to measure and for how long.

    Attributes:
        models: .onnx graphs (fp32 / fp16 / int8 of one checkpoint) and/or TensorRT plans; all must read
            the same tile size and resolution (one slide plan serves them all).
        slide: the slide to read (None: a synthetic `size` x `size` one at the model's resolution).
        batch_sizes, workers: the grid; decode runs per worker count (at the largest batch size),
            inference per batch size, end to end for every combination.
        backends: target kinds (fwrd.benchmark.targets.KINDS); one that cannot run a file is skipped.
        precisions: keep only models of these precisions (empty: all).
        stages: which of STAGE_NAMES to run.
        seconds: time per decode / inference / naive measurement; end to end scores the whole slide.
        repeats: measurements per figure (median and spread are reported).
        warmup: uncounted batches before each inference measurement (tiles for the naive loop).
        threads: ONNX Runtime and PyTorch CPU threads (None: physical cores).
        checkpoint: model.pt for the naive PyTorch baseline.
        device: where the torch backend and the naive loop run (auto: CUDA when PyTorch sees a GPU).
        cuda_graphs: the torch backend replays a captured CUDA graph per batch.
        compile: the torch backend compiles its tile scorer (torch.compile) when it opens.
        dense: also score end to end with dense scoring, and compare the modes (fwrd-bench --dense).
        region: dense scoring's region side (None: the backend's default).
    """

    models: tuple[Path, ...]
    slide: Path | None = None
    size: int = 4096
    batch_sizes: tuple[int, ...] = (16,)
    workers: tuple[int, ...] = (1, 2)
    backends: tuple[str, ...] = ("auto",)
    precisions: tuple[str, ...] = ()
    stages: tuple[str, ...] = DEFAULT_STAGES
    seconds: float = 5.0
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    stride: int | None = None
    mpp: float | None = None
    prefer_direct: bool = True
    checkpoint: Path | None = None
    device: str = "auto"
    cuda_graphs: bool = True
    compile: bool = False
    dense: bool = False
    region: int | None = None
    seed: int = 7

    def __post_init__(self) -> None:
        if not self.models:
            raise FwrdError("give at least one model: --model rd.onnx or --engine rd.plan")
        _check_list("batch size", self.batch_sizes)
        _check_list("worker count", self.workers)
        for kind in self.backends:
            if kind not in KINDS:
                raise FwrdError(f"unknown backend {kind!r}; expected one of {', '.join(KINDS)}")
        for precision in self.precisions:
            if precision not in PRECISIONS:
                raise FwrdError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        for stage in self.stages:
            if stage not in STAGE_NAMES:
                raise FwrdError(f"unknown stage {stage!r}; expected some of {', '.join(STAGE_NAMES)}")
        if not self.stages:
            raise FwrdError("no stages to run")
        if not self.backends:
            raise FwrdError("no backends to run")
        if not self.seconds > 0:
            raise FwrdError(f"seconds per measurement must be positive, got {self.seconds}")
        if self.repeats < 1 or self.warmup < 0:
            raise FwrdError(f"need repeats >= 1 and warm-up >= 0, got {self.repeats} and {self.warmup}")
        if self.size < 256:
            raise FwrdError(f"a synthetic benchmark slide needs at least 256 px a side, got {self.size}")
        if self.dense and "end-to-end" not in self.stages:
            raise FwrdError("--dense compares the two modes end to end: keep the end-to-end stage")
        if self.region is not None and (not self.dense or self.region % 32):
            raise FwrdError(f"--region takes a multiple of 32 pixels, with --dense; got {self.region}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("models", "batch_sizes", "workers", "backends", "precisions", "stages"):
            data[key] = [str(v) if isinstance(v, Path) else v for v in data[key]]
        for key in ("slide", "checkpoint"):
            data[key] = None if data[key] is None else str(data[key])
        data["decode_batch_size"] = max(self.batch_sizes)
        return data


def _check_list(what: str, values: Sequence[int]) -> None:
    if not values:
        raise FwrdError(f"give at least one {what}")
    bad = [v for v in values if int(v) < 1]
    if bad:
        raise FwrdError(f"every {what} must be at least 1, got {bad[0]}")


def open_targets(settings: BenchSettings, log: Log = _silent) -> tuple[list[Target], list[dict[str, str]]]:
    """Every model on every backend kind that can run it here; the rest with the reason."""
    targets: list[Target] = []
    skipped: list[dict[str, str]] = []
    try:
        for path in dict.fromkeys(Path(p) for p in settings.models):
            if settings.precisions:
                precision = model_precision(path)  # None: a checkpoint, filtered once opened
                if precision is not None and precision not in settings.precisions:
                    skipped.append({"what": path.name, "reason": f"{precision}, not in --precisions"})
                    continue
            for kind in dict.fromkeys(canonical_kind(path, k) for k in settings.backends):
                what = f"{path.name} on {kind}"
                reason = not_applicable(path, kind)
                if reason is None:
                    try:
                        log(f"loading {what}")
                        target = open_target(path, kind, settings.batch_sizes, settings.threads, settings.device,
                                             settings.cuda_graphs, settings.dense, settings.region,
                                             compile=settings.compile)
                    except DependencyMissing as exc:
                        reason = str(exc)
                    except ModelError as exc:
                        if not is_engine(path):
                            raise  # the ONNX file itself is wrong: say so, do not skip it quietly
                        reason = str(exc)  # a plan for another GPU / TensorRT: cannot run here
                    else:
                        if settings.precisions and target.precision not in settings.precisions:
                            target.close()
                            skipped.append({"what": what, "reason": f"{target.precision}, not in --precisions"})
                            continue
                        targets.append(target)
                        skipped.extend({"what": f"{what}, batch {b}", "reason": why}
                                       for b, why in target.skipped.items())
                        if target.dense_skipped:
                            skipped.append({"what": f"{what}, dense", "reason": target.dense_skipped})
                        continue
                skipped.append({"what": what, "reason": reason})
    except BaseException:
        for target in targets:
            target.close()
        raise
    return targets, skipped


def common_config(targets: Sequence[Target]) -> FWRDConfig:
    """The one config all targets share where it matters for reading the slide."""
    configs = {(t.any_backend.config.tile_size, t.any_backend.config.mpp, t.any_backend.config.level): t
               for t in targets}
    if len(configs) > 1:
        described = "; ".join(
            f"{t.path.name}: {k[0]} px at " + (f"{k[1]:g} um/px" if k[1] else f"level {k[2]}")
            for k, t in configs.items())
        raise FwrdError(f"the models read different tiles ({described}); benchmark them in separate runs")
    return targets[0].any_backend.config


def provenance_warnings(targets: Sequence[Target], checkpoint: Path | None = None) -> list[str]:
    """Say when the models (or the naive loop's checkpoint) come from different checkpoints: their
    speeds still compare, but fp32 vs fp16 vs int8 is then not like for like (other weights, maybe
    another architecture), and the speed-up over the naive loop compares different models."""
    sources = {t.path: t.checkpoint_sha256 for t in targets}
    known = {sha for sha in sources.values() if sha}
    out = []
    if len(known) > 1:
        listed = ", ".join(f"{path.name} from {sha[:12] or 'an unrecorded checkpoint'}" for path, sha in sources.items())
        out.append(f"the models come from {len(known)} different checkpoints ({listed}): the precision and "
                   "backend comparison is not like for like; export every precision from one model.pt")
    elif known and not all(sources.values()):
        unknown = ", ".join(path.name for path, sha in sources.items() if not sha)
        out.append(f"{unknown} record(s) no source checkpoint: cannot tell whether the comparison is like for like")
    if checkpoint is not None and known:
        sha = file_sha256(checkpoint)
        if sha not in known:
            out.append(f"the naive loop runs {checkpoint.name} ({sha[:12]}), the models were exported from "
                       f"{', '.join(s[:12] for s in sorted(known))}: the speed-up compares different models")
    return out


def run_benchmark(settings: BenchSettings, log: Log = _silent) -> dict[str, Any]:
    """Measure everything `settings` asks for and return the result record (see fwrd.benchmark)."""
    stages = set(settings.stages)
    naive_reason = naive_unavailable(settings.checkpoint) if "naive" in stages else None
    targets, skipped = open_targets(settings, log)
    if not targets:
        raise FwrdError("nothing to benchmark here: " + "; ".join(f"{s['what']}: {s['reason']}" for s in skipped))
    try:
        config = common_config(targets)
        naive_checkpoint = settings.checkpoint if "naive" in stages and naive_reason is None else None
        warnings = provenance_warnings(targets, naive_checkpoint)
        for line in warnings:
            log(f"warning: {line}")
        scorer = None
        if "naive" in stages and naive_reason is None:
            log(f"loading {settings.checkpoint} in PyTorch for the naive loop")
            assert settings.checkpoint is not None  # naive_unavailable said so
            scorer = load_torch_scorer(settings.checkpoint, settings.threads or physical_cores(), settings.device)
            if scorer.config.tile_size != config.tile_size:
                raise FwrdError(f"{settings.checkpoint} reads {scorer.config.tile_size} px tiles, the models "
                                f"{config.tile_size} px: give the checkpoint they were exported from")
        with tempfile.TemporaryDirectory(prefix="fwrd-bench-") as tmp:
            work = Path(tmp)
            result = _measure(settings, targets, config, scorer, naive_reason, work, log)
    finally:
        for target in targets:
            target.close()
    result["skipped"] = skipped
    result["warnings"] = warnings
    result["verdict"] = overall_verdict(result)
    return result


def _synthetic(work: Path, side: int, config: FWRDConfig, seed: int, log: Log) -> Path:
    log(f"writing a synthetic {side} x {side} slide")
    mpp = config.mpp or SYNTHETIC_MPP
    return make_synthetic_slide(work / f"synthetic_{side}.svs", width=side, height=side, mpp=mpp, seed=seed).path


def _measure(
    settings: BenchSettings, targets: list[Target], config: FWRDConfig, scorer: TileScorer | None,
    naive_reason: str | None, work: Path, log: Log,
) -> dict[str, Any]:
    stages = set(settings.stages)
    slide_path = settings.slide or _synthetic(work, settings.size, config, settings.seed, log)
    decode_batch = max(settings.batch_sizes)
    base = RunSettings(batch_size=decode_batch, workers=max(settings.workers), stride=settings.stride,
                       mpp=settings.mpp, prefer_direct=settings.prefer_direct, progress=False)
    with open_slide(slide_path, mpp=settings.mpp) as slide:
        plan = plan_slide(slide, config, base)
        slide_info = {
            "name": slide.name, "path": None if settings.slide is None else str(slide_path),
            "synthetic": settings.slide is None, "dimensions": list(slide.dimensions), "mpp": slide.mpp,
            "level": plan.level, "tile_size": plan.tile, "stride": plan.stride, "tiles": int(plan.grid_total),
            "source_tile": plan.source, "resampled": plan.reading.resampled,
        }
    reader = open_tile_reader(slide_path, plan.level, prefer_direct=settings.prefer_direct)
    slide_info["reader"] = reader.kind
    reader.close()
    log(f"slide {slide_info['name']}: {plan.grid_total} tissue tiles of {plan.tile} px ({reader.kind} reader)")

    decode_raw: dict[int, list[Sample]] = collections.defaultdict(list)
    inference_raw: dict[tuple[int, int], list[Sample]] = collections.defaultdict(list)
    e2e_raw: dict[tuple[int, int, int], list[tuple[Sample, dict]]] = collections.defaultdict(list)
    dense_raw: dict[tuple[int, int], list[tuple[Sample, dict]]] = collections.defaultdict(list)
    heatmaps: dict[tuple[str, int], list] = collections.defaultdict(list)  # (mode, target): first run's
    pool = sample_tiles(plan, slide_path, 2 * decode_batch, settings.prefer_direct) if "inference" in stages else None
    if "end-to-end" in stages and settings.warmup:
        _warm_dense(targets, slide_path, replace(base, workers=max(settings.workers)), work, log)
    for r in range(settings.repeats):
        tag = f"[{r + 1}/{settings.repeats}]"
        if "decode" in stages:
            for w in settings.workers:
                s = decode_sample(plan, slide_path, batch_size=decode_batch, workers=w, seconds=settings.seconds,
                                  prefer_direct=settings.prefer_direct)
                decode_raw[w].append(s)
                log(f"{tag} decode, {w} worker(s): {s.tiles_per_s:.1f} tiles/s")
        if pool is not None:
            for ti, target in enumerate(targets):
                for b, backend in sorted(target.backends.items()):
                    s = inference_sample(backend, pool, batch_size=b, seconds=settings.seconds, warmup=settings.warmup)
                    inference_raw[ti, b].append(s)
                    log(f"{tag} inference, {target.label}, batch {b}: {s.tiles_per_s:.1f} tiles/s")
        if "end-to-end" in stages:
            for ti, target in enumerate(targets):
                for b, backend in sorted(target.backends.items()):
                    for w in settings.workers:
                        if r == 0:
                            log(f"{tag} end to end, {target.label}, batch {b}, {w} worker(s): "
                                f"{plan.grid_total} tiles{_eta(inference_raw.get((ti, b)), plan.grid_total)}")
                        run = replace(base, batch_size=b, workers=w)
                        keep = heatmaps["tiles", ti] if not heatmaps["tiles", ti] else None
                        s, summary = end_to_end_sample(slide_path, backend, run, work, keep)
                        e2e_raw[ti, b, w].append((s, summary))
                        log(f"{tag} end to end, {target.label}, batch {b}, {w} worker(s): {s.tiles_per_s:.1f} tiles/s")
                for w in settings.workers if target.dense is not None else ():
                    run = replace(base, workers=w, dense=True, region=target.dense.region)
                    keep = heatmaps["dense", ti] if not heatmaps["dense", ti] else None
                    s, summary = end_to_end_sample(slide_path, target.dense, run, work, keep)
                    dense_raw[ti, w].append((s, summary))
                    log(f"{tag} end to end, dense, {target.label}, {w} worker(s): {s.tiles_per_s:.1f} tiles/s")
    naive = _naive(settings, scorer, naive_reason, slide_path, plan, log) if "naive" in stages else None
    memory = _memory(settings, targets[0], config, work, log) if "memory" in stages else None

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": describe_machine(),
        "settings": settings.to_dict(),
        "slide": slide_info,
        "targets": [t.describe() for t in targets],
    }
    result["decode"] = [
        {"workers": w, "batch_size": decode_batch, "reader": slide_info["reader"],
         "tiles_per_s": summarise([s.tiles_per_s for s in samples]), "tiles": [s.tiles for s in samples]}
        for w, samples in decode_raw.items()
    ]
    decode_by_workers = {row["workers"]: row["tiles_per_s"]["median"] for row in result["decode"]}
    result["inference"] = [
        {**_target_fields(targets, ti), "batch_size": b, "tiles_per_s": summarise([s.tiles_per_s for s in samples])}
        for (ti, b), samples in inference_raw.items()
    ]
    inference_by_key = {(row["target"], row["batch_size"]): row["tiles_per_s"]["median"] for row in result["inference"]}
    result["end_to_end"] = [
        _e2e_row(targets, ti, b, w, runs, decode_by_workers.get(w), inference_by_key.get((ti, b)))
        for (ti, b, w), runs in e2e_raw.items()
    ]
    result["dense"] = dense_rows(targets, dense_raw, result["end_to_end"], heatmaps) if settings.dense else None
    result["naive"] = naive
    result["memory"] = memory
    return result


def _warm_dense(targets: Sequence[Target], slide_path: Path, base: RunSettings, work: Path, log: Log) -> None:
    """One uncounted dense pass over the slide for each backend that tunes its kernels per region shape
    (a GPU: cuDNN autotunes every convolution on a new shape), so no timed repeat pays for tuning."""
    for target in targets:
        dense = target.dense
        if dense is not None and (dense.fixed_regions or dense.region_quantum > ALIGN):
            log(f"warm-up: dense, {target.label} (not timed)")
            end_to_end_sample(slide_path, dense, replace(base, dense=True, region=dense.region), work)


def _eta(samples: list[Sample] | None, tiles: int) -> str:
    if not samples:
        return ""
    rate = statistics.median(s.tiles_per_s for s in samples)
    return f", about {tiles / rate:.0f} s at the inference-only rate" if rate > 0 else ""


def _target_fields(targets: Sequence[Target], index: int) -> dict[str, Any]:
    t = targets[index]
    backend = t.any_backend
    return {"target": index, "label": t.label, "backend": backend.name, "device": backend.device,
            "precision": t.precision}


def _e2e_row(
    targets: Sequence[Target], ti: int, b: int, w: int, runs: list[tuple[Sample, dict]],
    decode: float | None, inference: float | None,
) -> dict[str, Any]:
    samples = [s for s, _ in runs]
    summaries = [summary for _, summary in runs]
    figure = summarise([s.tiles_per_s for s in samples])
    stage_seconds = {k: round(statistics.median(float(s["seconds"][k]) for s in summaries), 4)
                     for k in summaries[0]["seconds"]}
    calls = collections.Counter(s.get("bottleneck") for s in summaries if s.get("bottleneck"))
    return {
        **_target_fields(targets, ti), "batch_size": b, "workers": w, "tiles": samples[0].tiles,
        "tiles_per_s": figure,
        "slide_seconds": summarise([float(s["seconds"]["total"]) for s in summaries]),
        "stage_seconds": stage_seconds,
        "runtime_bottleneck": calls.most_common(1)[0][0] if calls else None,
        "reader": summaries[0].get("reader"),
        "decode_tiles_per_s": decode,
        "inference_tiles_per_s": inference,
        "end_to_end_over_inference": round(figure["median"] / inference, 4) if inference else None,
        "verdict": stage_verdict(decode, inference, figure["median"]),
    }


def _naive(
    settings: BenchSettings, scorer: TileScorer | None, reason: str | None, slide_path: Path, plan: SlidePlan,
    log: Log,
) -> dict[str, Any]:
    if scorer is None:
        log(f"naive baseline skipped: {reason}")
        return {"status": "skipped", "reason": reason}
    samples = []
    for r in range(settings.repeats):
        s = naive_sample(slide_path, plan.points, plan.reading, scorer, seconds=settings.seconds, mpp=settings.mpp,
                         warmup=settings.warmup)
        samples.append(s)
        log(f"[{r + 1}/{settings.repeats}] naive loop: {s.tiles_per_s:.2f} tiles/s")
    return {"status": "ok", "description": f"OpenSlide read_region + numpy + {scorer.description}",
            "checkpoint": str(settings.checkpoint), "tiles_per_s": summarise([s.tiles_per_s for s in samples]),
            "tiles": [s.tiles for s in samples]}


def _memory(
    settings: BenchSettings, target: Target, config: FWRDConfig, work: Path, log: Log
) -> dict[str, Any]:
    """Peak RSS of scoring a synthetic slide of `size` and one of 4x its area, each in a fresh process."""
    b = max(target.backends)
    run = RunSettings(batch_size=b, workers=max(settings.workers), stride=settings.stride, mpp=settings.mpp,
                      prefer_direct=settings.prefer_direct, progress=False)
    slides = []
    for side in (settings.size, 2 * settings.size):
        path = work / f"synthetic_{side}.svs"
        if not path.exists():
            path = _synthetic(work, side, config, settings.seed, log)
        log(f"peak memory of fwrd-run on {side} x {side}")
        mb = peak_rss_mb(path, target.path, target.kind, run, settings.threads)
        slides.append({"slide": path.stem, "dimensions": [side, side], "peak_rss_mb": round(mb, 1)})
    return {"label": target.label, "batch_size": b, "workers": run.workers, "slides": slides,
            "ratio_4x_area": round(slides[1]["peak_rss_mb"] / slides[0]["peak_rss_mb"], 3)}
