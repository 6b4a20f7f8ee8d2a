"""What gets benchmarked: each model file on each requested backend, opened the way `fwrd-run` opens it.

A *target* is one model file (an fp32, fp16 or int8 graph, or a TensorRT plan) on one backend kind:

    auto / onnxruntime   open_backend(): the best ONNX Runtime provider for .onnx, TensorRT for .plan
    ort-cpu, ort-cuda,   ONNX Runtime pinned to one execution provider (compare providers in one run)
    ort-tensorrt
    tensorrt             a TensorRT plan through fwrd's own TensorRT backend
    torch, torch-fp16,   a checkpoint (model.pt) through the torch backend (`torch`: fp16 on CUDA, fp32 on
    torch-fp32           the CPU), on the device BenchSettings.device names

A kind that does not apply to a file (tensorrt for an .onnx, ort-* for a plan) or cannot start here
(no GPU, no TensorRT, a batch size outside the plan's profile) is skipped with the reason, so one run
compares whatever this machine can run. With `dense=True` every target also gets a backend opened for
dense scoring (`Target.dense`), or the reason it has none (`Target.dense_skipped`).

    target = open_target("rd_int8.onnx", "ort-cpu", batch_sizes=[8, 32], threads=2)
    target.backends[32].infer(tiles)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fwrd.config import META_CHECKPOINT_SHA256, META_PRECISION
from fwrd.errors import FwrdError, InputNotFound, ModelError
from fwrd.runtime.backends import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES, checked, open_backend
from fwrd.runtime.backends.base import Backend
from fwrd.digest import file_sha256

KINDS = ("auto", "onnxruntime", "ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt", "torch", "torch-fp16", "torch-fp32")
ORT_DEVICES = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "tensorrt"}
TORCH_PRECISIONS = {"torch": "auto", "torch-fp16": "fp16", "torch-fp32": "fp32"}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Target:
    """One model file on one backend kind, with a loaded backend per batch size it can run."""

    path: Path
    kind: str
    precision: str
    backends: dict[int, Backend] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)  # batch size -> why it cannot run
    checkpoint_sha256: str = ""  # of the model.pt it was exported from ("" when the file does not say)
    dense: Backend | None = None  # the same file opened for dense scoring (fwrd-bench --dense)
    dense_skipped: str | None = None  # why it has no dense backend

    @property
    def any_backend(self) -> Backend:
        return next(iter(self.backends.values()))

    @property
    def label(self) -> str:
        """Short row label: "onnxruntime cpu int8 (rd_int8.onnx)"."""
        backend = self.any_backend
        device = backend.device.split(" ")[0]
        graphs = "+graphs" if getattr(backend, "cuda_graphs", False) else ""
        compiled = "+compiled" if backend.describe().get("compiled") else ""
        return f"{backend.name} {device} {self.precision}{compiled}{graphs} ({self.path.name})"

    def describe(self) -> dict:
        backend = self.any_backend
        return {
            "model": str(self.path),
            "model_sha256": str(getattr(backend, "model_sha256", "")),
            "checkpoint_sha256": self.checkpoint_sha256,
            "kind": self.kind,
            "backend": backend.name,
            "device": backend.device,
            "precision": self.precision,
            "tile_size": backend.config.tile_size,
            "label": self.label,
        }

    def close(self) -> None:
        for backend in {id(b): b for b in [*self.backends.values(), *([self.dense] if self.dense else [])]}.values():
            backend.close()
        self.backends = {}
        self.dense = None


def is_engine(path: Path) -> bool:
    return path.suffix.lower() in ENGINE_SUFFIXES


def is_checkpoint(path: Path) -> bool:
    return path.suffix.lower() in CHECKPOINT_SUFFIXES


def not_applicable(path: Path, kind: str) -> str | None:
    """Why `kind` cannot run `path` at all (None when it can)."""
    if kind not in KINDS:
        raise FwrdError(f"unknown backend {kind!r}; expected one of {', '.join(KINDS)}")
    if is_checkpoint(path) != (kind in TORCH_PRECISIONS) and kind != "auto":
        if is_checkpoint(path):
            return f"{kind} runs exported models, {path.name} is a checkpoint: use --backends torch"
        return f"{kind} runs checkpoints (model.pt), {path.name} is not one"
    if is_engine(path) and kind not in ("auto", "tensorrt"):
        return f"{kind} runs ONNX models, {path.name} is a TensorRT plan"
    if not is_engine(path) and kind == "tensorrt":
        return f"tensorrt runs plans (--engine), {path.name} is an ONNX model; try ort-tensorrt"
    return None


def canonical_kind(path: Path, kind: str) -> str:
    """`auto` is tensorrt for a plan and onnxruntime (best provider) for an ONNX model: the same target
    named twice is measured once."""
    if kind != "auto":
        return kind
    if is_checkpoint(path):
        return "torch"
    return "tensorrt" if is_engine(path) else "onnxruntime"


def model_precision(path: Path) -> str | None:
    """fp32 / fp16 / int8 from the model's own record (ONNX metadata or the plan's manifest); None for a
    checkpoint, whose precision is the torch backend's choice."""
    if not path.is_file():
        raise InputNotFound(f"model not found: {path}")
    if is_checkpoint(path):
        return None
    if is_engine(path):
        from fwrd.runtime.backends.tensorrt import read_manifest

        return str(read_manifest(path)["precision"])
    from fwrd.runtime.model_file import read_onnx_metadata

    return read_onnx_metadata(path).get(META_PRECISION, "fp32")


