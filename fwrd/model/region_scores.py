"""Dense scoring in PyTorch: regions in, tile-window scores out, with the window scores made on the device.

On a GPU a region pass is tens of milliseconds of compute; the loop around it used to leave the GPU idle
for a good share of that (a pageable copy of ~50 MB in, a synchronous copy of the maps out, then the window
scores in numpy). Here each region goes through a slot, and two slots keep two regions in flight:

    region (numpy) --memcpy--> slot k's pinned buffers (pixels, window weights, window indices)
      slot k's stream: H2D (non_blocking) -> FusedScorer -> per-scale maps -> window scores
                       (sum over scales of Wy @ m @ Wx^T in float64, then each window's entry)
                       -> D2H of the N scores only -> event
    while the host fills slot k+1 and the GPU may still run slot k

The weights are the numpy rule's (`fwrd.runtime.window_scores.window_plan`, made by the runtime's
backend and handed over as arrays), and the sums are float64 as there, so the device scores equal
numpy's to the last float32 bit or one unit in it. Why not an integral image: the align_corners upsample
gives the nodes under a window unequal weights (at strides 4 and 8 they vary along the window), so a box
sum would be an approximation; the weighted sums are ~0.2 GFLOP for a 4096 px region, next to ~17 TFLOP
for its pass through the network.

On a CPU the same code runs synchronously (no streams, no pinned memory): the CI checks it against numpy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch


class Windows(Protocol):
    """What `fwrd.runtime.window_scores.WindowPlan` holds (that layer sits above this one)."""

    weights: Sequence[tuple[np.ndarray, np.ndarray]]  # per scale: wy [rows, h], wx [columns, w], float64
    rows: np.ndarray  # int64 [N]
    cols: np.ndarray  # int64 [N]


Forward = Callable[[torch.Tensor], Sequence[torch.Tensor]]  # uint8 [1, H, W, 3] -> (score, amap, m4, m8, m16)


def device_window_scores(maps: Sequence[torch.Tensor], weights: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """float32 [N]: sum over scales of wy @ m @ wx^T (float64), read at (rows, cols); maps are 2-D [h, w]."""
    total = None
    for m, (wy, wx) in zip(maps, weights):
        part = wy @ m.double() @ wx.T
        total = part if total is None else total + part
    return total.float()[rows, cols]  # type: ignore[union-attr]


def score_regions_sync(forward: Forward, items: Iterable[tuple[Any, np.ndarray, Windows]],
                       device: torch.device) -> Iterator[tuple[Any, np.ndarray]]:
    """The CPU path (and any device without streams): one region at a time."""
    for tag, pixels, windows in items:
        with torch.inference_mode():
            maps = forward(torch.from_numpy(pixels[None]).to(device))[2:]
            weights = [(torch.from_numpy(wy).to(device), torch.from_numpy(wx).to(device)) for wy, wx in windows.weights]
            scores = device_window_scores([m[0] for m in maps], weights, torch.from_numpy(windows.rows).to(device),
                                          torch.from_numpy(windows.cols).to(device))
            yield tag, scores.cpu().numpy().copy()


def score_regions_streamed(forward: Forward, items: Iterable[tuple[Any, np.ndarray, Windows]],
                           slots: Sequence["RegionSlot"]) -> Iterator[tuple[Any, np.ndarray]]:
    """CUDA: (tag, scores) in input order, `len(slots)` regions in flight."""
    free = deque(slots)
    pending: deque[tuple[Any, RegionSlot]] = deque()
    try:
        for tag, pixels, windows in items:
            if not free:
                done_tag, slot = pending.popleft()
                scores = slot.collect()
                free.append(slot)
                yield done_tag, scores
            slot = free.popleft()
            slot.submit(forward, pixels, windows)
            pending.append((tag, slot))
        while pending:
            done_tag, slot = pending.popleft()
            yield done_tag, slot.collect()
    finally:
        for _, slot in pending:  # stopped early or failed: nothing may still write our buffers
            slot.drain()


class RegionSlot:
    """One region in flight on CUDA: pinned host buffers (grown to the largest region seen), a stream, an
    event. A slot is submitted again only after `collect`, so its buffers are never overwritten in flight."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.done = torch.cuda.Event()
        self.count = 0
        self._host: dict[torch.dtype, torch.Tensor] = {}
        self._scores: torch.Tensor | None = None
        self.stream.wait_stream(torch.cuda.current_stream(device))  # the weights were uploaded there

    def _pinned(self, dtype: torch.dtype, n: int) -> torch.Tensor:
        buffer = self._host.get(dtype)
        if buffer is None or buffer.numel() < n:
            buffer = self._host[dtype] = torch.empty(max(n, 1), dtype=dtype, pin_memory=True)
        return buffer[:n]

    def submit(self, forward: Forward, pixels: np.ndarray, windows: Windows) -> None:
        """Copy the region and its window plan into pinned memory, then queue everything on the stream."""
        h, w = pixels.shape[:2]
        host_pixels = self._pinned(torch.uint8, pixels.size)
        host_pixels.numpy()[:] = pixels.reshape(-1)
        flats = [a for pair in windows.weights for a in pair]
        host_weights = self._pinned(torch.float64, sum(a.size for a in flats))
        at = 0
        for a in flats:
            host_weights.numpy()[at:at + a.size] = a.reshape(-1)
            at += a.size
        n = len(windows.rows)
        host_index = self._pinned(torch.int64, 2 * n)
        host_index.numpy()[:n] = windows.rows
        host_index.numpy()[n:] = windows.cols
        if self._scores is None or self._scores.numel() < n:
            self._scores = torch.empty(max(n, 1), dtype=torch.float32, pin_memory=True)
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            region = host_pixels.to(self.device, non_blocking=True).view(1, h, w, 3)
            flat = host_weights.to(self.device, non_blocking=True)
            index = host_index.to(self.device, non_blocking=True)
            weights, at = [], 0
            for wy, wx in windows.weights:
                pair = []
                for a in (wy, wx):
                    pair.append(flat[at:at + a.size].view(a.shape))
                    at += a.size
                weights.append((pair[0], pair[1]))
            maps = forward(region)[2:]
            scores = device_window_scores([m[0] for m in maps], weights, index[:n], index[n:])
            self._scores[:n].copy_(scores, non_blocking=True)
            self.done.record(self.stream)
        self.count = n

    def collect(self) -> np.ndarray:
        """Wait for this slot's region; a copy of its scores (the pinned buffer gets reused)."""
        n, self.count = self.count, 0
        self.done.synchronize()
        assert self._scores is not None
        return self._scores.numpy()[:n].copy()

    def drain(self) -> None:
        self.count = 0
        self.stream.synchronize()
