"""The PyTorch backend: `fwrd-run --model model.pt --backend torch` on a GPU without TensorRT, or a CPU.

Most GPU users of slide-level tools have PyTorch with CUDA and no TensorRT, so this runs the checkpoint
from `fwrd-train` through the same streaming pipeline, in the fast way rather than the naive one:

    decode worker -> numpy batch --memcpy--> pinned host buffer (slot k)
      slot k's CUDA stream:  H2D copy (non_blocking) -> FusedScorer (preprocessing on the device,
                             channels_last, fp16 convolutions) -> D2H copy of score/amap -> event
    while slot k+1's stream already copies and computes the next batch (`streams` slots in flight)

The network is `fwrd.export.fused_graph.FusedScorer`, the very module `fwrd-export` writes as ONNX, so
the torch and ONNX backends compute the same function (tests hold fp32 to 1e-4 relative). On CUDA every
batch is padded to the batch size: one shape means one cuDNN autotune and makes CUDA graphs possible.
By default each slot captures the scorer as a CUDA graph once and replays it: on an H100 (256 px, fp16,
batch 64) that was 3338 vs 3252 tiles/s inference only and 3146 vs 2980 end to end
(benchmarks/results/gpu-nvidia-h100-80gb-hbm3-2026-11-26.md). TF32 stays off for fp32 unless asked for:
PyTorch enables it for cuDNN convolutions by default, which moves scores (by 1.5e-5 on that card and model).

Dense scoring (`dense=True`): regions run one at a time through the same scorer (on CUDA every region
has the full side, so cuDNN tunes one shape), returning the per-scale maps.

This module imports torch: it lives in fwrd.model, and `fwrd.runtime.backends.open_backend` imports it
only for `--backend torch`, so the ONNX/TensorRT runtime stays torch-free.

    with TorchBackend("model.pt", device="cuda", precision="fp16", batch_size=64) as backend:
        for tag, score, amap in backend.run_batches(batches): ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fwrd.errors import DependencyMissing, FwrdError, InputNotFound, ModelError
from fwrd.export.fused_graph import FusedScorer
from fwrd.model.checkpoint import load_checkpoint
from fwrd.runtime.backends.base import Backend, RegionMaps, check_region, check_tiles
from fwrd.runtime.regions import default_side

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")
DEFAULT_STREAMS = 2  # batches in flight on CUDA: one copying while the other computes
GRAPH_WARMUP = 2  # eager passes on a side stream before capture (cuDNN autotune, allocator)


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when this PyTorch sees a GPU, else cpu; "cuda" without one is DependencyMissing."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DependencyMissing(
                f"--device {name}: this PyTorch ({torch.__version__}) sees no CUDA GPU; "
                "use --device cpu, or install a CUDA build of PyTorch on a machine with an NVIDIA driver"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise FwrdError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N")


def resolve_precision(name: str, device: torch.device) -> str:
    """"auto" -> fp16 on CUDA (the convolutions in half, norms and cosine in fp32), fp32 on the CPU."""
    name = (name or "auto").lower()
    if name not in PRECISIONS:
        raise FwrdError(f"unknown precision {name!r}; the torch backend runs fp32 or fp16")
    if name == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return name


class TorchBackend(Backend):
    """A checkpoint's FusedScorer in PyTorch: uint8 tiles -> (score, amap), several batches in flight on CUDA.

    Not thread-safe: one consumer drives `infer` or `run_batches` at a time.
    """

    name = "torch"

    def __init__(
        self, checkpoint: str | Path, *, device: str = "auto", precision: str = "auto", batch_size: int = 16,
        threads: int | None = None, cuda_graphs: bool = True, tf32: bool = False,
        streams: int = DEFAULT_STREAMS, dense: bool = False, region: int | None = None,
    ) -> None:
        path = Path(checkpoint)
        if not path.is_file():
            raise InputNotFound(f"checkpoint not found: {path}")
        if batch_size < 1 or streams < 1:
            raise FwrdError(f"need batch size >= 1 and streams >= 1, got {batch_size} and {streams}")
        self.torch_device = resolve_device(device)
        precision = resolve_precision(precision, self.torch_device)
        model, config = load_checkpoint(path)
        super().__init__(config, {"fwrd.config": config.to_json()}, precision)
        self.path = path
        self.batch_size = int(batch_size)
        self.tf32 = bool(tf32) and precision == "fp32"
        self.cuda = self.torch_device.type == "cuda"
        self.cuda_graphs = bool(cuda_graphs) and self.cuda
        if threads and not self.cuda:
            torch.set_num_threads(int(threads))
        elif not self.cuda:
            from fwrd.runtime.backends.onnxruntime import physical_cores

            torch.set_num_threads(physical_cores())
        self._apply_flags()
        scorer = FusedScorer(model, config, half=(precision == "fp16")).eval()
        del model
        if self.cuda:
            scorer = scorer.to(self.torch_device, memory_format=torch.channels_last)
        self._scorer = scorer
        self._slots: list[_CudaSlot] = []
        self._streaming = False
        self.device = self._describe_device()
        if dense:
            self.region = int(region or default_side(config.tile_size, gpu=self.cuda))
            self.fixed_regions = self.cuda  # one input shape: one cuDNN autotune
            return  # regions need no tile slots
        if self.cuda:
            try:
                self._slots = [_CudaSlot(self, self.batch_size) for _ in range(int(streams))]
                torch.cuda.synchronize(self.torch_device)
            except torch.cuda.OutOfMemoryError:
                self.close()
                hint = " or --no-cuda-graphs" if self.cuda_graphs else ""
                raise ModelError(f"out of GPU memory at batch size {self.batch_size}: "
                                 f"use a smaller --batch-size{hint}") from None

    # -- set-up ----------------------------------------------------------------------------------
    def _apply_flags(self) -> None:
        """Process-wide switches this backend relies on (another backend in the process may change them)."""
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = self.tf32
            torch.backends.cuda.matmul.allow_tf32 = self.tf32

    def _describe_device(self) -> str:
        if not self.cuda:
            return f"cpu ({torch.get_num_threads()} threads)"
        index = self.torch_device.index if self.torch_device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"

    @property
    def max_batch(self) -> int | None:
        return self.batch_size if self.cuda else None

    def scores_identity(self) -> str:
        """The checkpoint alone does not fix the scores: fp16/fp32 (and TF32) give other numbers."""
        return f"{super().scores_identity()}/torch-{self.precision}{'-tf32' if self.tf32 else ''}"

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused scorer's score and amap for a uint8 [B, T, T, 3] tensor already on the device."""
        score, amap, *_ = self._scorer(tiles)
        return score, amap

    def infer_region(self, region: np.ndarray) -> RegionMaps:
        """One region, synchronously: uint8 [H, W, 3] -> the per-scale maps."""
        if self.region is None:
            return super().infer_region(region)
        pixels = torch.from_numpy(check_region(region, self.tile_size, self.region)[None])
        self._apply_flags()
        with torch.inference_mode():
            if self.cuda:
                pixels = pixels.to(self.torch_device)
            maps = self._scorer(pixels)[2:]
            return tuple(m[0].float().cpu().numpy() for m in maps)  # type: ignore[return-value]

    # -- running ---------------------------------------------------------------------------------
    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batch, synchronously (larger batches run in chunks of the batch size on CUDA)."""
        tiles = check_tiles(tiles, self.tile_size)
        if self._streaming:
            raise ValueError("infer() called while run_batches() still has batches in flight")
        if not self.cuda:
            self._apply_flags()
            with torch.inference_mode():
                score, amap = self.forward(torch.from_numpy(tiles))
            return score.float().numpy().copy(), amap.float().numpy().copy()
        results = list(self.run_batches((k, tiles[k:k + self.batch_size])
                                        for k in range(0, max(len(tiles), 1), self.batch_size)))
        if not results:
            return np.empty(0, np.float32), np.empty((0, self.tile_size // 4, self.tile_size // 4), np.float32)
        return np.concatenate([r[1] for r in results]), np.concatenate([r[2] for r in results])

    def run_batches(
        self, batches: Iterable[tuple[Any, np.ndarray]]
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """Yield (tag, score, amap) in input order; on CUDA the next batches are already copying/computing.

        Each batch is copied into a slot's pinned buffer at once, so the producer may reuse its array.
        """
        if not self.cuda:
            yield from super().run_batches(batches)
            return
        if not self._slots:
            raise ValueError("the torch backend is closed")
        if self._streaming:
            raise ValueError("run_batches() is already running on this backend")
        self._apply_flags()
        free = deque(self._slots)
        pending: deque[tuple[Any, _CudaSlot]] = deque()
        self._streaming = True
        try:
            for tag, tiles in batches:
                tiles = check_tiles(tiles, self.tile_size)
                if len(tiles) > self.batch_size:
                    raise ValueError(f"a batch of {len(tiles)} tiles exceeds the batch size {self.batch_size}")
                if not free:  # every slot busy: finish the oldest while the others compute
                    done_tag, slot = pending.popleft()
                    score, amap = slot.collect()
                    free.append(slot)
                    yield done_tag, score, amap
                slot = free.popleft()
                slot.submit(tiles)
                pending.append((tag, slot))
            while pending:
                done_tag, slot = pending.popleft()
                score, amap = slot.collect()
                yield done_tag, score, amap
        finally:
            for _, slot in pending:  # stopped early or failed: nothing may still write our buffers
                slot.drain()
            self._streaming = False

    def close(self) -> None:
        """Wait for queued work and release device memory; safe to call twice."""
        for slot in self._slots:
            slot.drain()
        self._slots = []
        self._scorer = None  # type: ignore[assignment]
        if getattr(self, "cuda", False):
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(torch=torch.__version__, batch_size=self.batch_size, tf32=self.tf32,
                    cuda_graphs=self.cuda_graphs, streams=len(self._slots) or None)
        return info


class _CudaSlot:
    """One batch in flight: pinned host tiles and results, device tiles, a stream, a completion event."""

    def __init__(self, backend: TorchBackend, batch_size: int) -> None:
        device, t = backend.torch_device, backend.tile_size
        a = t // 4
        self.backend = backend
        self.batch_size = batch_size
        self.stream = torch.cuda.Stream(device)
        self.done = torch.cuda.Event()
        self.count = 0
        self.host_tiles = torch.empty((batch_size, t, t, 3), dtype=torch.uint8, pin_memory=True)
        self.host_tiles_np = self.host_tiles.numpy()
        self.host_score = torch.empty((batch_size,), dtype=torch.float32, pin_memory=True)
        self.host_amap = torch.empty((batch_size, a, a), dtype=torch.float32, pin_memory=True)
        self.dev_tiles = torch.zeros((batch_size, t, t, 3), dtype=torch.uint8, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_out: tuple[torch.Tensor, torch.Tensor] | None = None
        self.stream.wait_stream(torch.cuda.current_stream(device))  # weights were uploaded there
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            for _ in range(GRAPH_WARMUP if backend.cuda_graphs else 1):  # autotune outside the timed run
                backend.forward(self.dev_tiles)
            if backend.cuda_graphs:
                self.stream.synchronize()
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph, stream=self.stream):
                    self.graph_out = backend.forward(self.dev_tiles)
        self.stream.synchronize()

    def submit(self, tiles: np.ndarray) -> None:
        """Copy a batch into pinned memory, then queue copy-in, scoring and copy-out on this slot's stream."""
        n = len(tiles)
        self.host_tiles_np[:n] = tiles
        if n < self.batch_size:  # one shape for every batch: one autotune, and graphs can replay
            self.host_tiles_np[n:] = 0
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            self.dev_tiles.copy_(self.host_tiles, non_blocking=True)
            if self.graph is not None:
                self.graph.replay()
                score, amap = self.graph_out  # type: ignore[misc]
            else:
                score, amap = self.backend.forward(self.dev_tiles)
            self.host_score.copy_(score, non_blocking=True)
            self.host_amap.copy_(amap, non_blocking=True)
            self.done.record(self.stream)
        self.count = n

    def collect(self) -> tuple[np.ndarray, np.ndarray]:
        """Wait for this slot's batch; copies of its results (the pinned buffers get reused)."""
        n, self.count = self.count, 0
        self.done.synchronize()
        return self.host_score.numpy()[:n].copy(), self.host_amap.numpy()[:n].copy()

    def drain(self) -> None:
        self.count = 0
        self.stream.synchronize()
