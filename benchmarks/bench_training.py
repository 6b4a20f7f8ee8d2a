"""Training throughput (patches/s) of FW-RD on this machine: forward + focal loss + backward + Adam step.

    python benchmarks/bench_training.py --tiles 64:32,256:8 --steps 3
    python benchmarks/bench_training.py --tiles 256:32 --device cuda --amp     # bf16 autocast on a GPU

Random weights and random uint8 tiles (throughput does not depend on them). One warm-up step per
configuration is excluded; on CUDA each step ends with a synchronize, and peak GPU memory is recorded.
Results go to benchmarks/results/training-<device>-<machine>.{json,md}. The GPU kit
(benchmarks/gpu/kit.py) calls `measure` directly.
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


def measure(tile: int, batch: int, steps: int, device: str = "cpu", amp: bool = False) -> dict:
    """Median seconds per training step; `amp` runs forward and loss under bf16 autocast (CUDA)."""
    torch.manual_seed(0)
    target = torch.device(device)
    cuda = target.type == "cuda"
    config = FWRDConfig(tile_size=tile)
    model = ReverseDistillation().train().to(target)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-5, betas=(0.5, 0.999))
    tiles = torch.randint(0, 256, (batch, tile, tile, 3), dtype=torch.uint8).to(target)
    labels = torch.ones(batch, dtype=torch.long, device=target)
    labels[: max(1, batch // 11)] = 0  # ~10:1 normal:tumor
    if cuda:
        torch.cuda.synchronize(target)
        torch.cuda.reset_peak_memory_stats(target)
    times = []
    for step in range(steps + 1):
        began = time.perf_counter()
        with torch.autocast(target.type, dtype=torch.bfloat16, enabled=amp):
            teacher, student = model(normalise_tiles(tiles, config))
            loss = focal_distillation_loss(teacher, student, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize(target)
        if step:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - began)
    per_step = statistics.median(times)
    return {
        "tile": tile, "batch_size": batch, "steps": steps, "device": str(target),
        "mixed_precision": "bf16 autocast" if amp else None,
        "seconds_per_step_median": round(per_step, 4),
        "seconds_per_step": [round(t, 4) for t in times],
        "patches_per_s": round(batch / per_step, 2),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(target) / 2**30, 2) if cuda else None,
        "loss_finite": bool(torch.isfinite(loss).item()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="64:32,256:8", help="tile:batch pairs")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for forward and loss")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    pairs = [item.split(":") for item in args.tiles.split(",")]
    results = [measure(int(tile), int(batch), args.steps, args.device, args.amp) for tile, batch in pairs]
    cuda = args.device.startswith("cuda")
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if cuda else None
    record = {
        "benchmark": "training throughput", "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
        "gpu": gpu}, "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    where = gpu if cuda else f"{record['machine']['cpu']}-{record['machine']['cores']}c"
    slug = re.sub(r"[^a-z0-9]+", "-", where.lower()).strip("-")
    stem = args.out / f"training-{'gpu' if cuda else 'cpu'}-{slug}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    machine = gpu or f"{record['machine']['cpu']}, {record['machine']['cores']} cores, CPU"
    lines = [f"# Training throughput ({machine}, torch {record['torch']}, {record['threads']} threads)", "",
             "| tile | batch | mixed precision | s/step (median) | patches/s | peak GPU GiB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['tile']} | {r['batch_size']} | {r['mixed_precision'] or 'no'} | {r['seconds_per_step_median']} | "
              f"{r['patches_per_s']} | {r['peak_gpu_memory_gib'] or ''} |" for r in results]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
