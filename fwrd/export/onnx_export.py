"""Write the fused graph to one self-contained `.onnx` file with fwrd's metadata.

torch.onnx's dynamo exporter is tried first; on failure the legacy TorchScript exporter is used (both
are verified against PyTorch afterwards — see `fwrd.export.verify`). Weights stay inside the file
(~115 M parameters fit under protobuf's 2 GB), so no `.onnx.data` sidecar is ever needed.

The input is dynamic in batch, height and width (height and width multiples of 32, the network's
stride), so one file scores tiles and, for `fwrd-run --dense`, whole regions of a slide. Its symbolic
dimensions are named `batch`, `height`, `width` and `height/4` ... on the outputs.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import onnx
import torch

from fwrd import __version__
from fwrd.atomic import atomic_path
from fwrd.config import (
    FORMAT_TAG,
    INPUT_NAME,
    META_CHECKPOINT_SHA256,
    META_CONFIG,
    META_FORMAT,
    META_PRECISION,
    META_TARGET,
    META_VERSION,
    MAP_STRIDES,
    OUTPUT_AMAP,
    OUTPUT_MAPS,
    OUTPUT_SCORE,
    FWRDConfig,
)
from fwrd.errors import FwrdError
from fwrd.model.fused_scorer import FusedScorer
from fwrd.model.network import ReverseDistillation

OPSET = 18
OUTPUT_NAMES = [OUTPUT_SCORE, OUTPUT_AMAP, *OUTPUT_MAPS]
MAX_SIDE = 32 * 1024  # largest region side a graph accepts (level pixels)


def export_fused_onnx(
    model: ReverseDistillation, config: FWRDConfig, path: Path, *, half: bool, max_batch: int = 1024
) -> Path:
    """Export FusedScorer to `path` (written to a temp name in the same folder, then renamed)."""
    scorer = FusedScorer(model, config, half=half).eval()
    t = config.tile_size  # an example that is not square nor a tile, so no size gets specialised
    example = torch.randint(0, 256, (2, t + 32, t + 64, 3), dtype=torch.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        _export(scorer, example, str(tmp), max_batch)
        _name_dimensions(tmp)
    return path


def write_metadata(path: Path, config: FWRDConfig, precision: str, checkpoint_sha256: str,
                   target: str | None = None) -> None:
    """Put the config, version, checkpoint hash, precision (and the int8 target) into `metadata_props`
    (atomic rewrite)."""
    graph = onnx.load(str(path))
    props = {
        META_FORMAT: FORMAT_TAG,
        META_CONFIG: config.to_json(),
        META_VERSION: __version__,
        META_CHECKPOINT_SHA256: checkpoint_sha256,
        META_PRECISION: precision,
    }
    if precision == "int8":
        props[META_TARGET] = target or "cpu"
    kept = [p for p in graph.metadata_props if p.key not in props]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    for key, value in props.items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "fwrd"
    graph.producer_version = __version__
    save_onnx(graph, path)


def save_onnx(graph: onnx.ModelProto, path: Path) -> None:
    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))


def _export(scorer: FusedScorer, example: torch.Tensor, out: str, max_batch: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    rows = torch.export.Dim("rows32", min=1, max=MAX_SIDE // 32)
    cols = torch.export.Dim("cols32", min=1, max=MAX_SIDE // 32)
    common = dict(input_names=[INPUT_NAME], output_names=OUTPUT_NAMES, opset_version=OPSET)
    try:
        with _quiet():
            torch.onnx.export(
                scorer, (example,), out, dynamo=True, external_data=False,
                dynamic_shapes={"tiles": {0: batch, 1: 32 * rows, 2: 32 * cols}}, **common,
            )
        return
    except Exception as exc:  # the dynamo exporter has open bugs; the legacy path is the fallback
        logging.getLogger(__name__).warning("dynamo export failed (%s); using the legacy exporter", exc)
    axes = {name: {0: "batch", 1: f"height/{s}", 2: f"width/{s}"} for name, s in zip(OUTPUT_MAPS, MAP_STRIDES)}
    try:
        with _quiet():
            torch.onnx.export(
                scorer, (example,), out, dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch", 1: "height", 2: "width"}, OUTPUT_SCORE: {0: "batch"},
                              OUTPUT_AMAP: {0: "batch", 1: "height/4", 2: "width/4"}, **axes},
                **common,
            )
    except Exception as exc:
        raise FwrdError(f"ONNX export failed: {' '.join(str(exc).split())[:300]}") from None


def _name_dimensions(path: Path) -> None:
    """Readable symbolic dimensions on the graph's inputs and outputs (the exporter's are `32*rows32`,
    `s39`, ...): labels only, the graph computes the same."""
    graph = onnx.load(str(path))
    names = {INPUT_NAME: ["batch", "height", "width", None], OUTPUT_SCORE: ["batch"],
             OUTPUT_AMAP: ["batch", "height/4", "width/4"]}
    names.update({n: ["batch", f"height/{s}", f"width/{s}"] for n, s in zip(OUTPUT_MAPS, MAP_STRIDES)})
    for value in [*graph.graph.input, *graph.graph.output]:
        for dim, label in zip(value.type.tensor_type.shape.dim, names.get(value.name, [])):
            if label is not None and not dim.HasField("dim_value"):
                dim.dim_param = label
    save_onnx(graph, path)


class _quiet:
    """torch.onnx prints progress lines and warnings on every export; keep the CLI output ours."""

    def __enter__(self) -> None:
        self._stdout = redirect_stdout(StringIO())
        self._stdout.__enter__()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._logger = logging.getLogger("torch.onnx")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)
        self._stdout.__exit__(*exc)
