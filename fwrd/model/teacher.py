"""The frozen teacher E: WideResNet50-2's stem and layer1-3 (layer4 is never computed).

Attribute names equal torchvision's `wide_resnet50_2`, so its state dict (or the ImageNet file) loads with
`strict=False` and reports no missing keys; only `layer4.*` and `fc.*` are unexpected.
"""

from __future__ import annotations

from torch import Tensor, nn

from fwrd.model.blocks import EXPANSION, Bottleneck, conv1x1

TEACHER_LAYERS = (3, 4, 6)  # blocks in layer1-3 of WideResNet-50 ([3, 4, 6, 3])


class WideResNetTeacher(nn.Module):
    """Returns (f1, f2, f3): post-ReLU outputs of layer1-3 (256 x T/4, 512 x T/8, 1024 x T/16)."""

    def __init__(self) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, TEACHER_LAYERS[0], stride=1)
        self.layer2 = self._make_layer(128, TEACHER_LAYERS[1], stride=2)
        self.layer3 = self._make_layer(256, TEACHER_LAYERS[2], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * EXPANSION, stride), nn.BatchNorm2d(planes * EXPANSION)
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * EXPANSION
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return f1, f2, f3
