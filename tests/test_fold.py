"""BatchNorm folded into the convolutions (fwrd.model.fold): exact in fp32, inference copies only.

The network is an untrained ReverseDistillation at 64 px whose BatchNorms get random statistics and
affine parameters (a fresh one's are the identity, which would hide a wrong fold).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fwrd.config import FWRDConfig
from fwrd.export.calibration import labelled_synthetic_tiles, noise_tiles
from fwrd.model.fold import conv_bn_pairs, fold_batchnorm
from fwrd.model.fused_scorer import FusedScorer
from fwrd.model.network import ReverseDistillation

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, teacher_weights="random")


def randomise_batchnorms(module: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return module


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return randomise_batchnorms(ReverseDistillation(CONFIG.architecture).eval())


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.slow  # two passes of the whole network over the tiles: ~10 s of CPU
def test_the_folded_scorer_equals_the_unfolded_one_in_fp32(network):
    tissue, _ = labelled_synthetic_tiles(CONFIG, per_class=3, seed=11)  # the export gate's kind of tiles
    tiles = torch.from_numpy(np.concatenate([tissue, noise_tiles(CONFIG, 2, seed=11)]))
    unfolded, folded = FusedScorer(network, CONFIG, fold=False).eval(), FusedScorer(network, CONFIG).eval()
    assert _count(unfolded, nn.BatchNorm2d) == 98 and _count(folded, nn.BatchNorm2d) == 0
    with torch.inference_mode():
        want, got = unfolded(tiles), folded(tiles)
    score_rel = ((got[0] - want[0]).abs() / want[0].abs()).max().item()
    assert 0 <= score_rel <= 1e-6, score_rel  # scores: 1e-6 relative
    for a, b in zip(want[1:], got[1:]):  # amap and per-scale maps, relative to their scale
        assert ((b - a).abs().max() / a.abs().max()).item() <= 1e-6


def test_training_keeps_its_batchnorms(network):
    """FusedScorer folds its own deep copy: the model it came from (which training re-estimates) is untouched."""
    before = {k: v.clone() for k, v in network.state_dict().items()}
    FusedScorer(network, CONFIG)
    assert _count(network, nn.BatchNorm2d) == 98
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train())


def test_folding_keeps_the_weight_names_int8_picks_convolutions_by(network):
    """fwrd.export.quantize keeps 7 student convolutions fp32 by weight name: the names survive folding."""
    from fnmatch import fnmatchcase

    from fwrd.export.quantize import KEEP_FP32

    scorer = FusedScorer(network, CONFIG)
    names = [n for n, _ in scorer.named_parameters() if n.endswith(".weight")]
    kept = {n for n in names if any(fnmatchcase(n, p) for p in KEEP_FP32)}
    assert len(kept) == 7 and all(n.replace(".weight", ".bias") in dict(scorer.named_parameters()) for n in kept)


@pytest.mark.parametrize("transpose", [False, True])
def test_a_convolution_and_its_batchnorm_become_one_convolution(transpose):
    torch.manual_seed(3)
    conv = nn.ConvTranspose2d(6, 5, 2, stride=2, bias=True) if transpose else nn.Conv2d(6, 5, 3, padding=1, bias=False)
    block = randomise_batchnorms(nn.Sequential(conv, nn.BatchNorm2d(5), nn.ReLU())).eval()
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        want = block(x)
        fold_batchnorm(block)
        got = block(x)
    assert isinstance(block[1], nn.Identity) and block[0].bias is not None
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_convolution_read_by_more_than_its_batchnorm_is_not_folded():
    """The pairs come from the traced data flow: a conv output that something else also reads stays."""

    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
            self.conv2, self.bn2 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv1(x)
            return self.bn1(y) + y + self.bn2(self.conv2(x))

    block = randomise_batchnorms(Branch()).eval()
    assert conv_bn_pairs(block) == [("conv2", "bn2")]
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        want = block(x)
        fold_batchnorm(block)
        assert isinstance(block.bn1, nn.BatchNorm2d) and isinstance(block.bn2, nn.Identity)
        assert torch.allclose(block(x), want, rtol=1e-6, atol=1e-6)
