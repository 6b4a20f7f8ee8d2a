"""Scheduling overhead of `fwrd-run --ray` against the local loop, per slide, on the same cohort.

    python benchmarks/bench_ray.py --slides 8 --size 2048 --stride 16 --threads 2 --repeats 3

Both sides get the same compute: the local loop opens one backend with `--threads` ONNX Runtime threads;
Ray runs on this machine with all its CPUs and, with `--threads` equal to them, gets exactly one actor
with the same backend options. Repeats alternate local and Ray runs (noise on a shared CPU hits both).

Measured per run, from the drivers' own log lines:
    local loop = `score_cohort` with the backend already open
    Ray loop   = from the first actor ready (backend open) to the last slide recorded by the driver
    overhead per slide = (Ray loop - local loop) / slides; ratio = Ray loop / local loop - 1
and the fixed costs Ray adds once per run: ray.init, actor start (process, imports, backend open), and
the end (killing the actors). Outputs of both sides are checked equal tile for tile.

The model is the tests' ONNX stand-in (64 px tiles, almost free to run) unless `--model` names one:
with it a slide costs little more than decoding, so the ratio is an upper bound of what a real model
(seconds to minutes per slide) would show. Results: benchmarks/results/ray-overhead-<machine>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fwrd.runtime.backends import open_backend
from fwrd.runtime.cluster import BackendSpec, score_cohort_on_ray, start_local_ray
from fwrd.runtime.cohort import score_cohort
from fwrd.runtime.settings import RunSettings
from fwrd.slide.synthetic import make_cohort

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class Clock:
    """A log callback that remembers when each kind of line came."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def __call__(self, line: str) -> None:
        now = time.perf_counter()
        if " on Ray, " in line:
            self.marks.setdefault("ready", now)
        if line.startswith("cohort:"):
            self.marks["end"] = now


def run_local(slides: list[Path], model: Path, options: dict, out: Path, settings: RunSettings) -> dict:
    began = time.perf_counter()
    with open_backend(model, **options) as backend:
        opened = time.perf_counter()
        score_cohort(slides, backend, out, settings, log=lambda line: None)
        ended = time.perf_counter()
    return {"open_s": opened - began, "loop_s": ended - opened}


def run_ray(slides: list[Path], model: Path, options: dict, out: Path, settings: RunSettings) -> dict:
    clock = Clock()
    began = time.perf_counter()
    score_cohort_on_ray(slides, BackendSpec(model, options), out, settings, log=clock)
    ended = time.perf_counter()
    ready, end = clock.marks["ready"], clock.marks["end"]
    return {"start_s": ready - began, "loop_s": end - ready, "stop_s": ended - end}


def in_slides(out: Path) -> float:
    """Seconds spent inside score_slide (summary.json's own total), summed over the cohort."""
    return sum(json.loads(p.read_text())["seconds"]["total"] for p in out.glob("*/summary.json"))


