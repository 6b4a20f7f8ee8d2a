"""Benchmark the streaming runtime: is `fwrd-run` bound by the model, as it should be?

For each model (e.g. one exported at 64 px and one at 256 px tiles), in one process and on the same
backend instance:
  1. inference-only tiles/s: the slide's own tiles, already decoded in memory, fed to backend.infer in
     batches of --batch-size (measured before and after step 2, and averaged);
  2. end-to-end tiles/s: score_slide on the whole slide (decode workers || inference, results written);
     the issue's target is end-to-end >= 0.9 x inference-only;
  3. optionally (--naive, needs torch) the naive loop peers use: read one tile with OpenSlide,
     preprocess on the host, PyTorch eager fp32 at batch 1; the runtime's speed-up over it;
  4. peak RSS of `score_slide` in a fresh process for the slide and for one of 4x its area (it
     should barely move: buffers are fixed, the heatmap is slide / stride cells).

    python benchmarks/bench_runtime.py --model rd64.onnx --model rd256.onnx --size 4096 --naive 32
Results: benchmarks/results/runtime-<host>.json and .md. The slides are synthetic (fwrd.slide.synthetic).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fwrd.runtime.backends import open_backend
from fwrd.runtime.outputs.atomic import write_json, write_text
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.slide.reader import open_slide
from fwrd.slide.synthetic import make_synthetic_slide

RESULTS = Path(__file__).resolve().parent / "results"


def inference_only(backend, tiles: np.ndarray, batch_size: int) -> float:
    """tiles/s of backend.infer on in-memory tiles (one warm-up batch not counted)."""
    backend.infer(tiles[:batch_size])
    began = time.perf_counter()
    for start in range(0, len(tiles), batch_size):
        backend.infer(tiles[start:start + batch_size])
    return len(tiles) / (time.perf_counter() - began)


def slide_tiles(slide_path: Path, backend, settings: RunSettings, limit: int) -> np.ndarray:
    """Up to `limit` of the slide's planned tiles, decoded once with OpenSlide."""
    with open_slide(slide_path) as slide:
        plan = plan_slide(slide, backend.config, settings)
        t = plan.tile
        points = plan.points[:limit]
        return np.stack([slide.read_region((int(x), int(y)), plan.level, (t, t)) for x, y in points])


def naive_loop(slide_path: Path, config, tiles_xy: np.ndarray, threads: int) -> float:
    """tiles/s of the loop peers run: OpenSlide read, host preprocessing, eager fp32 PyTorch, batch 1."""
    import torch

    from fwrd.model.anomaly_map import patch_score
    from fwrd.model.network import ReverseDistillation
    from fwrd.model.preprocess import normalise_tiles

    torch.set_num_threads(threads)
    model = ReverseDistillation(config.architecture).eval()  # random weights: same cost
    t = config.tile_size
    with open_slide(slide_path) as slide, torch.inference_mode():
        level = 0 if config.mpp is None else slide.level_for_mpp(config.mpp)
        began = time.perf_counter()
        for x, y in tiles_xy:
            tile = torch.from_numpy(slide.read_region((int(x), int(y)), level, (t, t))[None].copy())
            teacher, student = model(normalise_tiles(tile, config))
            patch_score(teacher, student, t).item()
        return len(tiles_xy) / (time.perf_counter() - began)


def peak_rss_mb(slide_path: Path, model: Path, settings: RunSettings, threads: int | None) -> float:
    """Peak RSS (MB) of a fresh process that scores `slide_path`."""
    child = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(slide_path), "--model", str(model),
         "--settings", json.dumps(settings.to_dict()), "--threads", str(threads or 0)],
        capture_output=True, text=True, check=True,
    )
    return float(child.stdout.strip().splitlines()[-1])


def rss_child(args: argparse.Namespace) -> None:
    settings = RunSettings(**json.loads(args.settings))
    with open_backend(args.model[0], batch_size=settings.batch_size, threads=args.threads or None) as backend:
        with tempfile.TemporaryDirectory() as out:
            score_slide(Path(args.rss_child), backend, Path(out), settings)
    print(peak_rss_self_mb())


