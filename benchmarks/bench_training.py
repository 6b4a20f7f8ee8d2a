"""Training throughput (patches/s) of FW-RD on this machine: forward + focal loss + backward + Adam step.

    python benchmarks/bench_training.py --tiles 64:32,256:8 --steps 3

Random weights and random uint8 tiles (throughput does not depend on them). One warm-up step per
configuration is excluded. Results go to benchmarks/results/training-cpu-<cpu>-<cores>c.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch

from fwrd.config import FWRDConfig
from fwrd.model.network import ReverseDistillation
from fwrd.model.preprocess import normalise_tiles
from fwrd.training.loss import focal_distillation_loss


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(tile: int, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    config = FWRDConfig(tile_size=tile)
    model = ReverseDistillation().train()
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-5, betas=(0.5, 0.999))
    tiles = torch.randint(0, 256, (batch, tile, tile, 3), dtype=torch.uint8)
    labels = torch.ones(batch, dtype=torch.long)
    labels[: max(1, batch // 11)] = 0  # ~10:1 normal:tumor
    times = []
    for step in range(steps + 1):
        began = time.perf_counter()
        teacher, student = model(normalise_tiles(tiles, config))
        loss = focal_distillation_loss(teacher, student, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - began)
    per_step = statistics.median(times)
    return {
        "tile": tile, "batch_size": batch, "steps": steps,
        "seconds_per_step_median": round(per_step, 3),
        "seconds_per_step": [round(t, 3) for t in times],
        "patches_per_s": round(batch / per_step, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="64:32,256:8", help="tile:batch pairs")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    pairs = [item.split(":") for item in args.tiles.split(",")]
    results = [measure(int(tile), int(batch), args.steps) for tile, batch in pairs]
    record = {
        "benchmark": "training throughput", "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
        "gpu": None}, "device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{record['machine']['cpu']}-{record['machine']['cores']}c".lower()).strip("-")
    stem = args.out / f"training-cpu-{slug}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Training throughput ({record['machine']['cpu']}, {record['machine']['cores']} cores, CPU, "
             f"torch {record['torch']}, {record['threads']} threads)", "",
             "| tile | batch | s/step (median) | patches/s |", "|---|---|---|---|"]
    lines += [f"| {r['tile']} | {r['batch_size']} | {r['seconds_per_step_median']} | {r['patches_per_s']} |" for r in results]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