def same_outputs(a: Path, b: Path, names: list[str]) -> bool:
    files = ("tiles.csv", "heatmap.npy", "detections.csv", "tumor.geojson")
    return all((a / n / f).read_bytes() == (b / n / f).read_bytes() for n in names for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048, help="synthetic slide side (px)")
    parser.add_argument("--stride", type=int, default=16, help="grid step: 16 gives ~4-7k tiles on 2048 px")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None, help="an exported rd.onnx [default: the stand-in]")
    parser.add_argument("--worker-niceness", type=int, default=None,
                        help="RAY_worker_niceness for the Ray instance [default: fwrd's 0; Ray's own default is 15]")
    parser.add_argument("--save", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="fwrd-bench-ray-"))
    cohort = make_cohort(work / "cohort", n_tumor=(args.slides + 1) // 2, n_normal=args.slides // 2,
                         width=args.size, height=args.size, fmt="svs", seed=0)
    slides = sorted(s.path for s in cohort.slides)
    model = args.model
    if model is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from onnx_standin import build_standin

        from fwrd.config import FWRDConfig

        model = build_standin(work / "standin.onnx", FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35))
    options = {"batch_size": args.batch_size, "threads": args.threads}
    settings = RunSettings(batch_size=args.batch_size, workers=args.workers, stride=args.stride, progress=False)

    if args.worker_niceness is not None:
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
    mark = time.perf_counter()
    start_local_ray(num_cpus=os.cpu_count())
    init_s = time.perf_counter() - mark
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    try:
        for repeat in range(args.repeats):
            order = ("local", "ray") if repeat % 2 == 0 else ("ray", "local")
            for kind in order:
                out = work / f"{kind}-{repeat}"
                runner = run_local if kind == "local" else run_ray
                runs[kind].append(runner(slides, model, options, out, settings))
                runs[kind][-1]["gap_s"] = runs[kind][-1]["loop_s"] - in_slides(out)
                print(kind, repeat, {k: round(v, 3) for k, v in runs[kind][-1].items()}, flush=True)
        names = [p.stem for p in slides]
        identical = all(same_outputs(work / "local-0", work / f"ray-{r}", names) for r in range(args.repeats))
    finally:
        ray.shutdown()

    tiles = [json.loads((work / "local-0" / n / "summary.json").read_text())["tiles_scored"] for n in names]
    local_loop = statistics.median(r["loop_s"] for r in runs["local"])
    ray_loop = statistics.median(r["loop_s"] for r in runs["ray"])
    n = len(slides)
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
        "ray": ray.__version__,
        "backend": "onnxruntime (cpu)",
        "model": "ONNX stand-in (tests/onnx_standin.py), 64 px" if args.model is None else str(args.model),
        "batch_size": args.batch_size, "threads": args.threads, "decode_workers": args.workers,
        "slides": n, "slide_px": args.size, "stride": args.stride,
        "tiles_per_slide": {"min": min(tiles), "median": statistics.median(tiles), "max": max(tiles)},
        "repeats": args.repeats, "worker_niceness": int(os.environ["RAY_worker_niceness"]),
        "local_loop_s": [round(r["loop_s"], 3) for r in runs["local"]],
        "ray_loop_s": [round(r["loop_s"], 3) for r in runs["ray"]],
        "local_open_s": round(statistics.median(r["open_s"] for r in runs["local"]), 3),
        "ray_init_s": round(init_s, 3),
        "ray_actor_start_s": round(statistics.median(r["start_s"] for r in runs["ray"]), 3),
        "ray_stop_s": round(statistics.median(r["stop_s"] for r in runs["ray"]), 3),
        "local_s_per_slide": round(local_loop / n, 4),
        "ray_s_per_slide": round(ray_loop / n, 4),
        "overhead_ms_per_slide": round((ray_loop - local_loop) / n * 1000, 1),
        "between_slides_ms_per_slide": {
            kind: round(statistics.median(r["gap_s"] for r in runs[kind]) / n * 1000, 1) for kind in runs},
        "overhead_ratio": round(ray_loop / local_loop - 1, 4),
        "outputs_identical": identical,
    }
    args.save.mkdir(parents=True, exist_ok=True)
    machine = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|processor|cpu", "", cpu_name().lower())).strip("-")
    nice = "" if args.worker_niceness is None else f"-nice{args.worker_niceness}"
    stem = args.save / f"ray-overhead-cpu-{machine}-{os.cpu_count()}c{nice}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    between = round(r["between_slides_ms_per_slide"]["ray"] - r["between_slides_ms_per_slide"]["local"], 1)
    spread = max(100 * (max(v) - min(v)) / statistics.median(v) for v in (r["local_loop_s"], r["ray_loop_s"]))
    return f"""# `fwrd-run --ray` scheduling overhead ({r['machine']}, Ray {r['ray']})

{r['backend']}, {r['model']}, batch {r['batch_size']}, {r['threads']} ORT threads, {r['decode_workers']} decode \
workers; {r['slides']} synthetic {r['slide_px']} px slides at stride {r['stride']} \
({r['tiles_per_slide']['min']}-{r['tiles_per_slide']['max']} tiles, median {r['tiles_per_slide']['median']}); \
one actor (Ray on this machine, as many CPUs as --threads, workers at nice {r['worker_niceness']}); \
{r['repeats']} repeats, alternating.

| | local loop | Ray (one actor) |
|---|---|---|
| cohort loop, s (each repeat) | {', '.join(map(str, r['local_loop_s']))} | {', '.join(map(str, r['ray_loop_s']))} |
| s per slide (median) | {r['local_s_per_slide']} | {r['ray_s_per_slide']} |
| fixed costs per run, s | open backend {r['local_open_s']} | ray.init {r['ray_init_s']}, actor start + backend open \
{r['ray_actor_start_s']}, stop {r['ray_stop_s']} |
| between slides (loop minus time inside score_slide), ms per slide | \
{r['between_slides_ms_per_slide']['local']} | {r['between_slides_ms_per_slide']['ray']} |

Scheduling overhead between slides (dispatch, result transfer, bookkeeping): **{between} ms per slide, \
{100 * between / 1000 / r['local_s_per_slide']:+.2f} %** of a slide. Whole loop, medians: \
**{r['overhead_ms_per_slide']} ms per slide, {100 * r['overhead_ratio']:+.1f} %** (goal < 5 %); the repeats of \
one side spread by {spread:.0f} % of their median on this shared CPU. Outputs identical tile for tile: \
{r['outputs_identical']}.
"""


if __name__ == "__main__":
    main()
