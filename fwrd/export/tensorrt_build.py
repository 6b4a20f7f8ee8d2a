"""Build a TensorRT engine (`rd.plan`) from fwrd's fused ONNX graph, plus the manifest the runtime checks.

Steps: validate the ONNX file (fwrd I/O and metadata) -> pick the precision mode the installed TensorRT
supports -> parse -> one optimisation profile on `tiles` over the batch range, a workspace limit, a
persisted timing cache and a progress monitor -> build -> write the plan and `rd.plan.json` atomically.

TensorRT 10 and 11 differ in how fp16 is asked for. With `NetworkDefinitionCreationFlag.STRONGLY_TYPED`
(10.12+, the only kind of network in 11) the graph's own types decide, so the fp16 graph gives an fp16
engine. Without it (older 10.x), or for an fp32 graph asked to run in fp16 on 10.x, the network is weakly
typed and `BuilderFlag.FP16` is set with fp32 constraints on the norm/cosine/resize/mean layers, which
overflow or lose their epsilon in fp16. `EXPLICIT_BATCH` is never used (deprecated in 10, gone in 11).

    manifest = build_engine("rd.onnx", "rd.plan", opt_batch=32, max_batch=64,
                            timing_cache=Path("rd.timing.cache"))

This module imports `tensorrt` lazily and never imports torch. It has been tested against the fake
TensorRT and cuda-python in tests/fakes only, not with a real TensorRT on a GPU.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwrd import __version__
from fwrd.atomic import atomic_open
from fwrd.config import (
    FORMAT_TAG,
    INPUT_NAME,
    META_CONFIG,
    META_FORMAT,
    META_PRECISION,
    OUTPUT_AMAP,
    OUTPUT_SCORE,
    FWRDConfig,
)
from fwrd.errors import DependencyMissing, FwrdError, InputNotFound, ModelError
from fwrd.runtime.backends.tensorrt import (
    MANIFEST_FORMAT,
    load_tensorrt,
    make_logger,
    manifest_path,
)
from fwrd.runtime.cuda_memory import device_properties

PRECISIONS = ("fp16", "fp32")
# Layer types whose arithmetic must stay fp32 in a weakly typed fp16 build, and everything downstream.
FP32_SEED_LAYERS = ("REDUCE", "NORMALIZATION", "UNARY", "RESIZE", "SOFTMAX")
MODE_STRONG = "strongly-typed"  # types come from the graph
MODE_FP16_FLAG = "fp16-flag"  # weakly typed + BuilderFlag.FP16 + fp32 constraints on norm layers
MODE_FP32 = "fp32"  # weakly typed, no reduced precision
PROGRESS_INTERVAL_S = 5.0

Log = Callable[[str], Any]


@dataclass(frozen=True)
class OnnxInfo:
    """What the builder needs from the ONNX file, read without TensorRT."""

    tile_size: int
    precision: str
    config_json: str
    metadata: dict[str, str]
    sha256: str


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_with_onnx(path: Path) -> tuple[dict[str, str], list[tuple[str, bool, list[int]]], set[str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = []
    for value in graph.input:
        if value.name not in initializers:
            tensor_type = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
            inputs.append((value.name, tensor_type.elem_type == onnx.TensorProto.UINT8, dims))
    return {p.key: p.value for p in model.metadata_props}, inputs, {o.name for o in graph.output}


def _read_with_onnxruntime(path: Path) -> tuple[dict[str, str], list[tuple[str, bool, list[int]]], set[str]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type == "tensor(uint8)", [d if isinstance(d, int) else -1 for d in i.shape])
              for i in session.get_inputs()]
    meta = dict(session.get_modelmeta().custom_metadata_map)
    return meta, inputs, {o.name for o in session.get_outputs()}


def inspect_onnx(path: Path) -> OnnxInfo:
    """Check that `path` is an fwrd graph (metadata tag, `tiles` uint8 [batch, T, T, 3], outputs).

    Reads it with `onnx`, or with onnxruntime on a machine that has only the runtime installed.
    """
    try:
        import onnx  # noqa: F401

        reader = _read_with_onnx
    except ImportError:
        reader = _read_with_onnxruntime
    try:
        meta, inputs, outputs = reader(path)
    except ImportError:
        raise DependencyMissing("reading an ONNX model needs onnx or onnxruntime: pip install fwrd[gpu]") from None
    except Exception as exc:  # DecodeError and friends: the file is not a model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path.name} is not an ONNX model ({first})") from None
    if meta.get(META_FORMAT) != FORMAT_TAG:
        raise ModelError(f"{path.name} is not an fwrd model (no {META_FORMAT}={FORMAT_TAG} metadata): "
                         "export it with fwrd-export")
    try:
        config = FWRDConfig.from_json(meta.get(META_CONFIG, ""))
    except FwrdError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    t = config.tile_size
    name, uint8, dims = inputs[0] if len(inputs) == 1 else ("", False, [])
    if name != INPUT_NAME or not uint8 or len(dims) != 4 or dims[1:] != [t, t, 3] or dims[0] > 0:
        found = ", ".join(f"{n} {d}" for n, _, d in inputs)
        raise ModelError(f"{path.name} must take one input {INPUT_NAME!r} uint8 [batch, {t}, {t}, 3] with a "
                         f"dynamic batch (found {found or 'none'})")
    if not {OUTPUT_SCORE, OUTPUT_AMAP} <= outputs:
        raise ModelError(f"{path.name} lacks the outputs {OUTPUT_SCORE!r} and {OUTPUT_AMAP!r}")
    precision = meta.get(META_PRECISION, "")
    if precision == "int8":
        raise ModelError(f"{path.name} is the int8 graph for ONNX Runtime on CPU: build the engine from the "
                         "fp16 or fp32 graph")
    if precision not in PRECISIONS:
        raise ModelError(f"{path.name} has unknown precision {precision!r} in {META_PRECISION}")
    return OnnxInfo(t, precision, meta[META_CONFIG], meta, sha256_file(path))


def choose_precision_mode(trt: Any, graph_precision: str, precision: str) -> str:
    """How to get an engine of `precision` from a graph of `graph_precision` on this TensorRT."""
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    if graph_precision == "fp16" and precision == "fp32":
        raise ModelError("the graph is fp16: export an fp32 graph (fwrd-export --precision fp32) "
                         "for an fp32 engine")
    if graph_precision == precision and strongly_typed:
        return MODE_STRONG
    if not fp16_flag:  # TensorRT 11: strongly typed only, fp32 graph + fp16 request
        raise ModelError(f"TensorRT {trt.__version__} builds strongly typed networks only, so an fp16 engine "
                         "needs the fp16 graph: export it with fwrd-export --precision fp16")
    return MODE_FP16_FLAG if precision == "fp16" else MODE_FP32


def constrain_norm_layers(trt: Any, network: Any) -> list[str]:
    """Pin reductions, norms, resizes and everything downstream of them (plus the elementwise
    products that feed a reduction) to fp32; the convolution stacks stay free to run in fp16."""
    layer_type = trt.LayerType
    seeds = {getattr(layer_type, n) for n in FP32_SEED_LAYERS if hasattr(layer_type, n)}
    elementwise = getattr(layer_type, "ELEMENTWISE", None)
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = defaultdict(list)
    for i, layer in enumerate(layers):
        for j in range(layer.num_outputs):
            producer[layer.get_output(j).name] = i
        for j in range(layer.num_inputs):
            tensor = layer.get_input(j)
            if tensor is not None:
                consumers[tensor.name].append(i)
    stack = [i for i, layer in enumerate(layers) if layer.type in seeds]
    for i in list(stack):  # x*x and f*f' overflow in fp16 before the sum even starts
        for j in range(layers[i].num_inputs):
            tensor = layers[i].get_input(j)
            p = producer.get(tensor.name) if tensor is not None else None
            if p is not None and layers[p].type == elementwise:
                stack.append(p)
    chosen: set[int] = set()
    while stack:
        i = stack.pop()
        if i in chosen:
            continue
        chosen.add(i)
        for j in range(layers[i].num_outputs):
            stack.extend(consumers.get(layers[i].get_output(j).name, []))
    names = []
    for i in sorted(chosen):
        layer = layers[i]
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(o.dtype not in floats for o in outputs):
            continue  # shape arithmetic and casts to integers have no float precision to pin
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        names.append(layer.name)
    return names


def _parser_message(parser: Any, path: Path) -> str:
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    if not errors:
        return f"TensorRT could not parse {path.name}"
    err = errors[0]
    try:
        node, op = err.node_name(), err.node_operator()
        where = f" at node {node!r} ({op})" if node or op else ""
        text = f"{err.desc()}{where}"
    except AttributeError:
        text = str(err)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return " ".join(f"TensorRT could not parse {path.name}: {text}{more}".split())


def _progress_monitor(trt: Any, log: Log) -> Any:
    """An IProgressMonitor that logs the nested build phases every few seconds (None if TRT lacks it)."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Progress(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.phases: dict[str, list[int]] = {}  # insertion order = nesting order
            self.last = 0.0

        def _emit(self, force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - self.last < PROGRESS_INTERVAL_S:
                return
            self.last = now
            text = " > ".join(f"{name} {step}/{total}" for name, (step, total) in self.phases.items())
            log(f"TensorRT build: {text}")

        # Callbacks run inside TensorRT's C++ build: never let an exception escape them.
        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                self.phases[phase_name] = [0, int(num_steps)]
                self._emit(force=parent_phase is None)
            except Exception:
                pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                if phase_name in self.phases:
                    self.phases[phase_name][0] = int(step) + 1
                self._emit()
            except Exception:
                pass
            return True

        def phase_finish(self, phase_name: str) -> None:
            self.phases.pop(phase_name, None)

    return _Progress()


def _atomic_write(path: Path, data: Any) -> None:
    """Write bytes (or any buffer, e.g. TensorRT's IHostMemory) to a temp name, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        f.write(data)


def _attach_timing_cache(config: Any, path: Path | None, log: Log) -> Any:
    """Load the timing cache from `path` when it suits this TensorRT and GPU, else start an empty one."""
    cache = None
    if path is not None and path.is_file():
        cache = config.create_timing_cache(path.read_bytes())
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            log(f"timing cache {path} is unreadable or from another TensorRT/GPU: starting a new one")
            cache = None
        else:
            log(f"reusing timing cache {path}")
    if cache is None:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _check_arguments(min_batch: int, opt_batch: int, max_batch: int, workspace_gb: float, precision: str) -> None:
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise FwrdError(f"batch range must satisfy 1 <= min <= opt <= max, "
                        f"got {min_batch}, {opt_batch}, {max_batch}")
    if not workspace_gb > 0:
        raise FwrdError(f"workspace must be positive, got {workspace_gb} GB")
    if precision not in PRECISIONS:
        raise FwrdError(f"TensorRT engine precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    *,
    min_batch: int = 1,
    opt_batch: int = 32,
    max_batch: int = 64,
    workspace_gb: float = 4.0,
    timing_cache: Path | None = None,
    precision: str = "fp16",
    log: Log = print,
) -> dict[str, Any]:
    """Build `plan_path` from `onnx_path` and write `<plan>.json` beside it; return that manifest.

    Raises InputNotFound (no ONNX file), DependencyMissing (no TensorRT, cuda-python or GPU),
    ModelError (not an fwrd graph, precision impossible on this TensorRT, parse or build failure).
    Nothing is written unless the build succeeds.
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    _check_arguments(min_batch, opt_batch, max_batch, workspace_gb, precision)
    if not onnx_path.is_file():
        raise InputNotFound(f"ONNX model not found: {onnx_path}")
    trt = load_tensorrt()
    gpu = device_properties()
    info = inspect_onnx(onnx_path)
    mode = choose_precision_mode(trt, info.precision, precision)
    t = info.tile_size
    shapes = {name: [b, t, t, 3] for name, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}
    workspace = int(workspace_gb * 2**30)
    log(f"building a TensorRT {trt.__version__} engine ({precision}, {mode}) from {onnx_path.name} on "
        f"{gpu['name']}: batches {min_batch}/{opt_batch}/{max_batch} of {t} px tiles, "
        f"workspace {workspace_gb:g} GiB")

    seen: set[str] = set()

    def once(message: str) -> None:
        if message not in seen:
            seen.add(message)
            log(message)

    logger = make_logger(trt, once)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode == MODE_STRONG else 0
    network = builder.create_network(flags)
    if network is None:
        raise ModelError(f"TensorRT could not create a network: {logger.last_error('unknown error')}")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise ModelError(_parser_message(parser, onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    pinned: list[str] = []
    if mode == MODE_FP16_FLAG:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = constrain_norm_layers(trt, network)
        log(f"kept {len(pinned)} norm/cosine/resize/mean layers in fp32")
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    if config.add_optimization_profile(profile) < 0:
        raise ModelError(f"TensorRT rejected the optimisation profile {shapes}: {logger.last_error('')}")
    cache = _attach_timing_cache(config, timing_cache, log)
    monitor = _progress_monitor(trt, log)
    if monitor is not None:
        config.progress_monitor = monitor
    else:
        log("TensorRT has no progress monitor here; the build can take several minutes")

    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - started
    if serialized is None:
        raise ModelError(f"TensorRT could not build the engine: {logger.last_error('unknown error')}")

    if timing_cache is not None:
        _atomic_write(timing_cache, (config.get_timing_cache() or cache).serialize())
    _atomic_write(plan_path, serialized)
    plan_sha = hashlib.sha256(serialized).hexdigest()
    manifest = {
        "format": MANIFEST_FORMAT,
        "fwrd_version": __version__,
        "tensorrt_version": str(trt.__version__),
        "gpu": gpu,
        "onnx": {"file": onnx_path.name, "sha256": info.sha256, "precision": info.precision},
        "plan_sha256": plan_sha,
        "plan_bytes": memoryview(serialized).nbytes,
        "input": INPUT_NAME,
        "tile_size": t,
        "profile": shapes,
        "precision": precision,
        "precision_mode": mode,
        "fp32_layers": pinned,
        "workspace_bytes": workspace,
        "timing_cache": str(timing_cache) if timing_cache is not None else None,
        "build_seconds": round(seconds, 2),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": json.loads(info.config_json),
        "onnx_metadata": info.metadata,
    }
    _atomic_write(manifest_path(plan_path), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    log(f"wrote {plan_path} ({manifest['plan_bytes'] / 2**20:.1f} MiB, built in {seconds:.1f} s) and "
        f"{manifest_path(plan_path).name}")
    return manifest
