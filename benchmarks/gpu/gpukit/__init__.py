"""The GPU kit's steps, one module each, in the order they run (the most telling first).

Each step module has `run(kit) -> dict`: its result, recorded in kit.json. `kit` is the `gpukit.core.Kit`
that holds the plan's sizes, the checkpoint, the synthetic slide and the log. STEPS gives the seconds each
step needs at least on the GPU plan: a step is skipped, with the reason, when less of the budget is left.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STEPS = {"environment": 5, "cuda_memory": 20, "precision": 30, "levers": 150, "torch_pipeline": 120,
         "tensorrt_slots": 30, "training": 90}


def step(name: str) -> ModuleType:
    """The module of step `name`, imported when the step runs (a broken one fails alone, recorded)."""
    if name not in STEPS:
        raise ValueError(f"unknown step {name!r}; expected one of {', '.join(STEPS)}")
    return importlib.import_module(f"gpukit.{name}")
