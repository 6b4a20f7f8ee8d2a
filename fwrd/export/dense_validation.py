"""`fwrd-export MODEL --validate-dense SLIDES --annotations DIR`: measure how a model scores densely at the
runtime's geometry and write that record into it, so that `fwrd-run --dense` may use it (issue 21.1).

The model scores every slide twice, exactly as `fwrd-run` would: per tile, and in region passes with the
margin and region side a dense run uses (fwrd.runtime.slide_job.score_slide). Every grid point with a
score in both is labelled from the lesion masks (tumor when the mask marks its tile's centre; a slide
without a mask or annotation is all normal), and the record holds the tile AUROC of both scorings on the
same tiles, the threshold best for the dense scores (best accuracy, the rule fwrd-train uses), and the
geometry: margin, region side, stride. It goes into the model's FWRDConfig (`dense_validation`, and the
threshold as `dense_threshold`): the graph's metadata (its verification set is re-sealed for the rewritten
file, whose scores are unchanged) or the checkpoint's config. An engine takes its config from the graph
it is built from: validate the graph, then build the engine again.

The slides must not be the ones the model was trained on, and must hold at least MIN_TILES tumor and normal
tiles each (fwrd.runtime.dense_trust says what the runtime then accepts).

    record = validate_dense(DenseValidationSettings(Path("rd.onnx"), [Path("val/slides")], [Path("val/annotations")]))
"""

from __future__ import annotations

import datetime
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fwrd import __version__
from fwrd.atomic import atomic_path, write_json
from fwrd.config import META_CONFIG, check_threshold
from fwrd.digest import file_sha256
from fwrd.errors import DataError, DependencyMissing, FwrdError
from fwrd.evaluation.gate import VerificationSet, verification_path
from fwrd.evaluation.masks import find_masks, load_mask
from fwrd.evaluation.patches import best_threshold
from fwrd.evaluation.roc import roc_auc
from fwrd.evaluation.tile_labels import LABEL_LEVEL, tile_labels
from fwrd.runtime.backends import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES, open_backend
from fwrd.runtime.dense_trust import MIN_TILES
from fwrd.runtime.regions import check_geometry, default_margin
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.slide.discover import find_slides


@dataclass
class DenseValidationSettings:
    model: Path  # rd.onnx (fp32 or fp16) or model.pt (run by the torch backend)
    slides: list[Path]  # slides or folders of slides the model was not trained on
    annotations: list[Path] = field(default_factory=list)  # folders of <slide>.xml and/or <slide>_Mask.tif
    output: Path | None = None  # where the model with its record goes (None: the model, rewritten in place)
    stride: int | None = None  # grid step, level pixels (None: tile / 4, the paper's)
    margin: int | None = None  # None: fwrd-run's default (fwrd.runtime.regions.default_margin)
    region: int | None = None  # None: the backend's default region side
    workers: int = 2
    threads: int | None = None

    def __post_init__(self) -> None:
        self.model = Path(self.model)
        if self.model.suffix.lower() in ENGINE_SUFFIXES:
            raise FwrdError(f"{self.model.name} is a TensorRT engine, whose config is the graph's: validate the ONNX "
                            "graph it was built from (--validate-dense), then build the engine again from it")


