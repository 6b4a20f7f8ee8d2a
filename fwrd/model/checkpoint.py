"""Checkpoints: one file holds the network and its FWRDConfig.

The bottleneck and student always travel inside. The frozen teacher travels inside too unless its
weights are torchvision's published ImageNet file: then the checkpoint names that file (name, URL,
sha256; `teacher_file`) and loading takes it from the torch hub cache, checked against the sha256,
with one line saying where to put it when it is missing (fwrd.model.weights). That saves 100 MB per
file; a random teacher (which cannot be rebuilt) or a custom one is stored as before, and older
checkpoints that carry the ImageNet teacher still load.
Reference FW-RD / RD4AD checkpoints (a dict with `bn` and `decoder` state dicts) import with
`import_reference`, which needs the teacher's weights from elsewhere.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from fwrd import __version__
from fwrd.atomic import atomic_path
from fwrd.config import FWRDConfig
from fwrd.errors import CheckpointError, FwrdError, InputNotFound
from fwrd.model.network import ReverseDistillation
from fwrd.model.weights import TeacherFile, load_teacher_weights, named_file, restore_teacher

CHECKPOINT_FORMAT = "fwrd-checkpoint-v1"
REFERENCE_UNUSED = ("conv4.", "bn4.")  # defined and never used by the reference bottleneck


def save_checkpoint(path: str | Path, model: ReverseDistillation, config: FWRDConfig, **extra: Any) -> Path:
    """Write atomically (temp file + rename): an interrupted save never leaves a half checkpoint."""
    path = Path(path)
    named = named_file(model.teacher)
    teacher = {"teacher_file": named.to_dict()} if named else {"teacher": model.teacher.state_dict()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fwrd_version": __version__,
        "config": config.to_dict(),
        **teacher,
        "bottleneck": model.bottleneck.state_dict(),
        "student": model.student.state_dict(),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, with one-line errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        reason = "truncated or corrupt" if _looks_like_zip(path) else "not a PyTorch checkpoint"
        raise CheckpointError(f"{path}: {reason} ({type(exc).__name__})") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not an fwrd checkpoint (holds a {type(data).__name__})")
    return data


def load_checkpoint(path: str | Path) -> tuple[ReverseDistillation, FWRDConfig]:
    """Return (model in eval mode, config) from an fwrd checkpoint."""
    return model_from_checkpoint(read_checkpoint(path), path)


def model_from_checkpoint(data: dict[str, Any], path: str | Path = "checkpoint") -> tuple[ReverseDistillation, FWRDConfig]:
    """(model, config) from a checkpoint dict already read (so `--resume` reads its file once)."""
    if data.get("format") != CHECKPOINT_FORMAT:
        if "bn" in data and "decoder" in data:
            raise CheckpointError(
                f"{path}: a reference FW-RD/RD4AD checkpoint; convert it first with "
                "`fwrd import-reference` (it needs the teacher weights)"
            )
        raise CheckpointError(f"{path}: not an fwrd checkpoint")
    try:
        config = FWRDConfig.from_dict(data["config"])
    except (FwrdError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: invalid configuration in checkpoint ({exc})") from None
    model = ReverseDistillation(config.architecture)
    if "teacher" not in data and "teacher_file" in data:
        restore_teacher(model.teacher, TeacherFile.from_dict(data["teacher_file"], path), path)
    else:
        _load_part(path, model.teacher, data.get("teacher"), "teacher")
    for part in ("bottleneck", "student"):
        _load_part(path, getattr(model, part), data.get(part), part)
    return model.eval(), config


def import_reference(
    path: str | Path, teacher_weights: str, config: FWRDConfig | None = None
) -> tuple[ReverseDistillation, FWRDConfig]:
    """Build a model from a reference checkpoint ({'bn': ..., 'decoder': ...}) and teacher weights."""
    data = read_checkpoint(path)
    if not ("bn" in data and "decoder" in data):
        raise CheckpointError(f"{path}: not a reference FW-RD/RD4AD checkpoint (no 'bn' and 'decoder')")
    bn = {k: v for k, v in data["bn"].items() if not k.startswith(REFERENCE_UNUSED)}
    architecture = detect_architecture(bn, path)
    config = (config or FWRDConfig()).replace(architecture=architecture)
    model = ReverseDistillation(architecture)
    config = config.replace(teacher_weights=load_teacher_weights(model.teacher, teacher_weights).label)
    _load_part(path, model.bottleneck, bn, "bn")
    _load_part(path, model.student, data["decoder"], "decoder")
    return model.eval(), config


def detect_architecture(bottleneck_state: dict, path: str | Path = "checkpoint") -> str:
    """FW-RD's first bottleneck shortcut is 3x3, RD4AD's 1x1."""
    weight = bottleneck_state.get("bn_layer.0.downsample.0.weight")
    if weight is None or weight.ndim != 4:
        raise CheckpointError(f"{path}: bottleneck state lacks bn_layer.0.downsample.0.weight")
    return "fwrd" if weight.shape[-1] == 3 else "rd4ad"


def _load_part(path: str | Path, module: torch.nn.Module, state: Any, name: str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint has no '{name}' weights")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0].rstrip(":. ")
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: '{name}' weights do not match the architecture ({first}: {detail})") from None


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"
