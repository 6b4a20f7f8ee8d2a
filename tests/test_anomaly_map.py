"""Patch score = mean of the summed, bilinearly upsampled (align_corners) per-pixel 1 - cos maps."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fwrd.model.anomaly_map import cosine_distance_map, patch_score, summed_anomaly_map, upsample_mean_weights


@pytest.mark.parametrize("n,size", [(1, 8), (2, 8), (4, 64), (16, 256), (8, 256)])
def test_upsample_mean_weights_equal_mean_of_interpolate(n, size):
    v = torch.rand(1, 1, 1, n, dtype=torch.float64)
    up = F.interpolate(v, size=(1, size), mode="bilinear", align_corners=True)
    assert np.isclose(up.mean().item(), float(upsample_mean_weights(n, size) @ v.flatten().numpy()))


@pytest.mark.parametrize("tile", [64, 256])
def test_patch_score_equals_mean_of_full_map(tile):
    torch.manual_seed(0)
    shapes = [(2, 8, tile // 4, tile // 4), (2, 16, tile // 8, tile // 8), (2, 32, tile // 16, tile // 16)]
    teacher = tuple(torch.rand(s) for s in shapes)
    student = tuple(torch.rand(s) for s in shapes)
    full = summed_anomaly_map(teacher, student, tile)
    assert full.shape == (2, tile, tile)
    torch.testing.assert_close(patch_score(teacher, student, tile), full.mean(dim=(1, 2)), rtol=1e-5, atol=1e-6)


def test_cosine_distance_map_values():
    t = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).repeat(1, 1, 2, 2)
    s = torch.stack([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3 ** 0.5]),
                     torch.tensor([0.0, 0.0])]).T.reshape(1, 2, 2, 2)
    d = cosine_distance_map(t, s)
    torch.testing.assert_close(d, torch.tensor([[[0.0, 1.0], [0.5, 1.0]]]))


def test_fp16_features_do_not_overflow_the_norm():
    big = torch.full((1, 1024, 2, 2), 8.0, dtype=torch.float16)
    assert torch.isfinite(cosine_distance_map(big, big)).all()
    torch.testing.assert_close(cosine_distance_map(big, big), torch.zeros(1, 2, 2))
