"""summary.json: the slide's verdict and a manifest of how it was obtained; written last.

Because every other output is written before it (each atomically), a summary.json whose `run_key`
matches the current model and settings means the slide's outputs are complete: that is what
`--resume` checks. Before a slide is rescored its old summary.json is removed first, so a folder
never looks complete while it is being rewritten.
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


def read_summary(out_dir: Path) -> dict[str, Any] | None:
    try:
        with open(out_dir / SUMMARY, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def complete_summary(out_dir: Path, run_key: str) -> dict[str, Any] | None:
    """The summary of complete outputs made with `run_key`, else None."""
    summary = read_summary(out_dir)
    if summary is None or summary.get("run_key") != run_key:
        return None
    if not all((out_dir / name).is_file() for name in OUTPUT_FILES):
        return None
    return summary
