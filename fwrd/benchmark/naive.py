"""The naive baseline peers run: one tile at a time, OpenSlide `read_region`, preprocessing in numpy on
the host, PyTorch eager fp32 at batch 1. fwrd's speed-up is measured against it in the same run.

torch is imported only inside `load_torch_scorer`, so the rest of fwrd.benchmark (and a machine
without torch) never pays for it; without torch or a checkpoint the baseline is skipped with a reason.

    scorer = load_torch_scorer("model.pt", threads=2)
    naive_sample(slide_path, plan.points, plan.reading, scorer, seconds=5).tiles_per_s
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwrd.benchmark.stages import Sample
from fwrd.config import FWRDConfig
from fwrd.errors import InputNotFound
from fwrd.slide.reader import open_slide
from fwrd.slide.resample import Reading, choose_reading, read_tile


@dataclass
class TileScorer:
    """A model that scores one preprocessed tile: float32 [1, 3, T, T] -> patch score."""

    config: FWRDConfig
    score: Callable[[np.ndarray], float]
    description: str


def naive_unavailable(checkpoint: Path | None) -> str | None:
    """Why the naive baseline cannot run here (None when it can)."""
    if checkpoint is None:
        return "no --checkpoint given (the naive loop runs the PyTorch model from model.pt)"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install fwrd[train] to measure the naive PyTorch loop)"
    try:
        import torch  # noqa: F401  # find_spec succeeds for a module that then fails to import
    except ImportError as exc:
        return f"torch cannot be imported ({exc})"
    if not Path(checkpoint).is_file():
        raise InputNotFound(f"checkpoint not found: {checkpoint}")
    return None


def host_preprocess(tile: np.ndarray, config: FWRDConfig) -> np.ndarray:
    """uint8 RGB [T, T, 3] -> normalised float32 [1, 3, T, T], in numpy, as peers do before the model."""
    x = tile.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def load_torch_scorer(checkpoint: Path, threads: int | None = None, device: str = "cpu") -> TileScorer:
    """The checkpoint's network in PyTorch eager fp32, scoring one tile per call, on the CPU or a GPU.

    On a GPU it runs as peers do: PyTorch's default switches (cuDNN's TF32 convolutions on, no
    autotuning), each tile copied up from pageable memory and its score read back before the next.
    """
    import torch

    from fwrd.model.anomaly_map import patch_score
    from fwrd.model.checkpoint import load_checkpoint
    from fwrd.model.device import resolve_device

    target = resolve_device(device)
    if threads:
        torch.set_num_threads(int(threads))
    model, config = load_checkpoint(checkpoint)
    model = model.float().eval().to(target)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.allow_tf32 = True

    def score(x: np.ndarray) -> float:
        with torch.inference_mode():
            teacher, student = model(torch.from_numpy(x).to(target))
            return float(patch_score(teacher, student, config.tile_size).item())

    where = (f"{torch.cuda.get_device_name(target)} (PyTorch defaults: cuDNN TF32 on)" if target.type == "cuda"
             else f"{torch.get_num_threads()} threads")
    description = f"PyTorch {torch.__version__} eager fp32, batch 1, {where}"
    return TileScorer(config, score, description)


def naive_sample(
    slide_path: Path, points: np.ndarray, level: int | Reading, scorer: TileScorer, *, seconds: float,
    mpp: float | None = None, warmup: int = 1,
) -> Sample:
    """Tiles/s of read -> preprocess -> score, one tile at a time, over the plan's tissue tiles, read at
    `level` or as the plan's reading says (shrunk to the model's resolution where the runtime shrinks).

    `warmup` tiles go first and are not counted; then tiles until `seconds` have passed (at least one),
    cycling through `points` if the slide has fewer.
    """
    if len(points) == 0:
        raise ValueError("no tile positions for the naive loop")
    t = scorer.config.tile_size
    with open_slide(slide_path, mpp=mpp) as slide:
        reading = level if isinstance(level, Reading) else choose_reading(slide, t, None, level)

        def one(k: int) -> None:
            x, y = points[k % len(points)]
            tile = read_tile(slide, reading, int(x), int(y))
            scorer.score(host_preprocess(tile, scorer.config))

        for k in range(warmup):
            one(k)
        done = 0
        began = time.perf_counter()
        while done == 0 or time.perf_counter() - began < seconds:
            one(warmup + done)
            done += 1
        return Sample(done, time.perf_counter() - began)
