"""benchmarks/qc_own_model.py (qc_artifacts --own-model): the recipe's steps, and a cache that retrains only when the
pixels, the mpp or the recipe changed. The steps are recorded, not run (training takes minutes)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def own(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("qc_own_model", None)
    return importlib.import_module("qc_own_model")


def fake_steps(calls: list):
    """Stands in for fwrd.demo.run_step: records the step and leaves what the real one would (history, graph)."""
    def step(name: str, args: list) -> None:
        calls.append((name, [str(a) for a in args]))
        if name == "train":
            out = Path(args[args.index("--out") + 1])
            out.with_name(out.stem + ".history.jsonl").write_text(json.dumps({"epoch": 1, "val_threshold": 0.5}) + "\n")
            out.write_bytes(b"checkpoint")
        if name == "export":
            Path(args[args.index("-o") + 1]).write_bytes(b"graph")
    return step


def test_trains_once_per_image_and_recipe(own, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    calls: list = []
    step = fake_steps(calls)
    recipe = own.OwnRecipe()
    graph, made = own.own_model(rgb, 0.243, recipe, tmp_path, step)
    assert [name for name, _ in calls] == ["patches", "train", "export"]
    patches = calls[0][1]
    assert patches[0] == str(graph.parent / "clean.svs") and (graph.parent / "clean.svs").is_file()
    assert "--annotations" not in patches and patches[patches.index("--tile") + 1] == "64"
    train = calls[1][1]
    assert train[train.index("--teacher-weights") + 1] == "random"
    assert calls[2][1][calls[2][1].index("--precision") + 1] == "fp32"
    assert graph.is_file() and not made["cached"] and made["val_thresholds"] == [0.5]
    assert not (graph.parent / "model.pt").exists()  # the graph holds the model; the cache keeps only that

    again, made = own.own_model(rgb, 0.243, recipe, tmp_path, step)
    assert again == graph and made["cached"] and len(calls) == 3  # no retraining

    changed = rgb.copy()
    changed[0, 0, 0] ^= 1
    for args in ((changed, 0.243, recipe), (rgb, 0.5, recipe), (rgb, 0.243, own.OwnRecipe(epochs=3))):
        other, made = own.own_model(*args, tmp_path, step)
        assert other != graph and not made["cached"]
    assert len(calls) == 12


def test_an_interrupted_attempt_is_begun_again(own, tmp_path):
    rgb = np.full((32, 32, 3), 200, np.uint8)
    calls: list = []
    root = tmp_path / own.cache_key(rgb, 0.243, own.OwnRecipe())
    (root / "patches").mkdir(parents=True)
    (root / "model.pt").write_bytes(b"half")  # training died before the export wrote the graph
    graph, _ = own.own_model(rgb, 0.243, own.OwnRecipe(), tmp_path, fake_steps(calls))
    assert len(calls) == 3 and graph.is_file() and not (root / "model.pt").exists()
