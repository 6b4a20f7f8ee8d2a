"""The two residual blocks of reverse distillation: torchvision's Bottleneck and its transposed mirror.

Parameter names match torchvision (`conv1`, `bn1`, ..., `downsample`) and RD4AD's decoder (`upsample`),
so their state dicts load as they are.
"""

from __future__ import annotations

from torch import Tensor, nn

EXPANSION = 4


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def deconv2x2(in_planes: int, out_planes: int, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_planes, out_planes, kernel_size=2, stride=stride, bias=False)


def wide_width(planes: int, width_per_group: int = 128) -> int:
    """Channels inside a WideResNet-50-2 bottleneck (torchvision: planes * width_per_group / 64)."""
    return int(planes * (width_per_group / 64.0))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv), as in WideResNet50-2."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = wide_width(planes)
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * EXPANSION)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class DeBottleneck(nn.Module):
    """The decoder's mirror block: a stride-2 block upsamples with a 2x2 transposed convolution."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, upsample: nn.Module | None = None) -> None:
        super().__init__()
        width = wide_width(planes)
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = deconv2x2(width, width, stride) if stride == 2 else conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * EXPANSION)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)
