"""Build a TensorRT engine (`rd.plan`) from fwrd's fused ONNX graph, check it, and write the manifest.

Steps: validate the ONNX file (fwrd I/O and metadata, TensorRT's parser rules checked statically) ->
pick the precision mode -> parse -> one optimisation profile on `tiles` over the batch range (and, for a
graph with dynamic height and width, a second one for dense scoring's regions: batch 1, one tile up to
`region_side` pixels a side), a workspace limit, a persisted timing cache and a progress monitor ->
build -> deserialise the engine and run it on the export's verification tiles (the engine gate, the same
bounds as the ONNX gate of its precision; with a region profile, the same tiles again as one-tile
regions through it, scored by the dense rule) -> only then write the plan and `rd.plan.json` atomically.

Networks are strongly typed (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`, present since TensorRT 10.0
and the only kind in 11, where it is bit 0 rather than 1: the mask is `1 << int(flag)`), so the graph's
own types decide: the fp16 graph gives an fp16 engine, the int8 TensorRT graph (explicit Q/DQ) an int8
one. The one exception is an fp16 engine from the fp32 graph on TensorRT 10: a weakly typed network with
`BuilderFlag.FP16` and fp32 constraints on the norm/cosine/resize/mean layers, which overflow or lose
their epsilon in fp16. TF32 is on by default in TensorRT and rounds convolution inputs to 10-bit
mantissas, so fp32 engines are built with it off unless asked for (`tf32=True`, then gated as "tf32").
`EXPLICIT_BATCH` is never used (deprecated in 10, gone in 11).

    manifest = build_engine("rd.onnx", "rd.plan", verification=VerificationSet.load("rd.onnx.verify.npz"),
                            opt_batch=32, max_batch=64, timing_cache=Path("rd.timing.cache"))

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
    META_TARGET,
    OUTPUT_AMAP,
    OUTPUT_MAPS,
    OUTPUT_SCORE,
    FWRDConfig,
)
from fwrd.errors import DependencyMissing, FwrdError, InputNotFound, ModelError
from fwrd.evaluation.gate import VerificationSet, VerifyReport, compare_scores, enforce
from fwrd.runtime.backends.tensorrt import (
    MANIFEST_FORMAT,
    TensorRTBackend,
    load_tensorrt,
    manifest_path,
    process_logger,
)
from fwrd.runtime.cuda_memory import device_properties
from fwrd.runtime.regions import GPU_SIDE
from fwrd.runtime.window_scores import scores_at

PRECISIONS = ("fp16", "fp32", "int8")
CPU_INT8 = ("is the int8 graph for ONNX Runtime on CPU (uint8 activations, non-zero zero points), which "
            "TensorRT's parser refuses: export the TensorRT form with fwrd-export --precision int8 --target tensorrt")
# Layer types whose arithmetic must stay fp32 in a weakly typed fp16 build, and everything downstream.
FP32_SEED_LAYERS = ("REDUCE", "NORMALIZATION", "UNARY", "RESIZE", "SOFTMAX")
MODE_STRONG = "strongly-typed"  # types come from the graph
MODE_FP16_FLAG = "fp16-flag"  # TensorRT 10, fp32 graph: weakly typed + BuilderFlag.FP16 + fp32 norm layers
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
    regions: bool = False  # dynamic height and width, with the per-scale maps: takes a region profile


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


Read = tuple[dict[str, str], list[tuple[str, bool, list[int]]], set[str], Any]  # meta, inputs, outputs, model


def _read_with_onnx(path: Path) -> Read:
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
    return {p.key: p.value for p in model.metadata_props}, inputs, {o.name for o in graph.output}, model


def _read_with_onnxruntime(path: Path) -> Read:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type == "tensor(uint8)", [d if isinstance(d, int) else -1 for d in i.shape])
              for i in session.get_inputs()]
    meta = dict(session.get_modelmeta().custom_metadata_map)
    return meta, inputs, {o.name for o in session.get_outputs()}, None


def inspect_onnx(path: Path) -> OnnxInfo:
    """Check that `path` is an fwrd graph (metadata tag, `tiles` uint8 [batch, T, T, 3], outputs) that
    TensorRT's parser takes (`fwrd.export.tensorrt_rules`, when `onnx` is installed).

    Reads it with `onnx`, or with onnxruntime on a machine that has only the runtime installed.
    """
    from fwrd.runtime.onnx_data import refuse_outside_data

    refuse_outside_data(path)  # TensorRT's parser and ONNX Runtime would follow it
    try:
        import onnx  # noqa: F401

        reader = _read_with_onnx
    except ImportError:
        reader = _read_with_onnxruntime
    try:
        meta, inputs, outputs, model = reader(path)
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
    regions = dims[1:] == [-1, -1, 3] and set(OUTPUT_MAPS) <= outputs
    if name != INPUT_NAME or not uint8 or len(dims) != 4 or (dims[1:] != [t, t, 3] and not regions) or dims[0] > 0:
        found = ", ".join(f"{n} {d}" for n, _, d in inputs)
        raise ModelError(f"{path.name} must take one input {INPUT_NAME!r} uint8 [batch, {t}, {t}, 3] with a "
                         f"dynamic batch, or [batch, height, width, 3] with the per-scale maps "
                         f"(found {found or 'none'})")
    if not {OUTPUT_SCORE, OUTPUT_AMAP} <= outputs:
        raise ModelError(f"{path.name} lacks the outputs {OUTPUT_SCORE!r} and {OUTPUT_AMAP!r}")
    precision = meta.get(META_PRECISION, "")
    if precision == "int8" and meta.get(META_TARGET) != "tensorrt":
        raise ModelError(f"{path.name} {CPU_INT8}")
    if precision not in PRECISIONS:
        raise ModelError(f"{path.name} has unknown precision {precision!r} in {META_PRECISION}")
    if model is not None:
        from fwrd.export.tensorrt_rules import tensorrt_problems

        problems = tensorrt_problems(model)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ModelError(f"TensorRT's ONNX parser would refuse {path.name}: {problems[0]}{more}")
    return OnnxInfo(t, precision, meta[META_CONFIG], meta, sha256_file(path), regions)


def choose_precision_mode(trt: Any, graph_precision: str, precision: str) -> str:
    """How to get an engine of `precision` from a graph of `graph_precision` on this TensorRT."""
    if (graph_precision == "int8") != (precision == "int8"):
        raise ModelError("an int8 engine is built from the int8 TensorRT graph and from nothing else: export it "
                         "with fwrd-export --precision int8 --target tensorrt and build with --precision int8")
    if graph_precision == "fp16" and precision == "fp32":
        raise ModelError("the graph is fp16: export an fp32 graph (fwrd-export --precision fp32) "
                         "for an fp32 engine")
    if graph_precision == precision:
        if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            raise DependencyMissing(f"TensorRT {trt.__version__} has no strongly typed networks: fwrd needs 10.0+")
        return MODE_STRONG
    if not hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 11: strongly typed only, fp32 graph + fp16 request
        raise ModelError(f"TensorRT {trt.__version__} builds strongly typed networks only, so an fp16 engine "
                         "needs the fp16 graph: export it with fwrd-export --precision fp16")
    return MODE_FP16_FLAG


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


def _check_arguments(min_batch: int, opt_batch: int, max_batch: int, workspace_gb: float, precision: str,
                     region_side: int) -> None:
    """Refuse impossible build settings before TensorRT is even imported."""
    if region_side < 32 or region_side % 32:
        raise FwrdError(f"the region profile's side must be a positive multiple of 32, got {region_side}")
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
    verification: VerificationSet,
    min_batch: int = 1,
    opt_batch: int = 32,
    max_batch: int = 64,
    workspace_gb: float = 4.0,
    timing_cache: Path | None = None,
    precision: str = "fp16",
    tf32: bool = False,
    region_side: int = GPU_SIDE,
    log: Log = print,
) -> dict[str, Any]:
    """Build `plan_path` from `onnx_path`, gate it on `verification`, write `<plan>.json` beside it; return
    that manifest.

    Raises InputNotFound (no ONNX file), DependencyMissing (no TensorRT, cuda-python or GPU),
    ModelError (not an fwrd graph, precision impossible on this TensorRT, parse or build failure),
    ExportGateFailed (the engine's scores are off). Nothing but the timing cache is written unless the
    engine passes its gate.
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    _check_arguments(min_batch, opt_batch, max_batch, workspace_gb, precision, region_side)
    if not onnx_path.is_file():
        raise InputNotFound(f"ONNX model not found: {onnx_path}")
    trt = load_tensorrt()
    gpu = device_properties()
    info = inspect_onnx(onnx_path)
    mode = choose_precision_mode(trt, info.precision, precision)
    t = info.tile_size
    if verification.tiles.shape[1:] != (t, t, 3):
        raise ModelError(f"the verification tiles are {verification.tiles.shape[1:]}, the graph takes {t} px tiles")
    shapes = {name: [b, t, t, 3] for name, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}
    dense = info.regions and precision != "int8"  # fwrd-run --dense refuses int8 (its gate covers tiles only)
    if dense and region_side < t:
        raise FwrdError(f"the region profile's side ({region_side}) must be at least one tile ({t} px)")
    regions = ({"min": [1, t, t, 3], "opt": [1, region_side, region_side, 3], "max": [1, region_side, region_side, 3]}
               if dense else None)
    workspace = int(workspace_gb * 2**30)
    region_text = f", regions of {t} to {region_side} px for dense scoring" if regions else ""
    log(f"building a TensorRT {trt.__version__} engine ({precision}, {mode}) from {onnx_path.name} on "
        f"{gpu['name']}: batches {min_batch}/{opt_batch}/{max_batch} of {t} px tiles{region_text}, "
        f"workspace {workspace_gb:g} GiB")

    seen: set[str] = set()

    def once(message: str) -> None:
        if message not in seen:
            seen.add(message)
            log(message)

    logger = process_logger(trt)
    with logger.routed(once):
        serialized, pinned, tf32_on, seconds = _build(
            trt, logger, onnx_path, mode, precision, tf32, [p for p in (shapes, regions) if p], workspace,
            timing_cache, log)
        gate = "tf32" if precision == "fp32" and tf32_on else precision
        manifest = {
            "format": MANIFEST_FORMAT,
            "fwrd_version": __version__,
            "tensorrt_version": str(trt.__version__),
            "gpu": gpu,
            "onnx": {"file": onnx_path.name, "sha256": info.sha256, "precision": info.precision},
            "plan_sha256": hashlib.sha256(serialized).hexdigest(),
            "plan_bytes": memoryview(serialized).nbytes,
            "input": INPUT_NAME,
            "tile_size": t,
            "profile": shapes,
            "region_profile": regions,
            "precision": precision,
            "precision_mode": mode,
            "tf32": tf32_on,
            "fp32_layers": pinned,
            "workspace_bytes": workspace,
            "timing_cache": str(timing_cache) if timing_cache is not None else None,
            "build_seconds": round(seconds, 2),
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": json.loads(info.config_json),
            "onnx_metadata": info.metadata,
        }
        log(f"engine gate: running the engine on {len(verification.tiles)} verification tiles...")
        report = gate_engine(trt, bytes(serialized), manifest, gpu, verification, gate,
                             batches=tuple(sorted({min_batch, max_batch})))
        region_report = gate_regions(trt, bytes(serialized), manifest, gpu, verification, gate) if regions else None
    log(report.summary())
    enforce(report, "engine")
    manifest["verification"] = report.to_dict()
    if region_report is not None:
        log(region_report.summary())
        enforce(region_report, "engine's region profile")
        manifest["verification_regions"] = region_report.to_dict()
    _atomic_write(plan_path, serialized)
    _atomic_write(manifest_path(plan_path), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    log(f"wrote {plan_path} ({manifest['plan_bytes'] / 2**20:.1f} MiB, built in {seconds:.1f} s) and "
        f"{manifest_path(plan_path).name}")
    return manifest


def _build(trt: Any, logger: Any, onnx_path: Path, mode: str, precision: str, tf32: bool,
           profiles: list[dict[str, list[int]]], workspace: int, timing_cache: Path | None,
           log: Log) -> tuple[Any, list[str], bool, float]:
    """Parse and build: (serialized plan, layers pinned to fp32, TF32 on?, seconds)."""
    mark = logger.mark()
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode == MODE_STRONG else 0
    network = builder.create_network(flags)
    if network is None:
        raise ModelError(f"TensorRT could not create a network: {logger.last_error('unknown error', mark)}")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise ModelError(_parser_message(parser, onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    tf32_flag = getattr(trt.BuilderFlag, "TF32", None)
    if tf32_flag is not None and precision == "fp32" and not tf32:
        config.clear_flag(tf32_flag)  # on by default: 10-bit mantissa inputs to fp32 convolutions
    tf32_on = tf32_flag is not None and bool(config.get_flag(tf32_flag))
    pinned: list[str] = []
    if mode == MODE_FP16_FLAG:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = constrain_norm_layers(trt, network)
        log(f"kept {len(pinned)} norm/cosine/resize/mean layers in fp32")
    for index, shapes in enumerate(profiles):  # 0: tile batches; 1: regions (TensorRTBackend.REGION_PROFILE)
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
        if config.add_optimization_profile(profile) != index:
            raise ModelError(f"TensorRT rejected the optimisation profile {shapes}: {logger.last_error('', mark)}")
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
        raise ModelError(f"TensorRT could not build the engine: {logger.last_error('unknown error', mark)}")
    if timing_cache is not None:  # valid whatever the gate says: the next build starts from it
        _atomic_write(timing_cache, (config.get_timing_cache() or cache).serialize())
    return serialized, pinned, tf32_on, seconds


def gate_engine(trt: Any, plan: bytes, manifest: dict[str, Any], gpu: dict[str, Any],
                verification: VerificationSet, gate: str, batches: tuple[int, ...]) -> VerifyReport:
    """Deserialise `plan` and score the verification tiles at each batch size; compare with PyTorch fp32."""
    config = FWRDConfig.from_dict(manifest["config"])
    scores = {}
    for batch in batches:
        with TensorRTBackend(trt, plan, manifest, config, batch, gpu) as backend:
            scores[batch] = backend.infer(verification.tiles)[0]
    return compare_scores(gate, verification.reference, scores, verification.is_tumor, config.threshold,
                          runner="tensorrt")


def gate_regions(trt: Any, plan: bytes, manifest: dict[str, Any], gpu: dict[str, Any],
                 verification: VerificationSet, gate: str) -> VerifyReport:
    """Score each verification tile as a one-tile region through the region profile, by the dense rule
    (fwrd.runtime.window_scores), and compare with PyTorch fp32: the isolated-tile score must be the
    per-tile score."""
    config = FWRDConfig.from_dict(manifest["config"])
    t = config.tile_size
    origin = [[0, 0]]
    with TensorRTBackend(trt, plan, manifest, config, int(manifest["profile"]["min"][0]), gpu, dense=True,
                         region=t) as backend:
        scores = [scores_at(maps, t, origin)[0]
                  for _, maps in backend.run_regions((k, tile) for k, tile in enumerate(verification.tiles))]
    return compare_scores(gate, verification.reference, {1: scores}, verification.is_tumor, config.threshold,
                          runner="tensorrt-regions")
