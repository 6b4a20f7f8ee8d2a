"""File digests, at the bottom of the house: checkpoints, graphs, engines and teacher weights are named by
their sha256 in every record fwrd writes, and every layer (model, runtime, export, benchmark) hashes them."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read in chunks (a 460 MB model never sits in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
