"""Training with context: each patch is a tile with C px of its real surroundings (`fwrd-patches --context`).

A model trained only on lone, zero-padded tiles learns what tumor looks like inside a padded tile; dense
scoring (`fwrd-run --dense`) shows it the same tile inside its tissue, and a 64 px model's ranking can
invert there (README, Dense scoring). With context every training step has two terms of the same
focal-distillation loss: the lone tile (the centre crop, as per-tile scoring sees it) and the tile inside
its surroundings (the network run on the whole patch, the loss on the feature cells of the tile: how a
dense region sees it). Validation scores both ways, so a threshold for each travels in the config.

    loss = context_loss(model, tiles, labels, config)            # tiles: uint8 [B, T + 2C, T + 2C, 3]
    per_tile, dense = context_scores(model, tiles, config)
"""

from __future__ import annotations

import torch
from torch import Tensor

from fwrd.config import FWRDConfig
from fwrd.model.anomaly_map import patch_score
from fwrd.model.network import ReverseDistillation
from fwrd.model.preprocess import normalise_tiles
from fwrd.training.loss import focal_distillation_loss


def lone_tiles(tiles: Tensor, context: int) -> Tensor:
    """The tiles without their context: the centre crop of uint8 [B, T + 2C, T + 2C, 3]."""
    if not context:
        return tiles
    return tiles[:, context:-context, context:-context]


def tile_cells(features: tuple[Tensor, ...], tile: int, context: int) -> list[Tensor]:
    """Each feature map cut to the cells of the tile (context a multiple of 32: whole cells at 4, 8, 16)."""
    side = tile + 2 * context
    out = []
    for f in features:
        stride = side // f.shape[-1]
        lo, hi = context // stride, (context + tile) // stride
        out.append(f[..., lo:hi, lo:hi])
    return out


def context_loss(model: ReverseDistillation, tiles: Tensor, labels: Tensor, config: FWRDConfig,
                 autocast: bool = False) -> Tensor:
    """The loss of the lone tiles plus, with context, the loss of the tiles' cells inside their patch."""
    device = tiles.device
    total = None
    views = [lone_tiles(tiles, config.context)] + ([tiles] if config.context else [])
    for n, view in enumerate(views):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            teacher, student = model(normalise_tiles(view, config))
        if autocast:  # cosines of bf16 features lose the small differences the loss is made of
            teacher, student = tuple(t.float() for t in teacher), tuple(s.float() for s in student)
        if n:  # the patch with its context: the loss on the tile's own cells
            teacher = tile_cells(teacher, config.tile_size, config.context)
            student = tile_cells(student, config.tile_size, config.context)
        loss = focal_distillation_loss(teacher, student, labels, config.alpha, config.gamma)
        total = loss if total is None else total + loss
    return total


@torch.no_grad()
def context_scores(model: ReverseDistillation, tiles: Tensor, config: FWRDConfig) -> tuple[Tensor, Tensor | None]:
    """Per-tile scores of the lone tiles, and (with context) the dense scores of the tiles in their patch."""
    teacher, student = model(normalise_tiles(lone_tiles(tiles, config.context), config))
    per_tile = patch_score(teacher, student, config.tile_size)
    if not config.context:
        return per_tile, None
    teacher, student = model(normalise_tiles(tiles, config))
    # dense scoring's window rule (fwrd.runtime.window_scores): the per-tile rule on the cells under the
    # window; the window starts on a cell at every scale here, so this is exactly what a region pass gives
    cells = tile_cells(teacher, config.tile_size, config.context), tile_cells(student, config.tile_size, config.context)
    return per_tile, patch_score(*cells, config.tile_size)
