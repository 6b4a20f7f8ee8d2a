"""Which torch device and precision a command runs on: one rule for training, the torch backend and the
benchmark's naive loop, so `--device cuda` on a machine without a GPU says the same thing everywhere."""

from __future__ import annotations

import torch

from fwrd.errors import DependencyMissing, FwrdError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when this PyTorch sees a GPU, else cpu; "cuda" without one is DependencyMissing."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DependencyMissing(
                f"--device {name}: this PyTorch ({torch.__version__}) sees no CUDA GPU; "
                "use --device cpu, or install a CUDA build of PyTorch on a machine with an NVIDIA driver"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise FwrdError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N")


def resolve_precision(name: str, device: torch.device) -> str:
    """"auto" -> fp16 on CUDA (the convolutions in half, norms and cosine in fp32), fp32 on the CPU."""
    name = (name or "auto").lower()
    if name not in PRECISIONS:
        raise FwrdError(f"unknown precision {name!r}; the torch backend runs fp32 or fp16")
    if name == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return name
