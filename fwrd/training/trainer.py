"""The FW-RD trainer: frozen teacher, bottleneck + student trained with the focal-distillation loss.

Each epoch: one pass over the training patches (Adam, betas (0.5, 0.999)), BatchNorm statistics
re-estimated, then validation: patch scores (mean summed anomaly map, as at inference), patch AUROC
and accuracy at the threshold that is best on validation (patches with context, see context.py, are
also scored dense, with a threshold of their own). The best epoch (selection.py: validation
accuracy, the paper's rule; AUROC breaks ties; a full tie keeps the earlier epoch) is `model.pt`, with
that threshold in its config. The last epoch is `<name>.last.pt`, with the optimizer and every random
state (rng.py), so `--resume` continues the same run; it is removed when the run finishes unless
`keep_last`. `<name>.history.jsonl` holds one JSON line per epoch. Every phase shows progress.

    records = train(TrainSettings(train_dir="patches/", out="model.pt", epochs=5))
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fwrd.atomic import remove_stale_temps, write_text
from fwrd.config import FWRDConfig
from fwrd.errors import CheckpointError, DataError, FwrdError
from fwrd.evaluation.patches import best_threshold
from fwrd.evaluation.roc import roc_auc
from fwrd.model.checkpoint import (
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from fwrd.model.device import resolve_device
from fwrd.model.network import ReverseDistillation
from fwrd.model.preprocess import normalise_tiles
from fwrd.model.weights import load_teacher_weights
from fwrd.training.context import context_loss, context_scores, lone_tiles
from fwrd.training.dataset import (
    PatchDataset,
    PatchSet,
    load_patch_set,
    stratified_split,
)
from fwrd.training.rng import capture_rng, restore_rng
from fwrd.training.selection import BestEpoch


@dataclass
class TrainSettings:
    train_dir: Path
    out: Path
    val_dir: Path | None = None
    epochs: int = 50  # paper (the reference code: 10)
    batch_size: int = 32
    lr: float = 1e-5  # paper (the reference code: 1e-6)
    alpha: float = 0.1
    gamma: float = 2.0
    teacher_weights: str = "imagenet"
    architecture: str = "fwrd"
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    val_fraction: float = 0.2
    workers: int = 0
    progress: bool = True
    keep_last: bool = False  # keep <name>.last.pt (optimizer and random states) after a finished run
    amp: bool = False  # bf16 autocast for the training steps' forward pass (validation stays fp32)

    def __post_init__(self) -> None:
        self.train_dir = Path(self.train_dir)
        self.out = Path(self.out)
        self.val_dir = Path(self.val_dir) if self.val_dir else None
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise FwrdError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0:
            raise FwrdError("--lr must be positive")
        if not 0 < self.alpha < 1:
            raise FwrdError("--alpha must lie strictly between 0 and 1")
        if self.gamma < 0:
            raise FwrdError("--gamma must be >= 0")


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    val_auroc: float | None
    val_accuracy: float
    val_threshold: float
    seconds: float  # training pass and BatchNorm re-estimation (what patches_per_second counts)
    patches_per_second: float
    best: bool
    selection: str = ""  # why model.pt is (or stays) the epoch it is
    phases: dict[str, float] = field(default_factory=dict)  # seconds: train, batchnorm, validation, saving
    val_auroc_dense: float | None = None  # patches with context: the tiles scored inside their surroundings
    val_threshold_dense: float | None = None


def sidecar(out: Path, suffix: str) -> Path:
    """`model.pt` -> `model.last.pt`, `model.history.jsonl`."""
    return out.with_name(out.stem + suffix)


def train(settings: TrainSettings, log=print) -> list[EpochRecord]:
    """Train; write `model.pt` and `model.history.jsonl` (and `model.last.pt` while running, or for
    good with keep_last); returns this run's epoch records."""
    torch.manual_seed(settings.seed)
    remove_stale_temps(settings.out.parent, [settings.out.name, *(sidecar(settings.out, suffix).name
                                                                  for suffix in (".last.pt", ".history.jsonl"))])
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    train_set, val_set = _datasets(settings)
    device = resolve_device(settings.device)
    context = f" with {train_set.context} px context (lone and in context)" if train_set.context else ""
    log(
        f"training on {train_set.n_normal} normal + {train_set.n_tumor} tumor patches of "
        f"{train_set.tile_size} px{context}, validating on {val_set.n_normal} + {val_set.n_tumor}, device {device}"
    )
    state = _initial_state(settings, train_set)
    if settings.amp:
        log("mixed precision: bf16 autocast for the training steps' forward pass; the loss, the weights, "
            "BatchNorm re-estimation and validation stay fp32"
            + ("" if device.type == "cuda" else " (on a CPU without bf16 units this is rarely faster)"))
    model, config, optimizer, start_epoch, best, history = (
        state["model"], state["config"], state["optimizer"], state["epoch"], state["best"], state["history"]
    )
    model.to(device)
    _optimizer_to(optimizer, device)
    generator = torch.Generator().manual_seed(settings.seed)
    if state["rng"] is not None:
        restore_rng(state["rng"], generator)
    elif start_epoch:
        generator.manual_seed(settings.seed + start_epoch)
        log(f"note: {sidecar(settings.out, '.last.pt').name} predates saved random states; from epoch "
            f"{start_epoch + 1} on the shuffle differs from an uninterrupted run")
    loader = torch.utils.data.DataLoader(
        PatchDataset(train_set),
        batch_size=settings.batch_size,
        shuffle=True,
        num_workers=settings.workers,
        drop_last=False,
        generator=generator,
    )
    history_path = sidecar(settings.out, ".history.jsonl")
    last_path = sidecar(settings.out, ".last.pt")
    records: list[EpochRecord] = []
    for epoch in range(start_epoch + 1, settings.epochs + 1):
        phases: dict[str, float] = {}
        with _timed(phases, "train"):
            loss = _train_epoch(model, loader, optimizer, config, device, epoch, settings)
        with _timed(phases, "batchnorm"):
            recalibrate_batchnorm(model, loader, config, device, progress=_bar_label(settings, epoch, "BatchNorm"))
        with _timed(phases, "validation"):
            scores, dense = score_patches(model, val_set, config, device, settings.batch_size,
                                          progress=_bar_label(settings, epoch, "validation"))
        is_tumor = val_set.labels == 0
        threshold, accuracy = best_threshold(is_tumor, scores)
        auroc = _auroc(is_tumor, scores)
        is_best, why = best.consider(epoch, accuracy, auroc)
        seconds = phases["train"] + phases["batchnorm"]
        record = EpochRecord(epoch, loss, auroc, accuracy, threshold, seconds, len(train_set.files) / seconds,
                             is_best, why, phases)
        if dense is not None:
            record.val_auroc_dense = _auroc(is_tumor, dense)
            record.val_threshold_dense = float(best_threshold(is_tumor, dense)[0])
        with _timed(phases, "saving"):
            with tqdm(total=1 + is_best, desc=f"epoch {epoch}: saving", unit="file", leave=False,
                      disable=not settings.progress) as bar:
                if is_best:
                    config = config.replace(threshold=float(threshold), dense_threshold=record.val_threshold_dense)
                    save_checkpoint(settings.out, model, config, epoch=epoch, metrics=asdict(record))
                    bar.update()
                history.append(asdict(record))
                save_checkpoint(
                    last_path, model, config, epoch=epoch, optimizer=optimizer.state_dict(),
                    best_key=list(best.key), best_epoch=best.epoch, history=history, rng=capture_rng(generator),
                    amp=settings.amp,
                )
                bar.update()
        history[-1]["phases"] = record.phases = {k: round(v, 2) for k, v in phases.items()}
        _write_history(history_path, history)
        records.append(record)
        timing = ", ".join(f"{name} {secs:.0f} s" for name, secs in record.phases.items())
        dense_part = ("" if dense is None else f" (dense: val AUROC {_shown(record.val_auroc_dense)}, "
                      f"threshold {record.val_threshold_dense:.4f})")
        log(
            f"epoch {epoch}/{settings.epochs}: loss {loss:.4f}, val AUROC {_shown(auroc)}, accuracy "
            f"{accuracy:.4f} at threshold {threshold:.4f}{dense_part}, {record.patches_per_second:.1f} patches/s "
            f"({timing}); {why}"
        )
    if records and not settings.keep_last and last_path.exists():
        last_path.unlink()
        log(f"removed {last_path.name} (only needed to resume; pass --keep-last to keep it)")
    return records


