"""Training steps/s at 256 px with and without bf16 autocast, peak GPU memory, and two short real
`fwrd-train --device cuda` runs on the same synthetic patches, fp32 and --amp (bf16 autocast): speed,
memory, loss and validation AUROC side by side."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gpukit.core import Kit


def run(kit: Kit) -> dict[str, Any]:
    import bench_training

    s = kit.sizes
    rows = []
    for amp in (False, True):
        if amp and kit.dry:
            continue
        rows.append(bench_training.measure(s.tile, s.train_batch, s.train_steps, device=kit.device(), amp=amp))
        kit.log(f"training steps: {rows[-1]}")
    result: dict[str, Any] = {"steps": rows}
    # a short real fwrd-train on synthetic patches, on the device
    from fwrd.demo import DemoPlan, run_step

    plan = DemoPlan(n_tumor_slides=1, n_normal_slides=1, slide_size=max(2048, 16 * s.tile), tile=s.tile,
                    normal_patches=s.patches, tumor_patches=max(2, s.patches // 10), epochs=s.train_epochs,
                    batch_size=s.train_batch, tumor_scale=1.8)
    root = kit.work / "train"
    steps = dict(plan.steps(root))
    for step in ("synth", "patches"):
        run_step(step, steps[step], echo=kit.log)
    import torch

    runs = {}
    for amp in (False, True):  # the same patches, seed and epochs: fp32 against --amp (bf16 autocast)
        if amp and kit.dry:  # bf16 on a CPU is slow; tests/test_train_cli.py covers --amp there
            continue
        if torch.cuda.is_available() and not kit.dry:
            torch.cuda.reset_peak_memory_stats()
        out = root / ("model-amp.pt" if amp else "model.pt")
        began = time.perf_counter()
        run_step("train", _replace_out(steps["train"], out) + ["--device", kit.device()]
                 + (["--amp"] if amp else []), echo=kit.log)
        history = [json.loads(line) for line in out.with_suffix(".history.jsonl").read_text().splitlines()]
        runs["amp" if amp else "fp32"] = {
            "seconds": round(time.perf_counter() - began, 1),
            "peak_gpu_memory_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                    if torch.cuda.is_available() and not kit.dry else None),
            "epochs": [{k: h[k] for k in ("epoch", "loss", "val_auroc", "val_accuracy", "patches_per_second")}
                       for h in history],
        }
    result["fwrd_train"] = {"epochs": plan.epochs, "patches": s.patches + max(2, s.patches // 10),
                            "tile": s.tile, "device": kit.device(), **runs}
    return result


def _replace_out(args: list[Any], out: Path) -> list[Any]:
    """A demo step's arguments with its --out value replaced."""
    at = args.index("--out") + 1
    return [*args[:at], out, *args[at + 1:]]
