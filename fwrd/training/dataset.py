"""Patch folders for training and validation: `normal/` and `tumor/` PNGs (tumor may be empty).

Labels are explicit (1 = normal, 0 = tumor), never derived from folder order as ImageFolder would.
The tile size is read from the images; level, resolution and context from `patches.json`/`patches.csv`.
Patches saved with context (`fwrd-patches --context C`) are tile + 2C px; `PatchSet.tile_size` is the
tile's side, `PatchSet.side` the images'.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fwrd.config import validate_context, validate_tile_size
from fwrd.errors import DataError, FwrdError, InputNotFound
from fwrd.slide.patch_image import image_size, read_patch_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
NORMAL, TUMOR = 1, 0


@dataclass
class PatchSet:
    """File list with labels; images are decoded lazily by `PatchDataset`."""

    root: Path
    files: list[Path]
    labels: np.ndarray  # int64, 1 normal / 0 tumor
    tile_size: int
    level: int
    mpp: float | None
    context: int = 0  # real surroundings saved on every side of each tile (px)

    @property
    def side(self) -> int:
        """Side of the images: the tile and its context."""
        return self.tile_size + 2 * self.context

    @property
    def n_normal(self) -> int:
        return int((self.labels == NORMAL).sum())

    @property
    def n_tumor(self) -> int:
        return int((self.labels == TUMOR).sum())

    def subset(self, index: np.ndarray) -> "PatchSet":
        return PatchSet(self.root, [self.files[i] for i in index], self.labels[index], self.tile_size, self.level,
                        self.mpp, self.context)


def load_patch_set(root: str | Path) -> PatchSet:
    """Scan `root/normal` and `root/tumor`; one clear error for a missing or empty folder."""
    root = Path(root)
    if not root.is_dir():
        raise InputNotFound(f"patch folder not found: {root}")
    normal = _images(root / "normal")
    tumor = _images(root / "tumor")
    if not (root / "normal").is_dir():
        raise DataError(f"{root}: no 'normal/' folder (expected normal/ and tumor/ with PNG patches)")
    if not normal:
        raise DataError(f"{root}: 'normal/' holds no images")
    files = normal + tumor
    labels = np.array([NORMAL] * len(normal) + [TUMOR] * len(tumor), dtype=np.int64)
    side = _image_side(files)
    level, mpp, context, tile = _resolution(root)
    if tile is not None and context == 0 and side > tile:  # patches.csv alone: it records the tile, not the context
        context = validate_context((side - tile) // 2)
    if tile is not None and side != tile + 2 * context:
        raise DataError(f"{root}: patches are {side} px, but their sidecar records {tile} px tiles with "
                        f"{context} px context ({tile + 2 * context} px)")
    if side - 2 * context < 32:
        raise DataError(f"{root}: patches are {side} px, too small for their {context} px context")
    return PatchSet(root, files, labels, validate_tile_size(side - 2 * context), level, mpp, context)


def stratified_split(patches: PatchSet, fraction: float, seed: int) -> tuple[PatchSet, PatchSet]:
    """Hold out `fraction` of each class (at least one patch of a class that has two or more)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in (NORMAL, TUMOR):
        idx = np.flatnonzero(patches.labels == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return patches.subset(np.sort(np.concatenate(train_idx))), patches.subset(np.sort(np.concatenate(val_idx)))


class PatchDataset(torch.utils.data.Dataset):
    """Yields (uint8 HWC tile tensor, label); normalisation happens on the device, batched."""

    def __init__(self, patches: PatchSet) -> None:
        self.patches = patches

    def __len__(self) -> int:
        return len(self.patches.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.patches.files[i]
        tile = read_patch_rgb(path, self.patches.side)  # size checked from the header, before decoding
        return torch.from_numpy(np.array(tile)), int(self.patches.labels[i])


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _image_side(files: list[Path]) -> int:
    """All patches share one square size; check a sample cheaply (headers only)."""
    sizes = set()
    for path in files[:: max(1, len(files) // 64)] + files[-1:]:
        sizes.add(image_size(path))
    if len(sizes) != 1:
        raise DataError(f"patches have different sizes: {sorted(sizes)}")
    width, height = sizes.pop()
    if width != height:
        raise DataError(f"patches must be square, got {width}x{height}")
    return width


def _resolution(root: Path) -> tuple[int, float | None, int, int | None]:
    """Level, microns per pixel, context and tile side of the patches, from fwrd-patches' sidecar files
    when present (tile None: not recorded)."""
    meta = root / "patches.json"
    if meta.is_file():
        try:
            data = json.loads(meta.read_text())
            mpp = data.get("mpp")
            level, context = int(data.get("level", 0)), int(data.get("context", 0))
            tile = int(data["tile"]) if data.get("tile") is not None else None
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"{meta}: unreadable ({exc})") from None
        try:
            return level, (float(mpp) if mpp else None), validate_context(context), tile
        except FwrdError as exc:
            raise DataError(f"{meta}: {exc}") from None
    table = root / "patches.csv"
    if table.is_file():
        with open(table, newline="") as fh:
            row = next(csv.DictReader(fh), None)
        if row and row.get("level", "").strip().isdigit():
            mpp = row.get("mpp")
            tile = row.get("tile", "").strip()
            return int(row["level"]), (float(mpp) if mpp else None), 0, (int(tile) if tile.isdigit() else None)
    return 0, None, 0, None
