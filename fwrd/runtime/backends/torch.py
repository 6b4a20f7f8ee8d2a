"""The PyTorch backend: `fwrd-run --model model.pt --backend torch` on a GPU without TensorRT, or a CPU.

The runtime's side of it: the `Backend` interface, the input checks every backend makes, the region
side and thread count the runtime decides, and for dense scoring the tile windows' weights
(fwrd.runtime.window_scores.window_plan), which the runner multiplies with the maps on the GPU. The
torch side (device placement, pinned slots, streams, CUDA graphs) is `fwrd.model.runner.TorchRunner`, imported when a backend is opened, never when this
module is: `fwrd.runtime` imports without torch installed, and only `--backend torch` loads it.

    with TorchBackend("model.pt", device="cuda", precision="fp16", batch_size=64) as backend:
        for tag, score, amap in backend.run_batches(batches): ...
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fwrd.errors import DependencyMissing, FwrdError, InputNotFound
from fwrd.runtime.backends.base import Backend, RegionMaps, check_region, check_tiles
from fwrd.runtime.backends.onnxruntime import physical_cores
from fwrd.runtime.regions import default_side
from fwrd.runtime.window_scores import map_shapes, window_plan

DEFAULT_STREAMS = 2  # batches (or regions) in flight on CUDA: one copying while the other computes
GPU_REGION_QUANTUM = 1024  # dense on CUDA: region sides in steps of this (at most 16 shapes at 4096 px) ...
# ... so a region covers its tissue, not the full side, and cuDNN tunes a few shapes, not one per region


def _model_layer() -> tuple[Any, Any, Any]:
    """(checkpoint, device, runner) modules of fwrd.model: torch is imported here and only here."""
    try:
        return tuple(importlib.import_module(f"fwrd.model.{name}") for name in ("checkpoint", "device", "runner"))
    except ImportError as exc:
        raise DependencyMissing(f"the torch backend needs PyTorch ({exc}): pip install fwrd[train]") from None


class TorchBackend(Backend):
    """A checkpoint's FusedScorer in PyTorch: uint8 tiles -> (score, amap), several batches in flight on CUDA.

    Not thread-safe: one consumer drives `infer` or `run_batches` at a time.
    """

    name = "torch"

    def __init__(
        self, checkpoint: str | Path, *, device: str = "auto", precision: str = "auto", batch_size: int = 16,
        threads: int | None = None, cuda_graphs: bool = True, tf32: bool = False,
        streams: int = DEFAULT_STREAMS, dense: bool = False, region: int | None = None, compile: bool = False,
    ) -> None:
        path = Path(checkpoint)
        if not path.is_file():
            raise InputNotFound(f"checkpoint not found: {path}")
        if batch_size < 1 or streams < 1:
            raise FwrdError(f"need batch size >= 1 and streams >= 1, got {batch_size} and {streams}")
        checkpoints, devices, runners = _model_layer()
        torch_device = devices.resolve_device(device)
        precision = devices.resolve_precision(precision, torch_device)
        model, config = checkpoints.load_checkpoint(path)
        super().__init__(config, {"fwrd.config": config.to_json()}, precision)
        self.path = path
        self._runner = runners.TorchRunner(
            model, config, device=torch_device, precision=precision, batch_size=batch_size,
            threads=int(threads or physical_cores()), cuda_graphs=cuda_graphs, tf32=tf32, streams=streams,
            regions=dense, compile=compile,
        )
        del model
        self.notes.extend(self._runner.notes)
        self.batch_size = self._runner.batch_size
        self.cuda = self._runner.cuda
        self.tf32 = self._runner.tf32
        self.cuda_graphs = self._runner.cuda_graphs
        self.device = self._runner.device
        if dense:
            self.region = int(region or default_side(config.tile_size, gpu=self.cuda))
            if self.cuda:  # regions sized to their tissue, in a few shapes (cuDNN tunes per shape)
                self.region_quantum = GPU_REGION_QUANTUM

    @property
    def max_batch(self) -> int | None:
        return self.batch_size if self.cuda else None

    def scores_identity(self) -> str:
        """The checkpoint alone does not fix the scores: fp16/fp32 (and TF32) give other numbers."""
        return f"{super().scores_identity()}/torch-{self.precision}{'-tf32' if self.tf32 else ''}"

    def infer_region(self, region: np.ndarray) -> RegionMaps:
        """One region, synchronously: uint8 [H, W, 3] -> the per-scale maps."""
        if self.region is None:
            return super().infer_region(region)
        return self._runner.infer_region(check_region(region, self.tile_size, self.region))

    def score_regions(
        self, regions: Iterable[tuple[Any, np.ndarray, np.ndarray]], tile: int
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """On CUDA the window scores are made on the device, two regions in flight, only the scores copied
        back; on the CPU as every backend does it (maps back, numpy reads the windows)."""
        if self.region is None or not self.cuda:
            return super().score_regions(regions, tile)

        def planned() -> Iterator[tuple[Any, np.ndarray, Any]]:
            for tag, pixels, offsets in regions:
                pixels = check_region(pixels, self.tile_size, self.region)
                yield tag, pixels, window_plan(map_shapes(*pixels.shape[:2]), tile, offsets)

        return self._runner.score_regions(planned())

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batch, synchronously (larger batches run in chunks of the batch size on CUDA)."""
        return self._runner.infer(check_tiles(tiles, self.tile_size))

    def run_batches(
        self, batches: Iterable[tuple[Any, np.ndarray]]
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """Yield (tag, score, amap) in input order; on CUDA the next batches are already copying/computing."""
        return self._runner.run_batches((tag, check_tiles(tiles, self.tile_size)) for tag, tiles in batches)

    def close(self) -> None:
        """Wait for queued work and release device memory; safe to call twice."""
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(self._runner.describe())
        return info
