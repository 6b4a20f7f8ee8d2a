"""What shrinking tiles to the model's resolution costs in the decode workers (fwrd.slide.resample).

Writes a 40x Aperio-like slide (0.25 um/px, x4 pyramid: levels 0.25 / 1.0 / 4.0 um/px) and times the
runtime's decode stage (`DecodeWorkers`, the very code `fwrd-run` runs) for a 40x model (level 0 read as it
is: no resampling) and a 20x model (level 0, each footprint of 2T px shrunk to T), at 64 and 256 px tiles.
Prints decode tiles/s and the workers' resampling seconds per tile (`DecodeWorkers.resample_seconds`), plus
the shrink alone on one thread; no model runs.

    python benchmarks/resample_cost.py --side 4096 --workers 2 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from fwrd.benchmark.machine import describe_machine
from fwrd.config import FWRDConfig
from fwrd.runtime.decode import DecodeWorkers
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.settings import RunSettings
from fwrd.slide.reader import open_slide
from fwrd.slide.resample import shrink
from fwrd.slide.synthetic import make_synthetic_slide


def decode_rate(plan, path: Path, workers: int, seconds: float) -> tuple[float, float, int]:
    """(tiles/s, resample seconds per tile, tiles) of whole passes over the plan for about `seconds`."""
    tiles, resample, began = 0, 0.0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        with DecodeWorkers(plan, path, batch_size=32, workers=workers) as decode:
            for batch in decode.batches():
                tiles += batch.count
                decode.release(batch)
            resample += sum(decode.resample_seconds)
    wall = time.perf_counter() - began
    return tiles / wall, resample / max(tiles, 1), tiles


def shrink_alone(source: int, tile: int, count: int = 300) -> float:
    """Milliseconds per shrink of one source x source footprint cut from a larger window, one thread."""
    window = np.random.default_rng(0).integers(0, 256, (source + 64, source + 64, 3), dtype=np.uint8)
    began = time.perf_counter()
    for k in range(count):
        shrink(window[k % 32:k % 32 + source, 7:7 + source], tile, tile)
    return (time.perf_counter() - began) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stride-fraction", type=int, default=1, help="stride = tile / this (4: the paper's)")
    args = parser.parse_args()
    machine = describe_machine()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {machine.get('cpu')} ({machine.get('physical_cores')} cores), load average {load}")
    with tempfile.TemporaryDirectory() as work:
        path = make_synthetic_slide(Path(work) / "aperio_40x.svs", width=args.side, height=args.side, mpp=0.25,
                                    pyramid="x4", seed=3, tissue_scale=2.0).path
        print(f"slide: {args.side} px, 0.25 um/px, x4 pyramid; decode workers: {args.workers}")
        print("| tile | model | read | decode tiles/s | resample ms/tile (in workers) | shrink alone ms/tile |")
        print("|---|---|---|---|---|---|")
        for tile in (64, 256):
            for mpp in (0.25, 0.5):
                config = FWRDConfig(tile_size=tile, mpp=mpp)
                with open_slide(path) as slide:
                    plan = plan_slide(slide, config, RunSettings(stride=tile // args.stride_fraction, progress=False))
                rate, per_tile, tiles = decode_rate(plan, path, args.workers, args.seconds)
                alone = shrink_alone(plan.source, tile) if plan.reading.resampled else 0.0
                read = f"{plan.source} px shrunk" if plan.reading.resampled else "as it is"
                print(f"| {tile} px | {'20x' if mpp == 0.5 else '40x'} ({mpp} um/px) | level {plan.level}, {read} | "
                      f"{rate:.0f} ({tiles} tiles) | {per_tile * 1e3:.3f} | {alone:.3f} |")


if __name__ == "__main__":
    main()
