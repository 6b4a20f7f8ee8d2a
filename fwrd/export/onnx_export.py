"""Write the fused graph to one self-contained `.onnx` file with fwrd's metadata.

torch.onnx's dynamo exporter is tried first; on failure the legacy TorchScript exporter is used (both
are verified against PyTorch afterwards — see `fwrd.export.verify`). Weights stay inside the file
(~115 M parameters fit under protobuf's 2 GB), so no `.onnx.data` sidecar is ever needed.
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
    OUTPUT_AMAP,
    OUTPUT_SCORE,
    FWRDConfig,
)
from fwrd.errors import FwrdError
from fwrd.export.fused_graph import FusedScorer
from fwrd.model.network import ReverseDistillation

OPSET = 18


def export_fused_onnx(
    model: ReverseDistillation, config: FWRDConfig, path: Path, *, half: bool, max_batch: int = 1024
) -> Path:
    """Export FusedScorer to `path` (written to a temp name in the same folder, then renamed)."""
    scorer = FusedScorer(model, config, half=half).eval()
    example = torch.randint(0, 256, (2, config.tile_size, config.tile_size, 3), dtype=torch.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        _export(scorer, example, str(tmp), max_batch)
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
    common = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_SCORE, OUTPUT_AMAP], opset_version=OPSET)
    try:
        with _quiet():
            torch.onnx.export(
                scorer, (example,), out, dynamo=True, external_data=False,
                dynamic_shapes={"tiles": {0: batch}}, **common,
            )
        return
    except Exception as exc:  # the dynamo exporter has open bugs; the legacy path is the fallback
        logging.getLogger(__name__).warning("dynamo export failed (%s); using the legacy exporter", exc)
    try:
        with _quiet():
            torch.onnx.export(
                scorer, (example,), out, dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_SCORE: {0: "batch"}, OUTPUT_AMAP: {0: "batch"}},
                **common,
            )
    except Exception as exc:
        raise FwrdError(f"ONNX export failed: {' '.join(str(exc).split())[:300]}") from None


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
