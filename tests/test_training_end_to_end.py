"""Synthetic slides -> fwrd-patches -> fwrd-train: the demo's recipe reaches patch AUROC >= 0.95."""

import json

import pytest

from fwrd.model import load_checkpoint
from fwrd.training.trainer import sidecar

pytestmark = pytest.mark.slow


def test_training_reaches_auroc_095(trained):
    path, records = trained
    best = max(r.val_auroc for r in records)
    assert best >= 0.95, [(r.epoch, r.val_auroc, r.val_accuracy) for r in records]


def test_checkpoint_carries_config_and_best_threshold(trained):
    path, records = trained
    model, config = load_checkpoint(path)
    best = [r for r in records if r.best][-1]
    assert config.tile_size == 64 and config.level == 0 and config.mpp == pytest.approx(0.243)
    assert config.threshold == pytest.approx(best.val_threshold)
    assert config.teacher_weights == "random"


def test_history_and_a_tidy_disk(trained):
    path, records = trained
    lines = [json.loads(line) for line in sidecar(path, ".history.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [r.epoch for r in records]
    assert {"loss", "val_auroc", "val_accuracy", "val_threshold", "patches_per_second", "selection",
            "phases"} <= set(lines[0])
    assert set(lines[-1]["phases"]) == {"train", "batchnorm", "validation", "saving"}
    assert not sidecar(path, ".last.pt").exists()  # a finished run leaves one model-sized file
    assert sorted(p.name for p in path.parent.glob("model.*")) == ["model.history.jsonl", "model.pt"]
