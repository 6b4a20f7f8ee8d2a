"""The module that becomes the ONNX graph: uint8 tiles in, FW-RD patch score and anomaly map out.

    tiles uint8 [B, T, T, 3] -> cast (first: TensorRT refuses any uint8 tensor that is not a graph input or
      output), NHWC->NCHW, scale, ImageNet-normalise
      -> teacher -> bottleneck -> student              (fp16 when `half`: TensorRT 11 is strongly typed)
      -> per-scale 1 - cos (fp32) -> score [B]: mean of the summed T x T upsampled map, as a fixed
         weighted sum (no T x T tensor); amap [B, T/4, T/4]: the summed map at a quarter of the tile.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwrd.config import FWRDConfig
from fwrd.model.anomaly_map import cosine_distance_map, upsample_mean_weights
from fwrd.model.network import ReverseDistillation


class FusedScorer(nn.Module):
    def __init__(self, model: ReverseDistillation, config: FWRDConfig, half: bool = False) -> None:
        super().__init__()
        model = copy.deepcopy(model).eval()
        self.half_precision = half
        self.teacher, self.bottleneck, self.student = model.teacher, model.bottleneck, model.student
        if half:
            for part in (self.teacher, self.bottleneck, self.student):
                part.half()
        size = config.tile_size
        self.tile_size = size
        self.amap_size = size // 4
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(config.std).view(1, 3, 1, 1) * 255.0))
        for n, side in enumerate((size // 4, size // 8, size // 16)):
            weights = torch.tensor(upsample_mean_weights(side, size), dtype=torch.float32)
            self.register_buffer(f"score_weights_{n}", weights)

    def forward(self, tiles: Tensor) -> tuple[Tensor, Tensor]:
        x = (tiles.to(torch.float32).permute(0, 3, 1, 2) - self.mean) * self.inv_std
        if self.half_precision:
            x = x.to(torch.float16)
        teacher = self.teacher(x)
        student = self.student(self.bottleneck(teacher))
        score = None
        amap = None
        for n, (t, s) in enumerate(zip(teacher, student)):
            distance = cosine_distance_map(t, s)  # float32 [B, h, w]
            w = getattr(self, f"score_weights_{n}")
            part = (distance * w.view(1, -1, 1) * w.view(1, 1, -1)).sum(dim=(1, 2))
            score = part if score is None else score + part
            if distance.shape[-1] != self.amap_size:
                distance = F.interpolate(
                    distance.unsqueeze(1), size=(self.amap_size, self.amap_size), mode="bilinear", align_corners=True
                ).squeeze(1)
            amap = distance if amap is None else amap + distance
        return score, amap
