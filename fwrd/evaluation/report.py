"""Writing evaluation results: JSON of the figures, PNG plots (both atomically) and short printed tables.

Each writer goes through a temporary file in the destination folder and `os.replace`, so an
interrupted evaluation never leaves a truncated `froc.json` that looks complete.

    write_json(out / "froc.json", result.to_dict())
    save_png(froc_figure(...), out / "froc.png")
    print(froc_table(result))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from fwrd import __version__, atomic
from fwrd.errors import FwrdError
from fwrd.evaluation.froc import FrocResult
from fwrd.evaluation.patches import PatchMetrics
from fwrd.evaluation.roc import SlideEvaluation


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write `data` (plus the fwrd version) as indented JSON, atomically."""
    payload = {**data, "fwrd_version": __version__}
    _parent(path)
    atomic.write_json(path, payload)
    return Path(path)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Save a Pillow image as PNG, atomically."""
    _parent(path)
    with atomic.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def _parent(path: str | Path) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FwrdError(f"cannot write to {Path(path).parent}: {exc.strerror or exc}") from None


def _some(names: list[str], shown: int = 5) -> str:
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def froc_table(result: FrocResult) -> str:
    """The six operating points and the FROC score, with the cohort counts."""
    data = result.to_dict()
    rates = "".join(f"{(f'1/{round(1 / r)}' if r < 1 else f'{r:g}'):>8}" for r in result.rates)
    sens = "".join(f"{s:>8.4f}" for s in result.sensitivities)
    lines = [
        f"Lesion FROC (Camelyon16, level 5, 0.243 um/px): {data['slides']} slides "
        f"({data['tumor_slides']} tumor, {data['normal_slides']} normal), {data['lesions']} lesions "
        f"({data['detected_lesions']} detected), {data['itcs']} ITCs ignored, "
        f"{data['detections']} detections",
        f"  FPs/slide  {rates}     FROC",
        f"  sens       {sens}   {result.score:.4f}",
    ]
    if result.without_detections_file:
        lines.append(f"  note: no detections file for {len(result.without_detections_file)} slide(s), "
                     f"counted with no detections: {_some(result.without_detections_file)}")
    if result.masks_not_evaluated:
        lines.append(f"  note: {len(result.masks_not_evaluated)} mask(s) have no detections file and "
                     f"were not evaluated ({_some(result.masks_not_evaluated)}); "
                     "pass the reference to count them")
    if result.excluded:
        lines.append(f"  excluded: {', '.join(result.excluded)}")
    return "\n".join(lines)


def slides_table(result: SlideEvaluation) -> str:
    """Slide-level AUC with the cohort counts."""
    tumor = int(result.labels.sum())
    line = (f"Slide classification (Camelyon16 task 1): {len(result.names)} slides "
            f"({tumor} tumor, {len(result.names) - tumor} normal)  AUC {result.auc:.4f}")
    if result.excluded:
        line += f"\n  excluded: {', '.join(result.excluded)}"
    return line


def patches_table(metrics: PatchMetrics) -> str:
    """Patch accuracy at the model threshold and at the best threshold, and the AUC."""
    return "\n".join([
        f"Patch classification: {metrics.normal + metrics.tumor} patches "
        f"({metrics.tumor} tumor, {metrics.normal} normal)",
        f"  at model threshold {metrics.threshold:.4g}: accuracy {metrics.accuracy:.4f} "
        f"(sensitivity {metrics.sensitivity:.4f}, specificity {metrics.specificity:.4f})",
        f"  at best threshold  {metrics.best_threshold:.4g}: accuracy {metrics.best_accuracy:.4f}",
        f"  AUC {metrics.auc:.4f}",
    ])
