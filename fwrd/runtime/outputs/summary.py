"""summary.json: the slide's verdict and a manifest of how it was obtained; written last.

Because every other output is written before it (each atomically, in a staging folder that is
swapped in whole: slide_folder.py), a slide folder with a readable summary.json and every output file
is complete (`read_complete`: what slides.csv and fwrd-eval use). `--resume` also needs its `run_key`
(model and settings) and `slide_identity` (which slide file, fwrd.slide.identity) to match.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fwrd import __version__
from fwrd.atomic import write_json

SUMMARY = "summary.json"
OUTPUT_FILES = (
    "tiles.csv", "heatmap.npy", "heatmap.png", "overlay.png", "detections.csv", "tumor.geojson", SUMMARY,
)


def slide_score(scores: np.ndarray, threshold: float) -> float:
    """The paper's slide score: mean of the tile scores >= threshold, 0 when there are none."""
    scores = np.asarray(scores, np.float64)
    above = scores[np.isfinite(scores) & (scores >= threshold)]
    return float(above.mean()) if above.size else 0.0


def versions() -> dict[str, str]:
    out = {"fwrd": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for name in ("onnxruntime", "tensorrt", "openslide", "tifffile", "imagecodecs"):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version:
            out[name] = str(version)
    openslide = sys.modules.get("openslide")
    if openslide is not None and getattr(openslide, "__library_version__", None):
        out["libopenslide"] = str(openslide.__library_version__)
    return out


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: map them to null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    write_json(out_dir / SUMMARY, finite_or_none(summary))


def read_json_dict(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None when missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_summary(out_dir: Path) -> dict[str, Any] | None:
    return read_json_dict(out_dir / SUMMARY)


def read_complete(out_dir: Path) -> dict[str, Any] | None:
    """The summary of a complete slide folder (summary.json with a score, every output file), else None."""
    summary = read_summary(out_dir)
    if summary is None or not isinstance(summary.get("score"), (int, float)):
        return None
    if not all((out_dir / name).is_file() for name in OUTPUT_FILES):
        return None
    return summary


def complete_summary(out_dir: Path, run_key: str, slide_identity: str) -> dict[str, Any] | None:
    """The summary of complete outputs made with `run_key` from this very slide file, else None."""
    summary = read_complete(out_dir)
    if summary is None or summary.get("run_key") != run_key or summary.get("slide_identity") != slide_identity:
        return None
    return summary
