"""Every random state training draws from, saved in model.last.pt so that `--resume` continues the
very same run: Python's, NumPy's and torch's global generators (and CUDA's), and the DataLoader's own
generator, from which the shuffle order and the worker seeds come.

Stored as tensors, ints and strings only, so `torch.load(weights_only=True)` reads them back.

    state = capture_rng(loader_generator)     # after an epoch, into last.pt
    restore_rng(state, loader_generator)      # on --resume, before the next epoch
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng(loader: torch.Generator) -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    numpy = np.random.get_state(legacy=False)
    return {
        "python": [version, list(mt), gauss],
        "numpy": {
            "bit_generator": numpy["bit_generator"],
            "key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)),
            "pos": int(numpy["state"]["pos"]),
            "has_gauss": int(numpy["has_gauss"]),
            "gauss": float(numpy["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader.get_state(),
    }


def restore_rng(state: dict[str, Any], loader: torch.Generator) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    numpy = state["numpy"]
    np.random.set_state({
        "bit_generator": numpy["bit_generator"],
        "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
        "has_gauss": numpy["has_gauss"],
        "gauss": numpy["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    loader.set_state(state["loader"])
