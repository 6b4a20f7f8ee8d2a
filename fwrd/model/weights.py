"""Where the frozen teacher's weights come from: ImageNet (torchvision's file), a local file, or random."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from fwrd.errors import CheckpointError, DependencyMissing, InputNotFound
from fwrd.model.teacher import WideResNetTeacher

IMAGENET_URL = "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth"
IMAGENET_FILE = "wide_resnet50_2-95faca4d.pth"


def load_teacher_weights(teacher: WideResNetTeacher, source: str) -> str:
    """Fill `teacher` from `source` ("imagenet", "random" or a path); returns a label for the config."""
    if source == "random":
        warnings.warn(
            "teacher weights are random: scores are not meaningful for real slides "
            "(use --teacher-weights imagenet for real work)",
            stacklevel=2,
        )
        return "random"
    if source == "imagenet":
        state = _download_imagenet()
        label = "imagenet"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputNotFound(f"teacher weights file not found: {source}")
        state = _read_state_dict(path)
        label = path.name
    missing = apply_teacher_state(teacher, state)
    if missing:
        raise CheckpointError(
            f"teacher weights from {source} lack {len(missing)} WideResNet50-2 tensors (e.g. {missing[0]})"
        )
    return label


def apply_teacher_state(teacher: WideResNetTeacher, state: dict) -> list[str]:
    """Load a torchvision wide_resnet50_2 state dict (layer4/fc ignored); returns the missing keys."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        result = teacher.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"teacher weights do not fit WideResNet50-2: {str(exc).splitlines()[0]}") from None
    return list(result.missing_keys)


def _download_imagenet() -> dict:
    try:
        return torch.hub.load_state_dict_from_url(
            IMAGENET_URL, map_location="cpu", progress=True, check_hash=True, file_name=IMAGENET_FILE
        )
    except Exception as exc:  # URLError, HTTPError, hash mismatch, socket timeouts...
        cache = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE
        raise DependencyMissing(
            f"could not download the ImageNet teacher weights ({type(exc).__name__}); put {IMAGENET_FILE} "
            f"at {cache} or pass --teacher-weights /path/to/{IMAGENET_FILE}"
        ) from None


def _read_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: does not hold a state dict")
    return state
