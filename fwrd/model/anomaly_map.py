"""From teacher/student features to FW-RD's anomaly maps and patch score (RD4AD `test.py` rules).

Per scale: A_n = 1 - cos(f_n, f'_n) per pixel along channels; bilinear upsample (align_corners=True) to
the tile size; sum over scales. Patch score = mean of that summed T x T map (range 0..3).

The mean of a bilinear upsample is a fixed weighted sum of the small map (`upsample_mean_weights`), so
`patch_score` never builds the T x T map; `summed_anomaly_map(..., T)` does, and tests hold the two equal.
`upsample_mean_weights_of` computes the same weights inside a graph whose input size is only known
when it runs (the exported graph takes tiles and larger regions).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

COSINE_EPS = 1e-8


def cosine_distance_map(teacher: Tensor, student: Tensor) -> Tensor:
    """1 - per-pixel cosine along channels, [B, C, H, W] x2 -> [B, H, W] float32.

    The reductions accumulate in float32 whatever the features' type: fp16 features are read as they are
    (no float32 copies of the feature maps, which cost ~4 GB of memory traffic per batch of 64 at 256 px)
    and only their per-pixel products are rounded to fp16 (a product overflowing fp16 gives a non-finite
    score, which the runtime refuses). Norms are taken separately and clamped (fp16 overflows on a sum of
    1024 squares and cannot hold 1e-8).
    """
    dot = (teacher * student).sum(dim=1, dtype=torch.float32)
    norms = (torch.linalg.vector_norm(teacher, dim=1, dtype=torch.float32)
             * torch.linalg.vector_norm(student, dim=1, dtype=torch.float32))
    return 1.0 - dot / norms.clamp_min(COSINE_EPS)


def upsample_mean_weights(n: int, size: int) -> np.ndarray:
    """w such that mean_i upsample(v)[i] = w @ v for a 1-D linear upsample n -> size, align_corners=True."""
    w = np.zeros(n, dtype=np.float64)
    if n == 1:
        w[0] = 1.0
        return w
    pos = np.arange(size, dtype=np.float64) * (n - 1) / (size - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, n - 2)
    frac = pos - lo
    np.add.at(w, lo, 1.0 - frac)
    np.add.at(w, lo + 1, frac)
    return w / size


def upsample_mean_weights_of(n: int, size: int, like: Tensor) -> Tensor:
    """`upsample_mean_weights(n, size)` as a float32 tensor on `like`'s device, from sizes that may be symbolic
    in an export: node j gets the mean over outputs i of the linear-interpolation hat
    max(0, 1 - |i (n - 1) / (size - 1) - j|). The aranges are integer (a Range TensorRT's parser takes on
    shape values) and cast afterwards; the [size, n] table is small next to any feature map."""
    pos = torch.arange(size, device=like.device).to(torch.float32) * ((n - 1) / (size - 1))
    nodes = torch.arange(n, device=like.device).to(torch.float32)
    return (1.0 - (pos.unsqueeze(1) - nodes.unsqueeze(0)).abs()).clamp_min(0.0).mean(0)


def patch_score(teacher_feats: tuple[Tensor, ...], student_feats: tuple[Tensor, ...], tile_size: int) -> Tensor:
    """FW-RD patch score [B]: mean over the T x T tile of the summed upsampled anomaly maps."""
    total = None
    for t, s in zip(teacher_feats, student_feats):
        amap = cosine_distance_map(t, s)
        h, w = amap.shape[-2:]
        wy = torch.as_tensor(upsample_mean_weights(h, tile_size), dtype=amap.dtype, device=amap.device)
        wx = torch.as_tensor(upsample_mean_weights(w, tile_size), dtype=amap.dtype, device=amap.device)
        score = torch.einsum("bhw,h,w->b", amap, wy, wx)
        total = score if total is None else total + score
    return total


def summed_anomaly_map(teacher_feats: tuple[Tensor, ...], student_feats: tuple[Tensor, ...], size: int) -> Tensor:
    """Sum over scales of the per-pixel maps, each upsampled to size x size (align_corners=True)."""
    total = None
    for t, s in zip(teacher_feats, student_feats):
        amap = cosine_distance_map(t, s).unsqueeze(1)
        if amap.shape[-1] != size or amap.shape[-2] != size:
            amap = F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=True)
        total = amap if total is None else total + amap
    return total.squeeze(1)

