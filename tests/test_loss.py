"""The focal distillation loss pinned on hand-computable inputs (per-map cosine, minus sign, clamp)."""

import math

import pytest
import torch

from fwrd.training.loss import P_EPS, focal_distillation_loss


def pair(similarity: float):
    """Teacher/student maps of shape [1, 2, 1, 1] whose flattened cosine is `similarity`."""
    t = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    s = torch.tensor([similarity, math.sqrt(1 - similarity**2)]).view(1, 2, 1, 1)
    return t, s


def loss_for(similarities, labels, **kw):
    ts = [pair(s) for s in similarities]
    teacher = torch.cat([t for t, _ in ts])
    student = torch.cat([s for _, s in ts])
    feats_t = (teacher, teacher.clone(), teacher.clone())
    feats_s = (student, student.clone(), student.clone())
    return focal_distillation_loss(feats_t, feats_s, torch.tensor(labels), **kw).item()


def test_normal_patch_at_half_similarity():
    # normal: -0.1 * (1 - 0.5)^2 * log(0.5) per scale, three scales
    assert loss_for([0.5], [1]) == pytest.approx(3 * 0.1 * 0.25 * math.log(2), rel=1e-5)


def test_tumor_patch_uses_one_minus_similarity_and_one_minus_alpha():
    # tumor with S = 0.8: p_t = 0.2, -(0.9) * 0.8^2 * log(0.2)
    assert loss_for([0.8], [0]) == pytest.approx(3 * 0.9 * 0.64 * -math.log(0.2), rel=1e-5)


def test_batch_mean_and_perfect_cases():
    # identical normal features and orthogonal tumor features cost nothing
    assert loss_for([1.0, 0.0], [1, 0]) == pytest.approx(0.0, abs=1e-9)
    mixed = loss_for([0.5, 0.8], [1, 0])
    assert mixed == pytest.approx((loss_for([0.5], [1]) + loss_for([0.8], [0])) / 2, rel=1e-6)


def test_clamp_keeps_the_loss_finite():
    # normal features orthogonal: S = 0 -> p_t clamped to eps instead of log(0) = -inf
    value = loss_for([0.0], [1])
    assert math.isfinite(value)
    assert value == pytest.approx(3 * 0.1 * (1 - P_EPS) ** 2 * -math.log(P_EPS), rel=1e-4)


def test_unweighted_ablation_is_half_log_loss():
    assert loss_for([0.5], [1], alpha=0.5, gamma=0.0) == pytest.approx(3 * 0.5 * math.log(2), rel=1e-5)


def test_without_tumor_it_is_plain_rd_minimised_at_perfect_reconstruction():
    values = [loss_for([s], [1]) for s in (0.2, 0.5, 0.9, 0.999)]
    assert values == sorted(values, reverse=True)
    assert loss_for([1.0], [1]) == pytest.approx(0.0, abs=1e-9)


def test_per_map_cosine_not_per_pixel():
    # two pixels: one identical, one orthogonal. Per-map cosine over [1,0,1,0] vs [1,0,0,1] is 0.5.
    t = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 2, 1, 2)
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    loss = focal_distillation_loss((t,), (s,), torch.tensor([1])).item()
    assert loss == pytest.approx(0.1 * 0.25 * math.log(2), rel=1e-5)


def test_gradients_flow_to_the_student_only():
    t = torch.rand(2, 4, 2, 2)
    s = torch.rand(2, 4, 2, 2, requires_grad=True)
    focal_distillation_loss((t,), (s,), torch.tensor([1, 0])).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