def validate_dense(settings: DenseValidationSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Score the slides per tile and dense, and return the dense-validation record (nothing written)."""
    slides = find_slides(settings.slides)
    masks = find_masks(settings.annotations) if settings.annotations else {}
    kind = "torch" if settings.model.suffix.lower() in CHECKPOINT_SUFFIXES else "auto"
    with open_backend(settings.model, kind, threads=settings.threads) as tiles, \
            open_backend(settings.model, kind, threads=settings.threads, dense=True, region=settings.region) as dense:
        tile = tiles.config.tile_size
        stride = settings.stride or tile // 4
        margin = default_margin(tile) if settings.margin is None else settings.margin
        check_geometry(dense.region, tile, stride, margin)
        per_tile = RunSettings(stride=stride, workers=settings.workers, progress=False)
        in_regions = RunSettings(stride=stride, workers=settings.workers, progress=False, dense=True,
                                 region=dense.region, margin=margin)
        log(f"validating {settings.model.name} for dense scoring on {len(slides)} slide(s): {tile} px tiles at "
            f"stride {stride}, regions up to {dense.region} px with a {margin} px margin, per tile and dense...")
        labels, scores_tiles, scores_dense = [], [], []
        with tempfile.TemporaryDirectory(prefix="fwrd-dense-validation-") as work:
            for number, path in enumerate(slides, 1):
                a = score_slide(path, tiles, Path(work) / "tiles", per_tile)
                b = score_slide(path, dense, Path(work) / "dense", in_regions, measuring=True)
                grid_a, grid_b = (np.load(r.out_dir / "heatmap.npy") for r in (a, b))
                summary = a.summary
                source = masks.get(path.stem.lower())
                mask = None if source is None else load_mask(source, tuple(summary["slide_dimensions"]),
                                                             level=LABEL_LEVEL).tumor
                cells = tile_labels(mask, grid_a.shape, summary["stride_level0"], summary["tile_level0"])
                scored = np.isfinite(grid_a) & np.isfinite(grid_b)
                labels.append(cells[scored])
                scores_tiles.append(grid_a[scored])
                scores_dense.append(grid_b[scored])
                log(f"[{number}/{len(slides)}] {path.name}: {int(scored.sum())} tiles, "
                    f"{int(cells[scored].sum())} tumor{'' if source else ' (no mask: all normal)'}")
    is_tumor = np.concatenate(labels)
    tumor, normal = int(is_tumor.sum()), int((~is_tumor).sum())
    if min(tumor, normal) < MIN_TILES:
        raise DataError(f"the validation slides hold {tumor} tumor and {normal} normal tiles; dense validation "
                        f"needs at least {MIN_TILES} of each: give annotated slides with lesions (--annotations)")
    a, b = np.concatenate(scores_tiles), np.concatenate(scores_dense)
    threshold = float(best_threshold(is_tumor, b)[0])
    record = {
        "margin": int(margin), "region": int(dense.region), "stride": int(stride), "slides": len(slides),
        "tiles": int(len(a)), "tumor_tiles": tumor, "auroc_dense": roc_auc(is_tumor, b),
        "auroc_tiles": roc_auc(is_tumor, a), "threshold": check_threshold(threshold, "the best dense threshold"),
        "backend": f"{dense.name} {dense.precision}", "fwrd_version": __version__,
        "validated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "slide_names": [p.stem for p in slides],
    }
    log(f"dense validation: tile AUROC {record['auroc_dense']:.4f} dense, {record['auroc_tiles']:.4f} per tile on "
        f"{len(a)} tiles ({tumor} tumor); dense threshold {threshold:g}")
    return record


def write_record(model: Path, record: dict[str, Any], output: Path | None = None) -> Path:
    """Put `record` (and its threshold as the dense threshold) into the config of `model`, written to
    `output` (default: `model`, atomically); returns the path written."""
    model = Path(model)
    output = Path(output) if output is not None else model
    if model.suffix.lower() in CHECKPOINT_SUFFIXES:
        _rewrite_checkpoint(model, output, record)
    else:
        _rewrite_graph(model, output, record)
    return output


def _with_record(config: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    return {**config, "dense_validation": record, "dense_threshold": record["threshold"]}


def _rewrite_checkpoint(model: Path, output: Path, record: dict[str, Any]) -> None:
    import torch

    from fwrd.model.checkpoint import read_checkpoint

    data = read_checkpoint(model)
    data["config"] = _with_record(data["config"], record)
    with atomic_path(output) as tmp:
        torch.save(data, tmp)


def _rewrite_graph(model: Path, output: Path, record: dict[str, Any]) -> None:
    """The same graph with the record in its metadata; its verification set re-sealed for the new file
    (only when it named the old one: the self-test at load had just checked the graph against it)."""
    try:
        import onnx
    except ImportError:
        raise DependencyMissing("writing the record into an ONNX graph needs onnx: pip install onnx") from None
    graph = onnx.load(str(model), load_external_data=False)
    for prop in graph.metadata_props:
        if prop.key == META_CONFIG:
            prop.value = json.dumps(_with_record(json.loads(prop.value), record), sort_keys=True)
    sidecar = verification_path(model)
    checks = VerificationSet.load(sidecar, file_sha256(model)) if sidecar.is_file() else None
    with atomic_path(output) as tmp:
        onnx.save(graph, str(tmp))
    if checks is not None:
        checks.onnx_sha256 = file_sha256(output)
        checks.save(verification_path(output))
    report = model.with_name(model.name + ".json")
    if report.is_file():  # fwrd-export's figures: the config they name is the graph's
        data = json.loads(report.read_text(encoding="utf-8"))
        data["config"] = _with_record(data.get("config") or {}, record)
        data["onnx"] = output.name
        write_json(output.with_name(output.name + ".json"), data)