def peak_rss_self_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss can carry the forking parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(model: Path, args: argparse.Namespace, work: Path) -> dict:
    settings = RunSettings(batch_size=args.batch_size, workers=args.workers, stride=args.stride, progress=False)
    backend = open_backend(model, batch_size=args.batch_size, threads=args.threads)
    config = backend.config
    mpp = config.mpp or 0.243  # the synthetic slides are written at the model's resolution: level 0
    size = args.size
    slide = make_synthetic_slide(work / f"bench_{config.tile_size}.svs", width=size, height=size, mpp=mpp, seed=7).path
    big = make_synthetic_slide(work / f"bench_{config.tile_size}_x4.svs", width=2 * size, height=2 * size, mpp=mpp,
                               seed=7).path
    tiles = slide_tiles(slide, backend, settings, args.max_tiles)
    before = inference_only(backend, tiles, args.batch_size)
    with tempfile.TemporaryDirectory(dir=work) as out:
        result = score_slide(slide, backend, Path(out), settings)
    after = inference_only(backend, tiles, args.batch_size)
    summary = result.summary
    infer_tps = (before + after) / 2
    row = {
        "model": str(model),
        "tile_size": config.tile_size,
        "precision": backend.precision,
        "backend": backend.name,
        "device": backend.device,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "slide": f"{size}x{size}",
        "tiles": summary["tiles_scored"],
        "inference_only_tiles_per_s": round(infer_tps, 2),
        "inference_only_spread": [round(before, 2), round(after, 2)],
        "end_to_end_tiles_per_s": summary["tiles_per_s"],
        "ratio_end_to_end_over_inference": round(summary["tiles_per_s"] / infer_tps, 3),
        "end_to_end_seconds": summary["seconds"],
        "bottleneck": summary["bottleneck"],
        "reader": summary["reader"],
    }
    if args.naive:
        with open_slide(slide) as s:
            xy = plan_slide(s, config, settings).points[: args.naive]
        naive = naive_loop(slide, config, xy, args.threads or 1)
        row["naive_torch_tiles_per_s"] = round(naive, 3)
        row["speedup_over_naive"] = round(summary["tiles_per_s"] / naive, 2)
    row["peak_rss_mb"] = {
        f"{size}x{size}": round(peak_rss_mb(slide, model, settings, args.threads), 1),
        f"{2 * size}x{2 * size}": round(peak_rss_mb(big, model, settings, args.threads), 1),
    }
    backend.close()
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# fwrd-run benchmark ({meta['host']}, {meta['cpu']}, {meta['date']})", "",
        "| tile | backend | batch | workers | tiles | inference-only t/s | end-to-end t/s | ratio | bottleneck "
        "| naive t/s | speed-up | peak RSS MB (1x, 4x area) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = ", ".join(str(v) for v in r["peak_rss_mb"].values())
        lines.append(
            f"| {r['tile_size']} | {r['backend']} {r['precision']} | {r['batch_size']} | {r['workers']} | {r['tiles']} "
            f"| {r['inference_only_tiles_per_s']} | {r['end_to_end_tiles_per_s']} "
            f"| {r['ratio_end_to_end_over_inference']} | {r['bottleneck']} "
            f"| {r.get('naive_torch_tiles_per_s', '-')} | {r.get('speedup_over_naive', '-')} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", type=Path, required=True, help="fwrd .onnx or .plan (repeat)")
    parser.add_argument("--size", type=int, default=4096, help="synthetic slide side in pixels (the 4x slide is 2x)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads (default: cores)")
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--max-tiles", type=int, default=256, help="tiles for the inference-only measurement")
    parser.add_argument("--naive", type=int, default=0, metavar="N", help="also time the naive torch loop on N tiles")
    parser.add_argument("--out", type=Path, default=None, help="results file stem (default results/runtime-<host>)")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
        return
    meta = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_model(model, args, Path(tmp)) for model in args.model]
    stem = args.out or RESULTS / f"runtime-{meta['host']}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json(stem.with_suffix(".json"), {"meta": meta, "results": rows})
    write_text(stem.with_suffix(".md"), markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
