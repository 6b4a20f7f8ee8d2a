"""FW-RD's focal-weighted distillation loss, in the corrected form of `method.md`.

For each scale n and sample: S = cosine(flatten(f_n), flatten(f'_n)) over the whole C*H*W map.
    normal (label 1): p_t = S,     alpha_t = alpha
    tumor  (label 0): p_t = 1 - S, alpha_t = 1 - alpha
    L = -alpha_t * (1 - p_t)^gamma * log(clamp(p_t, eps, 1))
averaged over the batch and summed over the three scales.

The paper's Eq. (2) drops the minus sign; the reference code does not clamp and can return inf.
alpha=0.5, gamma=0 is the paper's "unweighted" ablation; a batch with no tumor is plain RD (up to alpha).

    loss = focal_distillation_loss(teacher_feats, student_feats, labels)   # labels: 1 normal, 0 tumor
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

P_EPS = 1e-6


def focal_distillation_loss(
    teacher_features: Sequence[Tensor],
    student_features: Sequence[Tensor],
    labels: Tensor,
    alpha: float = 0.1,
    gamma: float = 2.0,
) -> Tensor:
    """Scalar loss; `labels` holds 1 for normal and 0 for tumor patches."""
    if len(teacher_features) != len(student_features):
        raise ValueError("teacher and student must give the same number of feature maps")
    normal = labels.reshape(-1).to(torch.bool)
    total = teacher_features[0].new_zeros((), dtype=torch.float32)
    for teacher, student in zip(teacher_features, student_features):
        similarity = F.cosine_similarity(teacher.flatten(1).float(), student.flatten(1).float(), dim=1)
        p_t = torch.where(normal, similarity, 1.0 - similarity).clamp(P_EPS, 1.0)
        alpha_t = torch.where(normal, torch.full_like(p_t, alpha), torch.full_like(p_t, 1.0 - alpha))
        total = total + (-alpha_t * (1.0 - p_t) ** gamma * torch.log(p_t)).mean()
    return total
