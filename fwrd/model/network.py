"""ReverseDistillation: frozen teacher -> one-class bottleneck -> student decoder.

    model = ReverseDistillation(architecture="fwrd")
    teacher_feats, student_feats = model(normalised_batch)   # three tensors each, (f1, f2, f3)
    scores = patch_score(teacher_feats, student_feats, tile_size)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fwrd.model.bottleneck import OneClassBottleneck
from fwrd.model.student import StudentDecoder
from fwrd.model.teacher import WideResNetTeacher

Features = tuple[Tensor, Tensor, Tensor]


class ReverseDistillation(nn.Module):
    def __init__(self, architecture: str = "fwrd") -> None:
        super().__init__()
        self.architecture = architecture
        self.teacher = WideResNetTeacher()
        self.bottleneck = OneClassBottleneck(architecture)
        self.student = StudentDecoder()
        self.freeze_teacher()

    def freeze_teacher(self) -> None:
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ReverseDistillation":
        """The teacher stays in eval mode (frozen BN statistics) whatever the mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.bottleneck.parameters()) + list(self.student.parameters())

    def forward(self, x: Tensor) -> tuple[Features, Features]:
        with torch.no_grad():
            teacher_feats = self.teacher(x)
        student_feats = self.student(self.bottleneck(teacher_feats))
        return teacher_feats, student_feats
