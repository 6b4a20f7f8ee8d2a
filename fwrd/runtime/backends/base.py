"""The small interface every inference backend implements (ONNX Runtime, TensorRT, torch).

A backend takes uint8 RGB tiles [batch, T, T, 3] exactly as read from the slide and returns the
FW-RD patch score [batch] and the summed anomaly map [batch, T/4, T/4]; all preprocessing lives in
the model. `run_batches` lets a backend keep several batches in flight (TensorRT overlaps copies
with compute); the default runs them one after another.

Dense scoring (`fwrd-run --dense`): a backend opened with `region=side` takes whole regions of a slide,
uint8 [H, W, 3] with H, W multiples of 32 and at most `side`, and returns the region's per-scale
1 - cos maps [H/4, W/4], [H/8, W/8], [H/16, W/16] (`infer_region`, `run_regions`), or, given the tile
windows it holds, their scores (`score_regions`: by default the maps come back and numpy reads the
windows off them; the torch backend on a GPU does that on the device and copies back only the scores).
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from fwrd.config import FWRDConfig
from fwrd.errors import ModelError
from fwrd.runtime.window_scores import scores_at

RegionMaps = tuple[np.ndarray, np.ndarray, np.ndarray]  # float32 [H/4, W/4], [H/8, W/8], [H/16, W/16]


class Backend(abc.ABC):
    """One loaded model on one device."""

    name: str = "backend"  # "onnxruntime" | "tensorrt" | "torch"
    device: str = "cpu"  # human-readable: "cpu", "cuda:0 (NVIDIA H100)", ...

    def __init__(self, config: FWRDConfig, metadata: dict[str, str], precision: str) -> None:
        self.config = config
        self.metadata = metadata
        self.precision = precision
        self.notes: list[str] = []  # one-line warnings for the user (fwrd-run prints them to stderr)
        self.region: int | None = None  # largest region side when opened for dense scoring, else None
        self.fixed_regions = False  # whether every region should have the full side (GPUs tune per shape)
        self.region_quantum = 32  # otherwise region sides are rounded up to a multiple of this (fwrd.runtime.regions)

    @property
    def tile_size(self) -> int:
        return self.config.tile_size

    @property
    def max_batch(self) -> int | None:
        """Largest batch the model accepts (None: any)."""
        return None

    def scores_identity(self) -> str:
        """What fixes the scores this backend gives: the model file's sha256 (set by open_backend), plus
        whatever else changes them (the torch backend's precision). `--resume` keys its journal on it."""
        return str(getattr(self, "model_sha256", "") or "")

    @abc.abstractmethod
    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score one batch: uint8 [B, T, T, 3] -> (score float32 [B], amap float32 [B, T/4, T/4])."""

    def run_batches(
        self, batches: Iterable[tuple[Any, np.ndarray]]
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """Score a stream of (tag, tiles) batches, yielding (tag, score, amap) in input order.

        The tiles array may be reused by the producer once the next batch is requested, so a backend
        that keeps batches in flight must copy it first (into its own pinned buffer, say).
        """
        for tag, tiles in batches:
            score, amap = self.infer(tiles)
            yield tag, score, amap

    def infer_region(self, region: np.ndarray) -> RegionMaps:
        """One region uint8 [H, W, 3] -> its per-scale maps (the backend must have been opened for regions)."""
        raise ModelError(f"the {self.name} backend was not opened for dense scoring")

    def run_regions(self, regions: Iterable[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, RegionMaps]]:
        """Score a stream of (tag, region) pairs, yielding (tag, maps) in input order; the producer may
        reuse a region's array once the next one is requested."""
        for tag, region in regions:
            yield tag, self.infer_region(region)

    def score_regions(
        self, regions: Iterable[tuple[Any, np.ndarray, np.ndarray]], tile: int
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """Score a stream of (tag, region, offsets) triples, yielding (tag, scores float32 [N]) in input order:
        the scores of the `tile` px windows at `offsets` (int (N, 2) x, y pixels into the region). The
        producer may reuse a region's array once the next one is requested."""
        pending: deque[np.ndarray] = deque()  # offsets of the regions handed to run_regions, in order

        def feed() -> Iterator[tuple[Any, np.ndarray]]:
            for tag, region, offsets in regions:
                pending.append(offsets)
                yield tag, region

        for tag, maps in self.run_regions(feed()):
            yield tag, scores_at(maps, tile, pending.popleft())

    def close(self) -> None:
        """Free device memory and sessions; safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        info = {"backend": self.name, "device": self.device, "precision": self.precision}
        if self.region is not None:
            info.update(region=self.region, fixed_regions=self.fixed_regions, region_quantum=self.region_quantum)
        return info


def check_tiles(tiles: np.ndarray, tile_size: int) -> np.ndarray:
    """Refuse, with a clear message, a batch the model cannot take."""
    if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (tile_size, tile_size, 3):
        raise ValueError(
            f"expected uint8 tiles of shape [batch, {tile_size}, {tile_size}, 3], "
            f"got {tiles.dtype} {tuple(tiles.shape)}"
        )
    return np.ascontiguousarray(tiles)


def check_region(region: np.ndarray, tile_size: int, side: int | None) -> np.ndarray:
    """Refuse, with a clear message, a region the model cannot take (uint8 [H, W, 3], multiples of 32,
    at least one tile and at most `side` a side)."""
    if region.dtype != np.uint8 or region.ndim != 3 or region.shape[2] != 3:
        raise ValueError(f"expected a uint8 region [H, W, 3], got {region.dtype} {tuple(region.shape)}")
    h, w = region.shape[:2]
    if h % 32 or w % 32 or min(h, w) < tile_size or (side is not None and max(h, w) > side):
        raise ValueError(f"a region must have sides that are multiples of 32 between {tile_size} and {side}, "
                         f"got {w} x {h}")
    return np.ascontiguousarray(region)


def dense_unsupported(source: str, precision: str, has_maps: bool) -> str | None:
    """Why a model cannot score regions, in one line (None: it can)."""
    if precision == "int8":
        return (f"{source} is int8: --dense runs fp32 and fp16 models (the int8 calibration and accuracy "
                "gate cover tiles only); use the fp32 or fp16 export")
    if not has_maps:
        return (f"{source} cannot score regions (exported before dense scoring: its input is fixed at one "
                "tile and it has no per-scale maps): export it again with this fwrd")
    return None
