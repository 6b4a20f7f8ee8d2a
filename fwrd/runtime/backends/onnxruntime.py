"""ONNX Runtime backend: one InferenceSession on the best execution provider this machine has.

Providers are given in the order TensorRT > CUDA > CPU (`auto`); when one fails to start, ONNX
Runtime's own fallback takes the next, and its "EP Error ... Falling back" banner is kept off stdout
and turned into a line in `backend.notes`. The int8 CPU graph (uint8 activations, non-zero zero points)
never goes to the CUDA or TensorRT providers: `auto` runs it on the CPU and says so, an explicit GPU
device refuses it. On CPU the session uses as many intra-op threads as there are physical cores and
does not spin while idle, because the decode workers share those cores. A model with a fixed batch
dimension is fed in chunks of exactly that size (the last one padded). The TensorRT EP gets explicit
profile shapes for batches 1..batch size (a slide's last, smaller batch never triggers a rebuild,
which takes minutes for this backbone) and keeps its engines and timing cache next to the model
(`rd.onnx.ort-trt/`, else ~/.cache/fwrd/ort-tensorrt). On GPU providers ONNX Runtime copies each host
batch itself; the `.plan` TensorRT backend is the path with pinned buffers and copies overlapped with
compute.

    backend = OnnxRuntimeBackend("rd.onnx")
    score, amap = backend.infer(tiles)   # uint8 [B, T, T, 3] -> float32 [B], [B, T/4, T/4]

For dense scoring (`dense=True`) the session also takes regions up to `region` pixels a side (a graph
exported with dynamic height and width); the TensorRT EP then gets one profile for batch 1 from one
tile up to that side instead of the tile profile.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fwrd.config import (
    INPUT_NAME,
    META_CONFIG,
    META_PRECISION,
    META_TARGET,
    OUTPUT_AMAP,
    OUTPUT_MAPS,
    OUTPUT_SCORE,
    FWRDConfig,
)
from fwrd.errors import DependencyMissing, InputNotFound, ModelError
from fwrd.runtime.backends.base import Backend, RegionMaps, check_region, check_tiles, dense_unsupported
from fwrd.runtime.model_file import check_fwrd_model, read_onnx_metadata, scores_regions
from fwrd.runtime.onnx_data import refuse_outside_data
from fwrd.runtime.regions import default_side

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


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
        self, path: str | Path, *, device: str = "auto", threads: int | None = None, batch_size: int = 16,
        dense: bool = False, region: int | None = None,
    ) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"model not found: {path}")
        refuse_outside_data(path)  # before any session follows a tensor's data out of the model's folder
        self.path = path
        notes: list[str] = []
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads) if threads else physical_cores()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = choose_providers(ort.get_available_providers(), device)
        if dense and region is None and providers[0] in GPU_PROVIDERS:  # the TensorRT EP's profile needs it now
            tile = _tile_size(read_onnx_metadata(path))
            region = default_side(tile, gpu=True) if tile is not None else None
        if providers[0] in GPU_PROVIDERS:
            providers = self._gpu_providers(path, providers, device, batch_size, notes, region if dense else None)
        self._session = self._create_session(ort, path, options, providers, notes)
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        inputs = [(a.name, a.type, a.shape) for a in self._session.get_inputs()]
        outputs = [(a.name, a.type, a.shape) for a in self._session.get_outputs()]
        config = check_fwrd_model(meta, inputs, outputs, source=str(path))
        super().__init__(config, meta, meta.get(META_PRECISION, "fp32"))
        self.notes.extend(notes)
        batch_dim = inputs[0][2][0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.batch_size = batch_size
        self.providers = list(self._session.get_providers())
        self._on_gpu = self.providers[0] in GPU_PROVIDERS
        self.device = {
            "TensorrtExecutionProvider": "cuda (ONNX Runtime TensorRT EP)",
            "CUDAExecutionProvider": "cuda (ONNX Runtime CUDA EP)",
        }.get(self.providers[0], f"cpu ({options.intra_op_num_threads} threads)")
        if dense:
            problem = dense_unsupported(path.name, self.precision, scores_regions(inputs, outputs))
            if problem:
                raise ModelError(problem)
            self.region = int(region or default_side(config.tile_size, gpu=self._on_gpu))
            self.fixed_regions = self._on_gpu  # GPU providers tune kernels per input shape

    @staticmethod
    def _gpu_providers(path: Path, providers: list[str], device: str, batch_size: int,
                       notes: list[str], region: int | None) -> list[Any]:
        """GPU providers with their options; the int8 CPU graph stays off them."""
        meta = read_onnx_metadata(path)
        if meta.get(META_PRECISION) == "int8" and meta.get(META_TARGET, "cpu") != "tensorrt":
            if device != "auto":
                raise ModelError(f"{path.name} is the int8 graph for ONNX Runtime on CPU (uint8 activations, "
                                 f"non-zero zero points): it does not run on {providers[0]}; export an fp16 "
                                 "graph or the int8 graph with --target tensorrt for the GPU")
            notes.append(f"{path.name} is the int8 CPU graph: running it on the CPU although a GPU provider is "
                         "available (export fp16, or int8 with --target tensorrt, for the GPU)")
            return ["CPUExecutionProvider"]
        return _with_options(providers, path, _tile_size(meta), batch_size, notes, region)

    @staticmethod
    def _create_session(ort: Any, path: Path, options: Any, providers: list[Any], notes: list[str]) -> Any:
        """One session; ONNX Runtime itself falls back to the next provider when one fails to start."""
        try:
            with _banner_to(notes):
                return ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own pybind exception types
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not an ONNX model ONNX Runtime can load ({text})") from None

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

    def infer_region(self, region: np.ndarray) -> RegionMaps:
        if self.region is None:
            return super().infer_region(region)
        pixels = check_region(region, self.tile_size, self.region)[None]
        if self._on_gpu:
            with _banner_to(self.notes, echo=True):
                maps = self._session.run(list(OUTPUT_MAPS), {INPUT_NAME: pixels})
        else:
            maps = self._session.run(list(OUTPUT_MAPS), {INPUT_NAME: pixels})
        return tuple(np.asarray(m, np.float32)[0] for m in maps)  # type: ignore[return-value]

    def _run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._on_gpu:  # a provider failing mid-run makes ONNX Runtime print its fallback banner
            with _banner_to(self.notes, echo=True):
                score, amap = self._session.run([OUTPUT_SCORE, OUTPUT_AMAP], {INPUT_NAME: tiles})
        else:
            score, amap = self._session.run([OUTPUT_SCORE, OUTPUT_AMAP], {INPUT_NAME: tiles})
        return np.asarray(score, np.float32).reshape(-1), np.asarray(amap, np.float32)

    def close(self) -> None:
        self._session = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["providers"] = self.providers
        return info


def tensorrt_cache_dir() -> Path:
    """Where the TensorRT EP keeps engines when the model's own folder is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fwrd" / "ort-tensorrt"