def exported_from(path: Path) -> str:
    """sha256 of the checkpoint `path` is (a model.pt) or was exported from, as its ONNX metadata (or, for
    a plan, the metadata of the ONNX graph it was built from) records it; "" when it records none."""
    if is_checkpoint(path):
        return file_sha256(path)
    if is_engine(path):
        from fwrd.runtime.backends.tensorrt import read_manifest

        metadata = read_manifest(path).get("onnx_metadata") or {}
    else:
        from fwrd.runtime.model_file import read_onnx_metadata

        metadata = read_onnx_metadata(path)
    return str(metadata.get(META_CHECKPOINT_SHA256, "") if isinstance(metadata, dict) else "")


def open_one(
    path: Path, kind: str, batch_size: int, threads: int | None, device: str = "auto", cuda_graphs: bool = True,
    dense: bool = False, region: int | None = None, compile: bool = False,
) -> Backend:
    """Open `path` on `kind` exactly as fwrd-run would (ort-* pins ONNX Runtime's provider; torch-* take the
    torch backend's device, CUDA-graph and compile switches; `dense` opens it for region passes)."""
    regions = {"dense": dense, "region": region}
    if kind in TORCH_PRECISIONS:
        return open_backend(path, "torch", batch_size=batch_size, threads=threads, device=device,
                            precision=TORCH_PRECISIONS[kind], cuda_graphs=cuda_graphs, compile=compile, **regions)
    if kind in ORT_DEVICES:
        from fwrd.runtime.backends.onnxruntime import OnnxRuntimeBackend

        if not path.is_file():
            raise InputNotFound(f"model not found: {path}")
        backend: Backend = OnnxRuntimeBackend(path, device=ORT_DEVICES[kind], threads=threads, batch_size=batch_size,
                                              **regions)
        return checked(backend, path)  # what open_backend adds (the self-test at load, model_path and sha256)
    return open_backend(path, "auto" if kind == "auto" else kind, batch_size=batch_size, threads=threads, **regions)


def open_target(
    path: Path, kind: str, batch_sizes: Sequence[int], threads: int | None, device: str = "auto",
    cuda_graphs: bool = True, dense: bool = False, region: int | None = None, compile: bool = False,
) -> Target:
    """Load `path` on `kind` for every batch size. An ONNX Runtime session takes any batch, so one session
    serves them all; a TensorRT engine's (and the torch backend's) buffers are sized per batch, so each
    batch size gets its own backend.

    Raises ModelError / DependencyMissing when the target cannot run at any batch size.
    """
    reason = not_applicable(path, kind)
    if reason:
        raise ModelError(reason)
    sizes = sorted(set(batch_sizes))
    source = exported_from(path)
    if not is_engine(path) and kind not in TORCH_PRECISIONS:
        session = open_one(path, kind, max(sizes), threads)
        target = Target(path, kind, session.precision, backends={b: session for b in sizes},
                        checkpoint_sha256=source)
        return _with_dense(target, dense, region, threads, device, cuda_graphs)
    backends: dict[int, Backend] = {}
    skipped: dict[int, str] = {}
    try:
        for b in sizes:
            try:
                backends[b] = open_one(path, kind, b, threads, device, cuda_graphs, compile=compile)
            except ModelError as exc:  # e.g. a batch outside the plan's profile: the other sizes still run
                skipped[b] = str(exc)
    except BaseException:
        for backend in backends.values():
            backend.close()
        raise
    if not backends:
        raise ModelError("; ".join(f"batch {b}: {why}" for b, why in skipped.items()))
    target = Target(path, kind, next(iter(backends.values())).precision, backends, skipped, source)
    return _with_dense(target, dense, region, threads, device, cuda_graphs)


def _with_dense(target: Target, dense: bool, region: int | None, threads: int | None, device: str,
                cuda_graphs: bool) -> Target:
    """Open the target's file once more for dense scoring, or record why it cannot be."""
    if dense:
        try:
            target.dense = open_one(target.path, target.kind, max(target.backends), threads, device, cuda_graphs,
                                    dense=True, region=region)
        except ModelError as exc:  # int8, or a graph exported before dense scoring: the tile rows still run
            target.dense_skipped = str(exc)
    return target
