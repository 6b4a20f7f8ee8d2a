"""ONNX Runtime backend: one InferenceSession on the best execution provider this machine has.

Providers are tried in the order TensorRT > CUDA > CPU (`auto`), falling back when one fails to
start. On CPU the session uses as many intra-op threads as there are physical cores and does not
spin while idle, because the decode workers share those cores. A model with a fixed batch dimension
is fed in chunks of exactly that size (the last one padded). With the TensorRT EP, engines and timing
caches are kept in ~/.cache/fwrd/ort-tensorrt (else every start rebuilds them, which takes minutes).
On GPU providers ONNX Runtime copies each host batch itself; the `.plan` TensorRT backend is the
path with pinned buffers and copies overlapped with compute.

    backend = OnnxRuntimeBackend("rd.onnx")
    score, amap = backend.infer(tiles)   # uint8 [B, T, T, 3] -> float32 [B], [B, T/4, T/4]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fwrd.config import INPUT_NAME, META_PRECISION, OUTPUT_AMAP, OUTPUT_SCORE
from fwrd.errors import DependencyMissing, InputNotFound, ModelError
from fwrd.runtime.backends.base import Backend, check_tiles
from fwrd.runtime.model_file import check_fwrd_model

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise DependencyMissing(
            "ONNX Runtime is not installed: pip install fwrd[cpu] (or fwrd[gpu] on an NVIDIA machine)"
        ) from None
    return onnxruntime


def choose_providers(available: list[str], requested: str = "auto") -> list[str]:
    """Execution providers to try, best first: "auto" -> TensorRT > CUDA > CPU among `available`;
    "cpu" / "cuda" / "tensorrt" -> that provider (CPU kept last as ONNX Runtime's own fallback)."""
    wanted = {
        "auto": PROVIDER_PREFERENCE,
        "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
        "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
        "cpu": ("CPUExecutionProvider",),
    }.get(requested)
    if wanted is None:
        raise ModelError(f"unknown ONNX Runtime device {requested!r}; expected auto, cpu, cuda or tensorrt")
    chosen = [p for p in wanted if p in available]
    if requested != "auto" and (not chosen or chosen[0] != wanted[0]):
        raise DependencyMissing(f"ONNX Runtime here has no {wanted[0]} (available: {', '.join(available)})")
    return chosen or ["CPUExecutionProvider"]


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = base.joinpath("physical_package_id").read_text().strip()
            cores.add((package, base.joinpath("core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


class OnnxRuntimeBackend(Backend):
    """An fwrd ONNX model in an ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(
        self, path: str | Path, *, device: str = "auto", threads: int | None = None, batch_size: int = 16
    ) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"model not found: {path}")
        self.path = path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads) if threads else physical_cores()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = choose_providers(ort.get_available_providers(), device)
        self._session = self._create_session(ort, path, options, providers)
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        inputs = [(a.name, a.type, a.shape) for a in self._session.get_inputs()]
        outputs = [(a.name, a.type, a.shape) for a in self._session.get_outputs()]
        config = check_fwrd_model(meta, inputs, outputs, source=str(path))
        super().__init__(config, meta, meta.get(META_PRECISION, "fp32"))
        batch_dim = inputs[0][2][0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.batch_size = batch_size
        self.providers = list(self._session.get_providers())
        self.device = {
            "TensorrtExecutionProvider": "cuda (ONNX Runtime TensorRT EP)",
            "CUDAExecutionProvider": "cuda (ONNX Runtime CUDA EP)",
        }.get(self.providers[0], f"cpu ({options.intra_op_num_threads} threads)")

    @staticmethod
    def _create_session(ort: Any, path: Path, options: Any, providers: list[str]) -> Any:
        """Try the providers best first; a GPU provider that fails to start falls back to the next."""
        last: Exception | None = None
        for start in range(len(providers)):
            try:
                return ort.InferenceSession(str(path), options, providers=_with_options(providers[start:]))
            except Exception as exc:  # ORT raises its own pybind exception types
                last = exc
                if "CPUExecutionProvider" == providers[start]:
                    break
                if _looks_like_bad_model(exc):
                    break
        text = str(last).strip().splitlines()[0][:200] if last else "unknown error"
        raise ModelError(f"{path}: not an ONNX model ONNX Runtime can load ({text})")

    @property
    def max_batch(self) -> int | None:
        return self._fixed_batch

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tiles = check_tiles(tiles, self.tile_size)
        if self._fixed_batch is None or len(tiles) == self._fixed_batch:
            return self._run(tiles)
        scores, amaps = [], []
        k = self._fixed_batch
        for start in range(0, len(tiles), k):
            chunk = tiles[start:start + k]
            n = len(chunk)
            if n < k:
                chunk = np.concatenate([chunk, np.zeros((k - n,) + chunk.shape[1:], np.uint8)])
            score, amap = self._run(chunk)
            scores.append(score[:n])
            amaps.append(amap[:n])
        return np.concatenate(scores), np.concatenate(amaps)

    def _run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, amap = self._session.run([OUTPUT_SCORE, OUTPUT_AMAP], {INPUT_NAME: tiles})
        return np.asarray(score, np.float32).reshape(-1), np.asarray(amap, np.float32)

    def close(self) -> None:
        self._session = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["providers"] = self.providers
        return info


def tensorrt_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fwrd" / "ort-tensorrt"


def _with_options(providers: list[str]) -> list[Any]:
    """Provider list for InferenceSession; the TensorRT EP gets persistent engine and timing caches."""
    out: list[Any] = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            cache = tensorrt_cache_dir()
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError:
                out.append(name)
                continue
            out.append((name, {
                "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
            }))
        else:
            out.append(name)
    return out


def _looks_like_bad_model(exc: Exception) -> bool:
    text = f"{exc.__class__.__name__} {exc}"
    markers = ("InvalidProtobuf", "INVALID_PROTOBUF", "Protobuf parsing failed", "INVALID_GRAPH", "InvalidGraph")
    return any(k in text for k in markers)