def _cache_dir(path: Path) -> Path | None:
    """`rd.onnx.ort-trt/` beside the model, else the user cache; None when neither can be made."""
    for folder in (path.with_name(path.name + ".ort-trt"), tensorrt_cache_dir()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return None


def _tile_size(meta: dict[str, str]) -> int | None:
    """The tile size in a model's metadata (None when it is not an fwrd model: the session says so)."""
    try:
        return FWRDConfig.from_json(meta.get(META_CONFIG, "")).tile_size
    except Exception:
        return None


def tensorrt_options(path: Path, tile: int | None, batch_size: int, region: int | None = None) -> dict[str, Any]:
    """The TensorRT EP's options: engine and timing caches next to the model, and one profile covering
    batches 1..batch_size, so a slide's smaller last batch never triggers an engine rebuild; for dense
    scoring (`region`), batch 1 from one tile up to region x region pixels instead."""
    options: dict[str, Any] = {}
    cache = _cache_dir(path)
    if cache is not None:
        options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                       trt_timing_cache_enable=True, trt_timing_cache_path=str(cache))
    if tile is not None:
        shape = f"{tile}x{tile}x3"
        top = f"{batch_size}x{shape}" if region is None else f"1x{region}x{region}x3"
        options.update(trt_profile_min_shapes=f"{INPUT_NAME}:1x{shape}",
                       trt_profile_opt_shapes=f"{INPUT_NAME}:{top}",
                       trt_profile_max_shapes=f"{INPUT_NAME}:{top}")
    return options


def _with_options(providers: list[str], path: Path, tile: int | None, batch_size: int,
                  notes: list[str], region: int | None = None) -> list[Any]:
    """Provider list for InferenceSession, the TensorRT EP with its options."""
    out: list[Any] = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            options = tensorrt_options(path, tile, batch_size, region)
            if "trt_engine_cache_path" not in options:
                notes.append("no writable folder for the TensorRT EP's engine cache: every start rebuilds it")
            out.append((name, options))
        else:
            out.append(name)
    return out


@contextlib.contextmanager
def _banner_to(notes: list[str], echo: bool = False) -> Iterator[None]:
    """Keep ONNX Runtime's provider-fallback banner (printed to stdout) off stdout: one line in `notes`
    instead, and on stderr too when `echo` (mid-run, where nobody reads the notes any more)."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        text = " ".join(re.sub(r"\*{3,}", " ", captured.getvalue()).split())
        text = re.sub(r" when using \[.*?\](?= Falling back)", "", text)  # the provider list with all options
        text = text.replace("EP Error EP Error", "EP Error")  # the banner's title line, then the error
        if text:
            note = f"ONNX Runtime: {text[:300]}"
            notes.append(note)
            if echo:
                print(note, file=sys.stderr)
