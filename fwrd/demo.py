"""The embedded end-to-end demo: synthetic slides -> patches -> training -> export -> run -> evaluation.

Everything runs on the CPU from nothing but the package: slides are generated, the teacher is random
(so the numbers say the pipeline works, not how FW-RD does on real slides). The same steps, with the
same settings, make the model the test suite checks (validation patch AUROC >= 0.95).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class DemoPlan:
    """Sized to finish in a few minutes on a 2-core CPU."""

    n_tumor_slides: int = 3
    n_normal_slides: int = 1
    slide_size: int = 4096
    tile: int = 64
    normal_patches: int = 200  # 10:1 normal:tumor, as in the paper
    tumor_patches: int = 20
    epochs: int = 3
    lr: float = 1e-3  # the paper's 1e-5 needs its 50 epochs; the demo has three
    batch_size: int = 32
    seed: int = 0


def make_patches(slides: Path, annotations: Path, out: Path, plan: DemoPlan, progress: bool = False):
    from fwrd.training.patches import extract_patches

    return extract_patches(
        [slides], out, annotations_dir=annotations, n_normal=plan.normal_patches, n_tumor=plan.tumor_patches,
        tile=plan.tile, level=0, seed=plan.seed, overwrite=True, progress=progress,
    )


def train_model(patches: Path, out: Path, plan: DemoPlan, log: Callable[[str], None] = print, progress: bool = False):
    from fwrd.training.trainer import TrainSettings, train

    settings = TrainSettings(
        train_dir=patches, out=out, epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr,
        teacher_weights="random", seed=plan.seed, progress=progress,
    )
    return train(settings, log=log)
