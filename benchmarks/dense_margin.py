"""How much context dense scoring needs around a tile window: the measurement behind the default margin.

A region's border is zero padding to the network, so the features (and the dense scores) of windows near
it differ from those of the same windows inside a larger region. For each margin M this scores the same
tile windows (a patch of tissue of one slide) twice, with two region grids whose cells start in different
places (region sides `--side` and `--side` + 96: every window sees its region's border at another
distance), and reports how far the two scorings of one window can be apart (`seam`: what a heatmap would
show where regions meet), and how far each is from a scoring with the largest margin (`vs widest`).

    python benchmarks/dense_margin.py --model rd_fp32.onnx --slide tumor_001.svs --stride 16 \\
        --margins 0,32,64,96,128 --json benchmarks/results/dense-margin-64px.json

Torch-free (ONNX Runtime, or any backend fwrd-run can open).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fwrd.benchmark.machine import describe_machine
from fwrd.runtime.backends import open_backend
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.regions import plan_regions
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.window_scores import scores_at
from fwrd.slide.reader import open_slide
from fwrd.slide.tile_reader import open_tile_reader


def dense_scores(backend, reader, plan, side: int, margin: int) -> dict[tuple[int, int], float]:
    """Dense scores of every point of `plan`, by regions of at most `side` with `margin`."""
    regions = plan_regions(plan, side, margin)
    out: dict[tuple[int, int], float] = {}
    for r in range(regions.regions):
        (x, y), (w, h) = regions.origins[r], regions.sizes[r]
        maps = backend.infer_region(reader.read(int(x), int(y), int(w), int(h)))
        a, b = regions.region_starts[r], regions.region_starts[r + 1]
        for point, score in zip(regions.points[a:b], scores_at(maps, plan.tile, regions.offsets[a:b])):
            out[tuple(int(v) for v in point)] = float(score)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--slide", type=Path, required=True)
    parser.add_argument("--stride", type=int, required=True)
    parser.add_argument("--margins", default="0,32,64,96,128")
    parser.add_argument("--side", type=int, default=None, help="region side [default: 6 tiles]")
    parser.add_argument("--box", type=int, default=768, help="side of the tissue patch scored (level px)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    margins = [int(m) for m in args.margins.split(",")]
    widest = max(margins)
    with open_backend(args.model, dense=True, region=32 * 1024) as backend, open_slide(args.slide) as slide:
        t = backend.config.tile_size
        side = args.side or 6 * t
        plan = plan_slide(slide, backend.config, RunSettings(stride=args.stride))
        centre = np.median(plan.points, axis=0)  # a patch of tissue around the median grid point
        inside = np.all(np.abs(plan.points - centre) <= args.box / 2, axis=1)
        plan = plan.without(~inside)
        plan.grid_total = len(plan.points)
        reader = open_tile_reader(args.slide, plan.level)
        rows = []
        runs = {}
        for m in margins:
            began = time.perf_counter()
            runs[m] = [dense_scores(backend, reader, plan, s + 2 * m, m) for s in (side, side + 96)]
            rows.append({"margin": m, "seconds": round(time.perf_counter() - began, 1)})
        keys = sorted(runs[widest][0])
        ref = np.array([runs[widest][0][k] for k in keys])
        for row in rows:
            a, b = (np.array([run[k] for k in keys]) for run in runs[row["margin"]])
            seam, off = np.abs(a - b), np.abs(a - ref)
            row.update(seam_max=float(seam.max()), seam_p99=float(np.quantile(seam, 0.99)),
                       widest_max=float(off.max()), widest_p99=float(np.quantile(off, 0.99)))
        reader.close()
    record = {"model": str(args.model), "slide": str(args.slide), "tile": t, "stride": args.stride,
              "windows": len(keys), "region_core_side": side, "score_range": [float(ref.min()), float(ref.max())],
              "machine": describe_machine(), "rows": rows}
    print(f"{len(keys)} windows of {t} px at stride {args.stride}; scores {ref.min():.3f}..{ref.max():.3f}")
    print("margin | seam max | seam p99 | vs widest max | vs widest p99")
    for row in rows:
        print(f"{row['margin']:6d} | {row['seam_max']:.2e} | {row['seam_p99']:.2e} | {row['widest_max']:.2e} | "
              f"{row['widest_p99']:.2e}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
