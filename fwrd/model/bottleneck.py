"""The one-class bottleneck (OCBE): fuses the teacher's three scales into one compact embedding.

f1 -> two stride-2 3x3 convs, f2 -> one, concatenated with f3 (3072 x T/16), then three wide
bottleneck blocks (first with stride 2) -> 2048 x T/32. FW-RD's first-block shortcut is a 3x3 stride-2
convolution (`architecture="fwrd"`); RD4AD's is 1x1 (`"rd4ad"`). The reference's unused conv4/bn4 are
left out. Names follow the reference (`conv1`..`bn3`, `bn_layer`) so its `bn` state dict imports.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fwrd.model.blocks import EXPANSION, Bottleneck, conv1x1, conv3x3

BOTTLENECK_BLOCKS = 3


class OneClassBottleneck(nn.Module):
    def __init__(self, architecture: str = "fwrd") -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(64 * EXPANSION, 128 * EXPANSION, 2)
        self.bn1 = nn.BatchNorm2d(128 * EXPANSION)
        self.conv2 = conv3x3(128 * EXPANSION, 256 * EXPANSION, 2)
        self.bn2 = nn.BatchNorm2d(256 * EXPANSION)
        self.conv3 = conv3x3(128 * EXPANSION, 256 * EXPANSION, 2)
        self.bn3 = nn.BatchNorm2d(256 * EXPANSION)
        self.bn_layer = self._make_layer(architecture)

    @staticmethod
    def _make_layer(architecture: str) -> nn.Sequential:
        inplanes, planes = 3 * 256 * EXPANSION, 512
        shortcut = conv3x3 if architecture == "fwrd" else conv1x1
        downsample = nn.Sequential(shortcut(inplanes, planes * EXPANSION, 2), nn.BatchNorm2d(planes * EXPANSION))
        layers = [Bottleneck(inplanes, planes, stride=2, downsample=downsample)]
        layers += [Bottleneck(planes * EXPANSION, planes) for _ in range(1, BOTTLENECK_BLOCKS)]
        return nn.Sequential(*layers)

    def forward(self, features: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        f1, f2, f3 = features
        l1 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(f1))))))
        l2 = self.relu(self.bn3(self.conv3(f2)))
        return self.bn_layer(torch.cat([l1, l2, f3], dim=1))
