"""Tile preprocessing shared by training and the exported graph: uint8 NHWC RGB -> normalised NCHW float."""

from __future__ import annotations

import torch
from torch import Tensor

from fwrd.config import FWRDConfig


def normalise_tiles(tiles: Tensor, config: FWRDConfig) -> Tensor:
    """Cast, scale to [0, 1], ImageNet-normalise and transpose; the same ops run inside the ONNX graph."""
    x = tiles.permute(0, 3, 1, 2).to(torch.float32)
    mean = torch.tensor(config.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(config.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std
