"""The student decoder D: the teacher's mirror, upsampling 2048 x T/32 back to the three teacher scales."""

from __future__ import annotations

from torch import Tensor, nn

from fwrd.model.blocks import EXPANSION, DeBottleneck, deconv2x2

STUDENT_LAYERS = (3, 4, 6)


class StudentDecoder(nn.Module):
    """Returns (f1', f2', f3') in the teacher's order: 256 x T/4, 512 x T/8, 1024 x T/16."""

    def __init__(self) -> None:
        super().__init__()
        self.inplanes = 512 * EXPANSION
        self.layer1 = self._make_layer(256, STUDENT_LAYERS[0])
        self.layer2 = self._make_layer(128, STUDENT_LAYERS[1])
        self.layer3 = self._make_layer(64, STUDENT_LAYERS[2])
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        upsample = nn.Sequential(deconv2x2(self.inplanes, planes * EXPANSION, 2), nn.BatchNorm2d(planes * EXPANSION))
        layers = [DeBottleneck(self.inplanes, planes, stride=2, upsample=upsample)]
        self.inplanes = planes * EXPANSION
        layers += [DeBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f3 = self.layer1(embedding)
        f2 = self.layer2(f3)
        f1 = self.layer3(f2)
        return f1, f2, f3
