"""The module that becomes the ONNX graph: uint8 tiles (or regions) in, FW-RD score and anomaly maps out.

    tiles uint8 [B, H, W, 3] (H, W multiples of 32: T x T for a tile, larger for a region of a slide)
      -> cast (first: TensorRT refuses any uint8 tensor that is not a graph input or output), NHWC->NCHW,
         scale, ImageNet-normalise
      -> teacher -> bottleneck -> student              (fp16 when `half`: TensorRT 11 is strongly typed;
         BatchNorm folded into the convolutions: fwrd.model.fold)
      -> per-scale 1 - cos (fp32 accumulation, reading fp16 features as they are when `half`):
         map_s4 [B, H/4, W/4], map_s8 [B, H/8, W/8], map_s16 [B, H/16, W/16]
      -> score [B]: the mean of the summed H x W map (each scale upsampled with align_corners=True), as a
         weighted sum of the small maps (no H x W tensor); amap [B, H/4, W/4]: the summed map at a quarter.

For a T x T tile, `score` and `amap` are FW-RD's patch score and anomaly map. For a region, the three
per-scale maps are what dense scoring needs (`fwrd.runtime.window_scores` applies the per-tile rule to
every tile window of them); `score` and `amap` are the same rule applied to the whole region.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwrd.config import FWRDConfig
from fwrd.model.anomaly_map import cosine_distance_map, upsample_mean_weights_of
from fwrd.model.fold import fold_batchnorm
from fwrd.model.network import ReverseDistillation

Outputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]  # score, amap, map_s4, map_s8, map_s16


class FusedScorer(nn.Module):
    """`fold=False` keeps the BatchNorms and `half_dtype=torch.bfloat16` runs bf16 instead of fp16: the GPU
    kit measures both (nothing else needs them)."""

    def __init__(self, model: ReverseDistillation, config: FWRDConfig, half: bool = False, fold: bool = True,
                 half_dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        model = copy.deepcopy(model).eval()  # the caller's model (in training, perhaps) keeps its BatchNorms
        if fold:
            fold_batchnorm(model)  # in float32, before any cast to half: one rounding
        self.folded = bool(fold)
        self.half_precision = half
        self.half_dtype = half_dtype
        self.teacher, self.bottleneck, self.student = model.teacher, model.bottleneck, model.student
        if half:
            for part in (self.teacher, self.bottleneck, self.student):
                part.to(half_dtype)
        self.tile_size = config.tile_size
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(config.std).view(1, 3, 1, 1) * 255.0))

    def forward(self, tiles: Tensor) -> Outputs:
        x = (tiles.to(torch.float32).permute(0, 3, 1, 2) - self.mean) * self.inv_std
        height, width = x.shape[-2], x.shape[-1]
        if self.half_precision:
            x = x.to(self.half_dtype)
        teacher = self.teacher(x)
        student = self.student(self.bottleneck(teacher))
        maps = [cosine_distance_map(t, s) for t, s in zip(teacher, student)]  # float32 [B, h, w]
        score = None
        for distance in maps:
            wy = upsample_mean_weights_of(distance.shape[-2], height, distance)
            wx = upsample_mean_weights_of(distance.shape[-1], width, distance)
            part = (distance * wy.view(1, -1, 1) * wx.view(1, 1, -1)).sum(dim=(1, 2))
            score = part if score is None else score + part
        size = (maps[0].shape[-2], maps[0].shape[-1])
        amap = maps[0]
        for distance in maps[1:]:
            amap = amap + F.interpolate(distance.unsqueeze(1), size=size, mode="bilinear",
                                        align_corners=True).squeeze(1)
        return score, amap, maps[0], maps[1], maps[2]
