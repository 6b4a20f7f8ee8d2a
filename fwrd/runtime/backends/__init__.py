"""Pick and open an inference backend for a model file.

`.onnx` runs in ONNX Runtime (TensorRT EP > CUDA EP > CPU, whichever this machine has); `.plan`
(or `.engine`) is a TensorRT engine run by `fwrd.runtime.backends.tensorrt`, imported only then;
`backend="torch"` runs a checkpoint (`model.pt`) in PyTorch (`fwrd.runtime.backends.torch`, whose torch half
in `fwrd.model.runner` is the only path here that imports torch, and only when asked for).

    with open_backend("rd.onnx", batch_size=32) as backend:
        score, amap = backend.infer(tiles)
    with open_backend("rd.onnx", dense=True) as backend:      # regions up to backend.region px a side
        maps = backend.infer_region(region)
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fwrd.errors import DependencyMissing, InputNotFound, ModelError
from fwrd.runtime.backends.base import Backend
from fwrd.digest import file_sha256
from fwrd.runtime.model_file import ENGINE_SUFFIXES, refuse_checkpoint

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def open_backend(
    model: str | Path, backend: str = "auto", batch_size: int = 16, threads: int | None = None,
    *, device: str = "auto", precision: str = "auto", cuda_graphs: bool = True, tf32: bool = False,
    dense: bool = False, region: int | None = None, compile: bool = False,
) -> Backend:
    """Load `model` on the best (or the named) backend; ModelError / DependencyMissing say why not.

    `device`, `precision`, `cuda_graphs`, `tf32` and `compile` belong to the torch backend (an ONNX model or a
    plan carries its precision and picks its device). The returned backend also carries `model_path` and
    `model_sha256` (recorded in summary.json and used by `--resume` to tell whether existing outputs came
    from the same model). `dense=True` opens it for region passes of at most `region` pixels a side (None:
    the backend's default); a model that cannot score regions is refused then, in one line.
    """
    path = Path(model)
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise ModelError(f"batch size must be at least 1, got {batch_size}")
    if region is not None and (not dense or region < 32 or region % 32):
        raise ModelError(f"region side {region}: give a positive multiple of 32 pixels, with dense=True")
    if not path.is_file():
        raise InputNotFound(f"model not found: {path}")
    if backend != "torch" and (device, precision, cuda_graphs, tf32, compile) != ("auto", "auto", True, False, False):
        raise ModelError("--device, --precision, --no-cuda-graphs, --tf32 and --compile choose how --backend torch "
                         "runs a checkpoint; an ONNX model or a TensorRT plan carries its own precision")
    is_engine = path.suffix.lower() in ENGINE_SUFFIXES
    if backend == "torch":
        opened = _open_torch(path, batch_size, threads, device=device, precision=precision,
                             cuda_graphs=cuda_graphs, tf32=tf32, dense=dense, region=region, compile=compile)
    elif is_engine:
        if backend == "onnxruntime":
            raise ModelError(f"{path}: a TensorRT engine runs on the tensorrt backend, not onnxruntime")
        opened = _open_tensorrt(path, batch_size, dense, region)
    else:
        if backend == "tensorrt":
            raise ModelError(
                f"{path}: the tensorrt backend runs an engine (--engine rd.plan, built by fwrd-export); "
                "use --backend auto or onnxruntime for an .onnx model"
            )
        refuse_checkpoint(path)
        from fwrd.runtime.backends.onnxruntime import OnnxRuntimeBackend

        opened = OnnxRuntimeBackend(path, threads=threads, batch_size=batch_size, dense=dense, region=region)
    return checked(opened, path)


def checked(opened: Backend, path: Path) -> Backend:
    """`opened` with `model_path` and `model_sha256` set, once it has passed its self-test at load (the
    export's verification tiles, when they are beside the model: fwrd.runtime.self_test); closed and
    ModelError when it failed it."""
    from fwrd.runtime.self_test import self_test

    opened.model_path = path  # type: ignore[attr-defined]
    opened.model_sha256 = file_sha256(path)  # type: ignore[attr-defined]
    try:
        note = self_test(opened, path, opened.model_sha256)  # type: ignore[attr-defined]
    except BaseException:
        opened.close()
        raise
    if note:
        opened.notes.append(note)
    return opened


def _open_tensorrt(path: Path, batch_size: int, dense: bool, region: int | None) -> Backend:
    try:
        module = importlib.import_module("fwrd.runtime.backends.tensorrt")
    except ImportError as exc:
        raise DependencyMissing(f"the TensorRT backend cannot be loaded ({exc}); pip install fwrd[gpu]") from None
    available, reason = module.tensorrt_status()
    if not available:
        raise DependencyMissing(f"cannot run {path}: {reason}")
    return module.TensorRTBackend.from_plan(path, batch_size=batch_size, dense=dense, region=region)


def _open_torch(path: Path, batch_size: int, threads: int | None, **options: object) -> Backend:
    if path.suffix.lower() in ENGINE_SUFFIXES or path.suffix.lower() == ".onnx":
        raise ModelError(f"{path}: the torch backend runs a checkpoint from fwrd-train (model.pt); "
                         "run an ONNX model or a TensorRT plan with --backend auto")
    from fwrd.runtime.backends.torch import TorchBackend

    return TorchBackend(path, batch_size=batch_size, threads=threads, **options)
