"""The fused scorer compiled by `torch.compile` (inductor), or eager when compilation fails.

Eager PyTorch runs the network op by op: every ReLU, residual add and cast is its own kernel and its own
pass over the feature maps through memory. Inductor, with the weights frozen (constants it can fold and
lay out once), keeps cuDNN/oneDNN for the convolutions and fuses the pointwise ops that follow each one
(bias, ReLU, residual add, casts) into one generated kernel per epilogue, and the cosine reductions into
one kernel per scale. BatchNorm is already folded (fwrd.model.fold). CUDA graphs go on top: the torch
runner captures the compiled forward per slot as it captures the eager one, so inductor's own
cudagraph mode stays off (it would fight the runner's streams).

Compile time is paid once per process and shape (batch x T x T: the runner pads every batch to one
shape), and PyTorch caches the compiled graphs and kernel tuning on disk (its FX graph cache, also for
frozen weights: TORCHINDUCTOR_CACHE_DIR, by default /tmp/torchinductor_$USER), so a later process with
the same network, shape and PyTorch compiles much faster. Whatever fails while compiling or in the first
compiled call (no C++ compiler, no Triton, an unsupported op) gives the eager module and one line saying
why: the numbers are the eager ones, never none.

    compiled = compile_scorer(scorer, example_tiles)
    compiled.module(tiles); compiled.seconds; compiled.note   # None, or why it runs eager
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class CompiledScorer:
    """What `compile_scorer` made: the module to call, whether it is compiled, what compiling cost."""

    module: Callable[[torch.Tensor], Any]
    compiled: bool
    seconds: float  # compilation, measured around the first call(s)
    note: str | None = None  # one line for the user when it fell back to eager


def compile_scorer(scorer: nn.Module, example: torch.Tensor, *, backend: str | Callable = "inductor",
                   calls: int = 2) -> CompiledScorer:
    """`torch.compile(scorer)` with frozen weights, compiled now on `example` (the shape it will see),
    `calls` times (the second call proves the compiled graph replays without recompiling); eager with a
    one-line note when any of that fails."""
    began = time.perf_counter()
    options = {"freezing": True} if backend == "inductor" else None  # weights as constants
    try:
        compiled = torch.compile(scorer, backend=backend, fullgraph=True, dynamic=False, options=options)
        with torch.inference_mode():  # freezing applies only without autograd
            for _ in range(max(1, calls)):
                compiled(example)
        if example.is_cuda:
            torch.cuda.synchronize(example.device)
    except Exception as exc:  # any compiler failure: run eager, say so in one line
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        return CompiledScorer(scorer, False, time.perf_counter() - began,
                              f"torch.compile failed, running eager ({reason})")
    return CompiledScorer(compiled, True, time.perf_counter() - began)
