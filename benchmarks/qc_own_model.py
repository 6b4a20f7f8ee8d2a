"""A normal model of one real image, for benchmarks/qc_artifacts.py --own-model: what "called" means on real pixels.

The benchmark's shared model (the demo's, random teacher, trained on synthetic slides) calls almost every real
tile, so on real H&E "called with QC on" is only "not flagged". Here each real image gets a model of its own,
trained on its UNPAINTED pixels as a normal slide with the project's own steps (fwrd-patches, fwrd-train,
fwrd-export, run in-process as fwrd.demo does; the demo's recipe: tile 64, random teacher, a couple of epochs),
without tumour patches: fwrd-train then sets the threshold the way it always does (the cut that is best on its
held-out validation patches), which for normal patches alone is just above their highest score. The painted
image is then scored with it. Optimistic about clean tissue (the model has seen this very tissue, and its
threshold was set on it); it says nothing of how a real detector trained elsewhere would score tumour.

Models are cached under OUT/own_models/<key>, the key being the image's pixels, its mpp and the recipe: a rerun
scores again without retraining.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fwrd.atomic import write_json
from fwrd.demo import DemoPlan, run_step
from fwrd.slide.synthetic import write_rgb_slide

MODEL_NAME = "rd_fp32.onnx"  # fp32: the cheapest graph fwrd-export writes that open_backend runs (no calibration)


@dataclass(frozen=True)
class OwnRecipe:
    """The demo's training settings (DemoPlan) for one image's normal patches."""

    tile: int = DemoPlan.tile
    normal_patches: int = DemoPlan.normal_patches
    # one epoch, not the demo's two: validation holds normal patches only, so every epoch ties at accuracy 1.0
    # with no AUROC and fwrd-train keeps the first (a tie keeps the earlier epoch); a second one costs minutes and
    # leaves model.pt as it was. More patches is what makes the recipe longer.
    epochs: int = 1
    lr: float = DemoPlan.lr
    batch_size: int = DemoPlan.batch_size
    seed: int = DemoPlan.seed

    def steps(self, root: Path) -> list[tuple[str, list]]:
        """fwrd-patches, fwrd-train, fwrd-export on root/clean.svs, as a user would type them."""
        slide, patches, model = root / "clean.svs", root / "patches", root / "model.pt"
        return [
            ("patches", [slide, "--out", patches, "--normal", self.normal_patches, "--tile", self.tile,
                         "--seed", self.seed, "--overwrite", "--no-progress"]),
            ("train", [patches, "--out", model, "--epochs", self.epochs, "--lr", self.lr,
                       "--batch-size", self.batch_size, "--teacher-weights", "random", "--seed", self.seed]),
            ("export", [model, "-o", root / MODEL_NAME, "--precision", "fp32", "--seed", self.seed]),
        ]


def cache_key(rgb: np.ndarray, mpp: float, recipe: OwnRecipe) -> str:
    """Names the model by everything it was made from: the pixels (and their shape), the mpp, the recipe."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"shape": list(rgb.shape), "mpp": mpp, "recipe": asdict(recipe)},
                             sort_keys=True).encode())
    digest.update(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return digest.hexdigest()[:20]


def own_model(rgb: np.ndarray, mpp: float, recipe: OwnRecipe, cache: Path,
              step: Callable[[str, list], None] = run_step) -> tuple[Path, dict]:
    """(the graph of a normal model trained on `rgb`, a record of how it was made): from the cache when a model
    of these pixels, mpp and recipe is there, else trained now (minutes). The graph is written last (fwrd-export
    renames it into place once verified), so its presence means the whole recipe ran."""
    key = cache_key(rgb, mpp, recipe)
    root = cache / key
    graph, record_path = root / MODEL_NAME, root / "own_model.json"
    if graph.is_file() and record_path.is_file():
        return graph, {**json.loads(record_path.read_text()), "cached": True}
    if root.exists():  # an interrupted earlier attempt: begin again
        shutil.rmtree(root)
    root.mkdir(parents=True)
    write_rgb_slide(root / "clean.svs", rgb, mpp=mpp)
    seconds = {}
    for name, args in recipe.steps(root):
        began = time.perf_counter()
        step(name, args)
        seconds[name] = round(time.perf_counter() - began, 1)
    (root / "model.pt").unlink()  # 640 MB that the graph repeats (weights and config); the cache keeps the graph
    history = root / "model.history.jsonl"
    epochs = [json.loads(line) for line in history.read_text().splitlines()] if history.is_file() else []
    record = {"key": key, "mpp": mpp, "recipe": asdict(recipe), "seconds": seconds,
              "minutes": round(sum(seconds.values()) / 60, 2),
              "val_thresholds": [e.get("val_threshold") for e in epochs]}
    write_json(record_path, record)
    return graph, {**record, "cached": False}
