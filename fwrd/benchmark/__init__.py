"""`fwrd-bench`: measure every stage of fwrd-run, name the bottleneck, compare backends and baselines.

The data flow shows in the module names:

    machine.py   CPU model, cores, memory, GPUs (nvidia-smi), package versions
    targets.py   each model file (fp32 / fp16 / int8 graph, TensorRT plan) on each backend kind
    stages.py    decode only, inference only, end to end (score_slide), timed with the runtime's code
    naive.py     the peers' loop: OpenSlide read_region, numpy preprocessing, PyTorch eager, batch 1
    memory.py    peak RSS of a fresh fwrd-run process (slide vs 4x its area)
    stats.py     median and spread over repeats
    harness.py   BenchSettings -> run_benchmark(): opens, measures, summarises
    report.py    verdict (bound stage, end to end / min(decode, inference)), table, markdown, JSON

torch is imported only by the naive baseline. Public names are imported lazily.

    result = run_benchmark(BenchSettings(models=(Path("rd.onnx"),)), log=print)
    print(render_text(result))
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BenchSettings": "fwrd.benchmark.harness",
    "run_benchmark": "fwrd.benchmark.harness",
    "describe_machine": "fwrd.benchmark.machine",
    "stage_verdict": "fwrd.benchmark.report",
    "render_text": "fwrd.benchmark.report",
    "render_markdown": "fwrd.benchmark.report",
    "write_results": "fwrd.benchmark.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fwrd.benchmark' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