def _auroc(is_tumor: np.ndarray, scores: np.ndarray) -> float | None:
    return roc_auc(is_tumor, scores) if 0 < is_tumor.sum() < len(is_tumor) else None


def _shown(auroc: float | None) -> str:
    return "n/a" if auroc is None else f"{auroc:.4f}"


def _bar_label(settings: TrainSettings, epoch: int, phase: str) -> str | None:
    return f"epoch {epoch}: {phase}" if settings.progress else None


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = time.perf_counter() - began


@torch.no_grad()
def score_patches(model: ReverseDistillation, patches: PatchSet, config: FWRDConfig, device: torch.device,
                  batch_size: int = 32, progress: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """FW-RD scores (higher = more anomalous = tumor) of every patch's lone tile, in file order, and for
    patches with context the dense scores of the tiles inside it (else None); a progress bar labelled
    `progress` when given."""
    model.eval()
    loader = torch.utils.data.DataLoader(PatchDataset(patches), batch_size=batch_size, shuffle=False)
    scores, dense = [], []
    for tiles, _ in tqdm(loader, desc=progress, unit="batch", leave=False, disable=progress is None):
        per_tile, in_context = context_scores(model, tiles.to(device), config)
        scores.append(per_tile.cpu().numpy())
        if in_context is not None:
            dense.append(in_context.cpu().numpy())
    per_tile = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    return per_tile, (np.concatenate(dense) if dense else None)


@torch.no_grad()
def recalibrate_batchnorm(model: ReverseDistillation, loader, config: FWRDConfig, device: torch.device,
                          max_batches: int = 16, progress: str | None = None) -> None:
    """Re-estimate the bottleneck's and student's BatchNorm statistics for the final weights.

    Running averages (momentum 0.1) lag the weights: after the few hundred steps of a short run they
    still mix in early, untrained statistics, and eval-mode scores go wrong (even inverted). A forward
    pass over training batches with a cumulative average ("precise BN") fixes that for little cost;
    over the paper's 50 epochs it changes next to nothing.
    """
    norms = [m for part in (model.bottleneck, model.student) for m in part.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    model.train()
    with tqdm(total=min(max_batches, len(loader)), desc=progress, unit="batch", leave=False,
              disable=progress is None) as bar:
        for n, (tiles, _) in enumerate(loader):
            if n >= max_batches:
                break
            tiles = tiles.to(device)
            model(normalise_tiles(lone_tiles(tiles, config.context), config))
            if config.context:  # both views the training steps showed the student
                model(normalise_tiles(tiles, config))
            bar.update()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def _train_epoch(model, loader, optimizer, config, device, epoch, settings) -> float:
    model.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not settings.progress)
    for tiles, labels in bar:
        loss = context_loss(model, tiles.to(device), labels.to(device), config, autocast=settings.amp)
        if not torch.isfinite(loss):
            raise FwrdError(f"loss became {loss.item()} in epoch {epoch}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        count += len(labels)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _datasets(settings: TrainSettings) -> tuple[PatchSet, PatchSet]:
    patches = load_patch_set(settings.train_dir)
    if settings.val_dir is not None:
        val = load_patch_set(settings.val_dir)
        if val.tile_size != patches.tile_size:
            raise DataError(f"validation patches are {val.tile_size} px, training patches {patches.tile_size} px")
        if val.context != patches.context:
            raise DataError(f"validation patches carry {val.context} px of context, training patches "
                            f"{patches.context} px (fwrd-patches --context): extract both the same way")
        return patches, val
    if len(patches.files) < 4:
        raise DataError(f"{settings.train_dir}: too few patches ({len(patches.files)}) to hold out a validation set")
    return stratified_split(patches, settings.val_fraction, settings.seed)


def _initial_state(settings: TrainSettings, patches: PatchSet) -> dict[str, Any]:
    last = sidecar(settings.out, ".last.pt")
    if settings.resume:
        if not last.is_file():
            raise CheckpointError(f"--resume: no {last} to resume from (a finished run removes it unless "
                                  "it was trained with --keep-last)")
        data = read_checkpoint(last)
        model, config = model_from_checkpoint(data, last)
        if config.tile_size != patches.tile_size:
            raise DataError(f"--resume: checkpoint is for {config.tile_size} px tiles, patches are {patches.tile_size} px")
        if config.context != patches.context:
            raise DataError(f"--resume: checkpoint was trained with {config.context} px of context, patches carry "
                            f"{patches.context} px")
        if "optimizer" not in data:
            raise CheckpointError(f"--resume: {last} holds no optimizer state")
        optimizer = _optimizer(model, settings)
        optimizer.load_state_dict(data["optimizer"])
        history = list(data.get("history", []))
        if bool(data.get("amp", False)) != settings.amp:
            was = "with" if data.get("amp") else "without"
            raise DataError(f"--resume: {last} was trained {was} --amp; resume it the same way, or the result "
                            "would differ from an uninterrupted run")
        return {
            "model": model, "config": config, "optimizer": optimizer, "epoch": int(data["epoch"]),
            "best": BestEpoch.resumed(data.get("best_key"), data.get("best_epoch"), history),
            "history": history, "rng": data.get("rng"),
        }
    model = ReverseDistillation(settings.architecture)
    teacher = load_teacher_weights(model.teacher, settings.teacher_weights)
    config = FWRDConfig(
        tile_size=patches.tile_size, level=patches.level, mpp=patches.mpp, alpha=settings.alpha, gamma=settings.gamma,
        architecture=settings.architecture, teacher_weights=teacher.label, context=patches.context,
    )
    history_path = sidecar(settings.out, ".history.jsonl")
    if history_path.exists():
        history_path.unlink()
    return {"model": model, "config": config, "optimizer": _optimizer(model, settings), "epoch": 0,
            "best": BestEpoch(), "history": [], "rng": None}


def _optimizer(model: ReverseDistillation, settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.trainable_parameters(), lr=settings.lr, betas=(0.5, 0.999))


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for k, v in state.items():
            if torch.is_tensor(v):
                state[k] = v.to(device)


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """The whole history, rewritten atomically: after a kill it matches model.last.pt line for line."""
    lines = [json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})
             for r in history]
    write_text(path, "".join(line + "\n" for line in lines))
