"""Where the frozen teacher's weights come from: ImageNet (torchvision's file), a local file, or random.

The teacher never trains, so when its weights are torchvision's published file a checkpoint need not
carry them (100 MB in every model.pt and model.last.pt): it names the file instead (`TeacherFile`:
name, download address, sha256) and `restore_teacher` reloads it from the torch hub cache, checking
the sha256. A random teacher cannot be rebuilt and a custom file may be gone, so those travel inside.

    source = load_teacher_weights(model.teacher, "imagenet")   # source.label -> config.teacher_weights
    named_file(model.teacher)            # the TeacherFile save_checkpoint names, or None: store the weights

Only the two loaders that prove the weights are the published file's (`load_teacher_weights`,
`restore_teacher`) mark the module with it; weights set any other way are never named.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fwrd.errors import CheckpointError, DependencyMissing, InputNotFound
from fwrd.model.teacher import WideResNetTeacher
from fwrd.digest import file_sha256

IMAGENET_URL = "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth"
IMAGENET_FILE = "wide_resnet50_2-95faca4d.pth"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch hub's convention: the name carries a sha256 prefix
_MARK = "_fwrd_teacher_file"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TeacherFile:
    """A published weights file, named instead of stored: found again by name, proven by sha256."""

    name: str
    url: str
    sha256: str
    seen_at: str = ""  # where training found it (tried after the hub cache)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str | Path = "checkpoint") -> "TeacherFile":
        """The reference a checkpoint carries, trusted only as a name: a checkpoint names torchvision's
        published file and nothing else (`named_file` never names another), so a name that is a path
        (`../../etc/shadow`) or another file is refused, the download address is ours, never the file's,
        and where training saw the file is kept only when it is that file's name (issue 26.6)."""
        try:
            name, sha256 = str(data["name"]), str(data["sha256"])
            seen_at = str(data.get("seen_at", ""))
        except (TypeError, KeyError, AttributeError):
            raise CheckpointError(f"{where}: its teacher reference is incomplete") from None
        if name != IMAGENET_FILE:
            raise CheckpointError(f"{where}: its teacher reference names {name[:80]!r}; a checkpoint may only name "
                                  f"torchvision's {IMAGENET_FILE} (other teachers travel inside it)")
        if not _SHA256.fullmatch(sha256):
            raise CheckpointError(f"{where}: its teacher reference holds no valid sha256")
        seen = Path(seen_at)
        if not (seen.is_absolute() and seen.name == IMAGENET_FILE and ".." not in seen.parts):
            seen_at = ""
        return cls(IMAGENET_FILE, IMAGENET_URL, sha256, seen_at)


@dataclass(frozen=True)
class TeacherSource:
    label: str  # for FWRDConfig.teacher_weights: "imagenet", "random" or the file's name
    file: TeacherFile | None  # set: checkpoints name this file; None: they carry the weights


def hub_cache(name: str | None = None) -> Path:
    """Where torch.hub keeps (and looks for) downloaded weights: $TORCH_HOME/hub/checkpoints/<name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / (name or IMAGENET_FILE)


def load_teacher_weights(teacher: WideResNetTeacher, source: str) -> TeacherSource:
    """Fill `teacher` from `source` ("imagenet", "random" or a path); say how checkpoints keep it."""
    if source == "random":
        warnings.warn(
            "teacher weights are random: scores are not meaningful for real slides "
            "(use --teacher-weights imagenet for real work)",
            stacklevel=2,
        )
        return TeacherSource("random", None)
    if source == "imagenet":
        state = _download_imagenet()
        path, label = hub_cache(), "imagenet"
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
    named = _published(path)
    setattr(teacher, _MARK, named)
    return TeacherSource("imagenet" if named else label, named)


def restore_teacher(teacher: WideResNetTeacher, file: TeacherFile, checkpoint: str | Path) -> None:
    """Load the named teacher from the hub cache (or where training saw it), sha256-checked; one line
    saying which file to put where when it is not on this machine."""
    candidates = list(dict.fromkeys([hub_cache(file.name), *([Path(file.seen_at)] if file.seen_at else [])]))
    wrong = []
    for path in candidates:
        if path.is_file():
            if file_sha256(path) == file.sha256:
                apply_teacher_state(teacher, _read_state_dict(path))
                setattr(teacher, _MARK, file)
                return
            wrong.append(path)
    if wrong:
        raise CheckpointError(
            f"{checkpoint}: {wrong[0]} is not the teacher this model was trained with (sha256 differs from "
            f"{file.sha256[:12]}...); put the right {file.name} ({file.url}) at {hub_cache(file.name)}"
        )
    raise DependencyMissing(
        f"{checkpoint} names its ImageNet teacher instead of carrying it, and {file.name} is not on this "
        f"machine: put it at {hub_cache(file.name)} (download it from {file.url})"
    )


def named_file(teacher: WideResNetTeacher) -> TeacherFile | None:
    """The published file `teacher`'s weights were proven to come from, if any."""
    return getattr(teacher, _MARK, None)


def apply_teacher_state(teacher: WideResNetTeacher, state: dict) -> list[str]:
    """Load a torchvision wide_resnet50_2 state dict (layer4/fc ignored); returns the missing keys."""
    setattr(teacher, _MARK, None)  # whatever named it before no longer describes these weights
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        result = teacher.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"teacher weights do not fit WideResNet50-2: {str(exc).splitlines()[0]}") from None
    return list(result.missing_keys)


def _published(path: Path) -> TeacherFile | None:
    """torchvision's ImageNet file (its name, and a sha256 that starts with the prefix in that name, the
    check torch.hub itself makes), wherever it lies; None for any other file."""
    match = _HASH_IN_NAME.search(path.name)
    if path.name != IMAGENET_FILE or match is None:
        return None
    sha = file_sha256(path)
    if not sha.startswith(match.group(1)):
        return None
    return TeacherFile(IMAGENET_FILE, IMAGENET_URL, sha, str(path.resolve()))


def _download_imagenet() -> dict:
    try:
        return torch.hub.load_state_dict_from_url(
            IMAGENET_URL, map_location="cpu", progress=True, check_hash=True, file_name=IMAGENET_FILE
        )
    except Exception as exc:  # URLError, HTTPError, hash mismatch, socket timeouts...
        raise DependencyMissing(
            f"could not download the ImageNet teacher weights ({type(exc).__name__}); put {IMAGENET_FILE} "
            f"at {hub_cache()} or pass --teacher-weights /path/to/{IMAGENET_FILE}"
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
