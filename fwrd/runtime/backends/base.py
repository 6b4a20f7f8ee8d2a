"""The small interface every inference backend implements (ONNX Runtime, TensorRT).

A backend takes uint8 RGB tiles [batch, T, T, 3] exactly as read from the slide and returns the
FW-RD patch score [batch] and the summed anomaly map [batch, T/4, T/4]; all preprocessing lives in
the model. `run_batches` lets a backend keep several batches in flight (TensorRT overlaps copies
with compute); the default runs them one after another.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from fwrd.config import FWRDConfig


class Backend(abc.ABC):
    """One loaded model on one device."""

    name: str = "backend"  # "onnxruntime" | "tensorrt" | "torch"
    device: str = "cpu"  # human-readable: "cpu", "cuda:0 (NVIDIA H100)", ...

    def __init__(self, config: FWRDConfig, metadata: dict[str, str], precision: str) -> None:
        self.config = config
        self.metadata = metadata
        self.precision = precision
        self.notes: list[str] = []  # one-line warnings for the user (fwrd-run prints them to stderr)

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

    def close(self) -> None:
        """Free device memory and sessions; safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision}


def check_tiles(tiles: np.ndarray, tile_size: int) -> np.ndarray:
    """Refuse, with a clear message, a batch the model cannot take."""
    if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (tile_size, tile_size, 3):
        raise ValueError(
            f"expected uint8 tiles of shape [batch, {tile_size}, {tile_size}, 3], "
            f"got {tiles.dtype} {tuple(tiles.shape)}"
        )
    return np.ascontiguousarray(tiles)
