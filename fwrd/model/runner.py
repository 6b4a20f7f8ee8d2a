"""Running the fused scorer fast in PyTorch: what `fwrd-run --backend torch` does under the hood.

Most GPU users of slide-level tools have PyTorch with CUDA and no TensorRT, so the checkpoint from
`fwrd-train` runs through the same streaming pipeline as an exported graph, in the fast way rather than
the naive one:

    decode worker -> numpy batch --memcpy--> pinned host buffer (slot k)
      slot k's CUDA stream:  H2D copy (non_blocking) -> FusedScorer (preprocessing on the device,
                             channels_last, fp16 convolutions) -> D2H copy of score/amap -> event
    while slot k+1's stream already copies and computes the next batch (`streams` slots in flight)

The network is `fwrd.model.fused_scorer.FusedScorer`, the very module `fwrd-export` writes as ONNX, so
the torch and ONNX backends compute the same function (tests hold fp32 to 1e-4 relative). On CUDA every
batch is padded to the batch size: one shape means one cuDNN autotune and makes CUDA graphs possible.
By default each slot captures the scorer as a CUDA graph once and replays it: on an H100 (256 px, fp16,
batch 64) that was 3338 vs 3252 tiles/s inference only and 3146 vs 2980 end to end
(benchmarks/results/gpu-nvidia-h100-80gb-hbm3-2026-11-26.md). TF32 stays off for fp32 unless asked for:
PyTorch enables it for cuDNN convolutions by default, which moves scores (by 1.5e-5 on that card and model).

The network has its BatchNorms folded into the convolutions (FusedScorer does it on its copy). With
`compile=True` the tile scorer is also compiled by torch.compile (fwrd.model.compiled: inductor, frozen
weights, fused pointwise epilogues), once, before the slots capture it in their CUDA graphs; a failed
compilation runs eager and says so in `notes`. Off by default: on this project's 2-core CPU compiling
took 249 s and the compiled scorer ran at about a third of eager's speed (docs/gpu.md); on a GPU it is off
until the kit has measured it there.

Dense scoring (`score_regions`): regions through the same (eager) scorer, two in flight on CUDA, the
tile-window scores computed on the device and only they copied back (fwrd.model.region_scores).

This is the torch half of the torch backend; `fwrd.runtime.backends.torch` is the other half (the
runtime's `Backend` interface, input checks), which imports this module only when `--backend torch` is
asked for, so the ONNX/TensorRT runtime stays torch-free.

    runner = TorchRunner(model, config, device=torch.device("cuda"), precision="fp16", batch_size=64)
    for tag, score, amap in runner.run_batches(batches): ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from fwrd.config import FWRDConfig
from fwrd.errors import FwrdError, ModelError
from fwrd.model.compiled import CompiledScorer, compile_scorer
from fwrd.model.fused_scorer import FusedScorer
from fwrd.model.network import ReverseDistillation
from fwrd.model.region_scores import RegionSlot, Windows, score_regions_streamed, score_regions_sync

DEFAULT_STREAMS = 2  # batches in flight on CUDA: one copying while the other computes
GRAPH_WARMUP = 2  # eager passes on a side stream before capture (cuDNN autotune, allocator)
RegionMaps = tuple[np.ndarray, np.ndarray, np.ndarray]


class TorchRunner:
    """A FusedScorer on one device: uint8 tiles -> (score, amap), several batches in flight on CUDA.

    Inputs are checked by the caller (the runtime's backend). Not thread-safe: one consumer drives
    `infer` or `run_batches` at a time.
    """

    def __init__(
        self, model: ReverseDistillation, config: FWRDConfig, *, device: torch.device, precision: str,
        batch_size: int = 16, threads: int = 1, cuda_graphs: bool = True, tf32: bool = False,
        streams: int = DEFAULT_STREAMS, regions: bool = False, compile: bool = False,
    ) -> None:
        if batch_size < 1 or streams < 1:
            raise FwrdError(f"need batch size >= 1 and streams >= 1, got {batch_size} and {streams}")
        self.config = config
        self.tile_size = config.tile_size
        self.torch_device = device
        self.precision = precision
        self.batch_size = int(batch_size)
        self.tf32 = bool(tf32) and precision == "fp32"
        self.cuda = device.type == "cuda"
        self.cuda_graphs = bool(cuda_graphs) and self.cuda
        self.streams = int(streams)
        self.notes: list[str] = []  # one-line warnings for the user (a compilation that fell back to eager)
        if not self.cuda:
            torch.set_num_threads(max(1, int(threads)))
        self._apply_flags()
        scorer = FusedScorer(model, config, half=(precision == "fp16")).eval()
        if self.cuda:
            scorer = scorer.to(device, memory_format=torch.channels_last)
        self._scorer = scorer
        self._tile_forward: Any = scorer
        self.compiled: CompiledScorer | None = None
        self._slots: list[_CudaSlot] = []
        self._region_slots: list[RegionSlot] = []
        self._streaming = False
        self.device = self._describe_device()
        if compile and regions:
            self.notes.append("--compile applies to tiles: dense regions (a shape each) run eager")
        elif compile:
            self._compile()
        if regions or not self.cuda:
            return  # regions need no tile slots; the CPU runs batches synchronously
        try:
            self._slots = [_CudaSlot(self, self.batch_size) for _ in range(int(streams))]
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            self.close()
            hint = " or --no-cuda-graphs" if self.cuda_graphs else ""
            raise ModelError(f"out of GPU memory at batch size {self.batch_size}: "
                             f"use a smaller --batch-size{hint}") from None

    # -- set-up ----------------------------------------------------------------------------------
    def _apply_flags(self) -> None:
        """Process-wide switches this runner relies on (another backend in the process may change them)."""
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = self.tf32
            torch.backends.cuda.matmul.allow_tf32 = self.tf32

    def _compile(self) -> None:
        """The tile scorer compiled for the one batch shape it will see (eager, with a note, on failure)."""
        t = self.tile_size
        example = torch.zeros((self.batch_size, t, t, 3), dtype=torch.uint8, device=self.torch_device)
        self.compiled = compile_scorer(self._scorer, example)
        if self.compiled.note:
            self.notes.append(self.compiled.note)
        else:
            self._tile_forward = self.compiled.module

    def _describe_device(self) -> str:
        if not self.cuda:
            return f"cpu ({torch.get_num_threads()} threads)"
        index = self.torch_device.index if self.torch_device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused scorer's score and amap for a uint8 [B, T, T, 3] tensor already on the device."""
        score, amap, *_ = self._tile_forward(tiles)
        return score, amap

    def infer_region(self, region: np.ndarray) -> RegionMaps:
        """One checked region uint8 [H, W, 3], synchronously -> the per-scale maps."""
        pixels = torch.from_numpy(region[None])
        self._apply_flags()
        with torch.inference_mode():
            if self.cuda:
                pixels = pixels.to(self.torch_device)
            maps = self._scorer(pixels)[2:]
            return tuple(m[0].float().cpu().numpy() for m in maps)  # type: ignore[return-value]

    # -- running ---------------------------------------------------------------------------------
    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One checked batch, synchronously (larger batches run in chunks of the batch size on CUDA)."""
        if self._streaming:
            raise ValueError("infer() called while run_batches() still has batches in flight")
        if not self.cuda:
            self._apply_flags()
            if self._tile_forward is not self._scorer:  # compiled for one shape: pad every chunk to it
                return self._infer_padded(tiles)
            with torch.inference_mode():
                score, amap = self.forward(torch.from_numpy(tiles))
            return score.float().numpy().copy(), amap.float().numpy().copy()
        results = list(self.run_batches((k, tiles[k:k + self.batch_size])
                                        for k in range(0, max(len(tiles), 1), self.batch_size)))
        return self._joined([r[1] for r in results], [r[2] for r in results])

    def _joined(self, scores: list[np.ndarray], amaps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if not scores:
            return np.empty(0, np.float32), np.empty((0, self.tile_size // 4, self.tile_size // 4), np.float32)
        return np.concatenate(scores), np.concatenate(amaps)

    def _infer_padded(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CPU, compiled: chunks of the batch size, the last one padded with zeros (no recompilation)."""
        scores, amaps = [], []
        padded = np.zeros((self.batch_size, *tiles.shape[1:]), np.uint8)
        for start in range(0, len(tiles), self.batch_size):
            chunk = tiles[start:start + self.batch_size]
            padded[:len(chunk)] = chunk
            padded[len(chunk):] = 0
            with torch.inference_mode():
                score, amap = self.forward(torch.from_numpy(padded))
            scores.append(score[:len(chunk)].float().numpy().copy())
            amaps.append(amap[:len(chunk)].float().numpy().copy())
        return self._joined(scores, amaps)

    def score_regions(self, items: Iterable[tuple[Any, np.ndarray, Windows]]) -> Iterator[tuple[Any, np.ndarray]]:
        """(tag, checked region uint8 [H, W, 3], its window plan) -> (tag, scores float32 [N]) in input order;
        on CUDA `streams` regions are in flight and only the scores come back (fwrd.model.region_scores)."""
        if self._scorer is None:
            raise ValueError("the torch backend is closed")
        if self._streaming:
            raise ValueError("score_regions() called while another stream of batches or regions is running")
        self._apply_flags()
        self._streaming = True
        try:
            if not self.cuda:
                yield from score_regions_sync(self._scorer, items, self.torch_device)
                return
            if not self._region_slots:
                self._region_slots = [RegionSlot(self.torch_device) for _ in range(self.streams)]
            yield from score_regions_streamed(self._scorer, items, self._region_slots)
        finally:
            self._streaming = False

    def run_batches(
        self, batches: Iterable[tuple[Any, np.ndarray]]
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """Yield (tag, score, amap) in input order; on CUDA the next batches are already copying/computing.

        Each batch is copied into a slot's pinned buffer at once, so the producer may reuse its array.
        """
        if not self.cuda:
            for tag, tiles in batches:
                score, amap = self.infer(tiles)
                yield tag, score, amap
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
        for slot in [*self._slots, *self._region_slots]:
            slot.drain()
        self._slots, self._region_slots = [], []
        self._scorer = None  # type: ignore[assignment]
        self._tile_forward = None
        if getattr(self, "cuda", False):
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(torch=torch.__version__, batch_size=self.batch_size, tf32=self.tf32,
                                    cuda_graphs=self.cuda_graphs, streams=len(self._slots) or None,
                                    batchnorm_folded=True, compiled=bool(self.compiled and self.compiled.compiled))
        if self.compiled is not None:
            info["compile_seconds"] = round(self.compiled.seconds, 2)
        return info


class _CudaSlot:
    """One batch in flight: pinned host tiles and results, device tiles, a stream, a completion event."""

    def __init__(self, runner: TorchRunner, batch_size: int) -> None:
        device, t = runner.torch_device, runner.tile_size
        a = t // 4
        self.runner = runner
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
            for _ in range(GRAPH_WARMUP if runner.cuda_graphs else 1):  # autotune outside the timed run
                runner.forward(self.dev_tiles)
            if runner.cuda_graphs:
                self.stream.synchronize()
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph, stream=self.stream):
                    self.graph_out = runner.forward(self.dev_tiles)
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
                score, amap = self.runner.forward(self.dev_tiles)
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
