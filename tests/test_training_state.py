"""What --resume needs to continue the same run (random states) and what the log says about the kept epoch."""

import random

import numpy as np
import torch

from fwrd.training.rng import capture_rng, restore_rng
from fwrd.training.selection import BestEpoch


def _draws(generator: torch.Generator) -> tuple:
    return (random.random(), float(np.random.random()), float(torch.rand(1)),
            torch.randperm(10, generator=generator).tolist())


def test_random_states_survive_a_weights_only_checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(1)
    random.seed(2), np.random.seed(3), torch.manual_seed(4)
    _draws(generator)
    torch.save({"rng": capture_rng(generator)}, tmp_path / "last.pt")
    expected = _draws(generator)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    other = torch.Generator().manual_seed(9)
    restore_rng(torch.load(tmp_path / "last.pt", weights_only=True)["rng"], other)
    assert _draws(other) == expected


def test_the_kept_epoch_and_why():
    best = BestEpoch()
    assert best.consider(1, 0.9, 0.95) == (True, "kept as model.pt (first epoch)")
    kept, why = best.consider(2, 0.95, 0.9)
    assert kept and "accuracy 0.9500 beats 0.9000 of epoch 1" in why
    kept, why = best.consider(3, 0.95, 0.97)
    assert kept and "accuracy ties epoch 2; AUROC 0.9700 beats 0.9000" in why
    kept, why = best.consider(4, 0.95, 0.97)
    assert not kept and why.startswith("ties epoch 3") and "model.pt stays epoch 3, a tie keeps the earlier" in why
    kept, why = best.consider(5, 0.5, 0.99)
    assert not kept and "model.pt stays epoch 3" in why and best.epoch == 3
    no_tumor = BestEpoch()
    no_tumor.consider(1, 1.0, None)
    assert "AUROC n/a" in no_tumor.consider(2, 1.0, None)[1]


def test_older_last_checkpoints_name_their_best_epoch_from_the_history():
    history = [{"epoch": 1, "best": True}, {"epoch": 2, "best": True}, {"epoch": 3, "best": False}]
    best = BestEpoch.resumed([0.9, 0.95], None, history)
    assert best.epoch == 2 and best.key == (0.9, 0.95)
    assert BestEpoch.resumed(None, None, []).epoch is None
