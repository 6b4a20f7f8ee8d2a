"""The TensorRT engine builder against the fake TensorRT 10.8 / 10.13 / 11 (not a real GPU)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from fakes import fake_trt, install  # noqa: F401  (fixtures)
from fakes.fake_cuda import FakeGPU
from fakes.tiny_model import tiny_verification, write_tiny_int8, write_tiny_model

from fwrd import __version__
from fwrd.config import FORMAT_TAG, META_FORMAT
from fwrd.errors import DependencyMissing, ExportGateFailed, FwrdError, InputNotFound, ModelError
from fwrd.export.tensorrt_build import build_engine
from fwrd.runtime.backends.tensorrt import MANIFEST_FORMAT, TensorRTBackend, manifest_path, process_logger

NORM_LAYERS = {"cos_prod", "cos_dot", "t_sq", "t_sumsq", "t_norm", "s_sq", "s_sumsq", "s_norm", "norm_prod",
               "norm_clip", "cos_div", "one_minus_cos", "score_mean"}


def _build(tmp_path: Path, graph: str = "fp16", **kwargs) -> tuple[dict, list[str]]:
    lines: list[str] = []
    onnx_path = tmp_path / "rd.onnx"
    if not onnx_path.exists():
        write_tiny_model(onnx_path, precision=graph)
    kwargs.setdefault("opt_batch", 4)
    kwargs.setdefault("max_batch", 8)
    kwargs.setdefault("verification", tiny_verification(onnx_path))
    return build_engine(onnx_path, tmp_path / "rd.plan", log=lines.append, **kwargs), lines


def test_fp16_graph_is_strongly_typed_on_every_version(fake_trt, tmp_path):
    manifest, lines = _build(tmp_path)
    rec = fake_trt.state.builds[-1]
    assert rec.succeeded and not rec.explicit_batch
    assert rec.workspace == 4 * 2**30
    assert rec.profiles == [{"tiles": [(1, 32, 32, 3), (4, 32, 32, 3), (8, 32, 32, 3)]}]
    # STRONGLY_TYPED exists since 10.0 (bit 1); TensorRT 11 renumbered it to bit 0 (bit 1 is
    # PREFER_JIT_PYTHON_PLUGINS there), so a literal 1 << 1 would ask 11 for something else entirely.
    assert rec.network_flags == (1 << 0 if fake_trt.trt.__version__.startswith("11") else 1 << 1)
    assert manifest["precision_mode"] == "strongly-typed" and rec.strongly_typed
    assert rec.builder_flags == {"TF32"} and rec.fp32_layers == []  # no precision flags; TF32 is the default
    assert rec.phases == ["Building engine", "Tactic selection"] and rec.steps > 0
    assert any(line.startswith("TensorRT build: Building engine") for line in lines)


def test_fp32_graph_to_fp16_engine(fake_trt, tmp_path):
    if fake_trt.trt.__version__.startswith("11"):
        with pytest.raises(ModelError, match=r"strongly typed networks only.*--precision fp16"):
            _build(tmp_path, graph="fp32")
        assert not (tmp_path / "rd.plan").exists()
        return
    manifest, _ = _build(tmp_path, graph="fp32")
    rec = fake_trt.state.builds[-1]
    assert manifest["precision_mode"] == "fp16-flag" and manifest["precision"] == "fp16"
    assert rec.builder_flags == {"FP16", "OBEY_PRECISION_CONSTRAINTS", "TF32"} and not rec.strongly_typed
    assert set(manifest["fp32_layers"]) == NORM_LAYERS  # the convolutions stay free to use fp16
    assert fake_trt.state.reduced_convs == ["teacher_conv", "student_conv"]
    assert manifest["verification"]["precision"] == "fp16" and manifest["verification"]["passed"]


def test_fp32_engine_has_tf32_off_unless_asked(fake_trt, tmp_path):
    manifest, _ = _build(tmp_path, graph="fp32", precision="fp32")
    rec = fake_trt.state.builds[-1]
    assert rec.builder_flags == set() and rec.fp32_layers == [] and fake_trt.state.reduced_convs == []
    assert manifest["precision_mode"] == "strongly-typed" and manifest["tf32"] is False
    gate = manifest["verification"]
    assert gate["precision"] == "fp32" and gate["runner"] == "tensorrt" and gate["max_rel_delta"] <= 1e-4
    # With TF32 (TensorRT's default) the same engine moves scores by more than the fp32 gate allows:
    # it is only accepted under --tf32, gated like fp16.
    manifest, _ = _build(tmp_path, graph="fp32", precision="fp32", tf32=True)
    assert fake_trt.state.builds[-1].builder_flags == {"TF32"} and manifest["tf32"] is True
    assert fake_trt.state.reduced_convs == ["teacher_conv", "student_conv"]
    gate = manifest["verification"]
    assert gate["precision"] == "tf32" and gate["passed"] and gate["max_rel_delta"] > 1e-4
    with pytest.raises(ModelError, match="the graph is fp16"):
        build_engine(write_tiny_model(tmp_path / "h.onnx", precision="fp16"), tmp_path / "h.plan",
                     verification=tiny_verification(tmp_path / "h.onnx"), precision="fp32", log=lambda _: None)


def test_engine_that_misses_its_gate_is_not_written(fake_trt, tmp_path):
    onnx_path = write_tiny_model(tmp_path / "rd.onnx", precision="fp16")
    checks = tiny_verification(onnx_path)
    checks.reference = checks.reference * 1.02  # what PyTorch said differs by 2 %: the engine must fail
    cache = tmp_path / "rd.timing"
    with pytest.raises(ExportGateFailed, match=r"^fp16 engine failed its accuracy gate: max \|delta score\|"):
        _build(tmp_path, verification=checks, timing_cache=cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rd.onnx", "rd.timing"]  # the cache stays useful


def test_int8_engine_from_the_tensorrt_graph(fake_trt, tmp_path):
    onnx_path = write_tiny_int8(tmp_path / "rd.onnx", "tensorrt")
    manifest, _ = _build(tmp_path, precision="int8")
    rec = fake_trt.state.builds[-1]
    assert manifest["precision_mode"] == "strongly-typed" and rec.strongly_typed and rec.builder_flags == {"TF32"}
    assert fake_trt.state.reduced_convs == []  # convolutions behind DequantizeLinear run as int8 kernels
    assert manifest["verification"]["precision"] == "int8" and manifest["verification"]["passed"]
    assert manifest["onnx"]["precision"] == "int8"
    with pytest.raises(ModelError, match="int8 engine is built from the int8 TensorRT graph"):
        build_engine(onnx_path, tmp_path / "x.plan", verification=tiny_verification(onnx_path), precision="fp16",
                     log=lambda _: None)


def test_cpu_int8_graph_never_reaches_tensorrt(fake_trt, tmp_path):
    onnx_path = write_tiny_int8(tmp_path / "rd.onnx", "cpu")
    with pytest.raises(ModelError, match=r"int8 graph for ONNX Runtime on CPU .*--target tensorrt"):
        build_engine(onnx_path, tmp_path / "rd.plan", verification=tiny_verification(onnx_path),
                     precision="int8", log=lambda _: None)
    assert fake_trt.state.parsed_files == []


def test_uint8_intermediate_is_refused_before_parsing(fake_trt, tmp_path):
    onnx_path = write_tiny_model(tmp_path / "rd.onnx", precision="fp16", transpose_first=True)
    with pytest.raises(ModelError) as info:
        build_engine(onnx_path, tmp_path / "rd.plan", verification=tiny_verification(onnx_path),
                     log=lambda _: None)
    assert str(info.value) == ("TensorRT's ONNX parser would refuse rd.onnx: x_u8: UINT8 from Transpose; "
                               "TensorRT takes UINT8 only as a graph input or output")
    assert fake_trt.state.parsed_files == [] and not (tmp_path / "rd.plan").exists()


def test_manifest_records_what_the_runtime_checks(fake_trt, tmp_path):
    manifest, lines = _build(tmp_path, min_batch=2, timing_cache=tmp_path / "tc.bin")
    plan = tmp_path / "rd.plan"
    on_disk = json.loads(manifest_path(plan).read_text())
    assert on_disk == manifest
    assert manifest["format"] == MANIFEST_FORMAT and manifest["fwrd_version"] == __version__
    assert manifest["tensorrt_version"] == fake_trt.trt.__version__
    assert manifest["gpu"] == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert manifest["onnx"]["sha256"] == hashlib.sha256((tmp_path / "rd.onnx").read_bytes()).hexdigest()
    assert manifest["plan_sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()
    assert manifest["profile"] == {"min": [2, 32, 32, 3], "opt": [4, 32, 32, 3], "max": [8, 32, 32, 3]}
    assert manifest["precision"] == "fp16" and manifest["tile_size"] == 32
    assert manifest["config"]["tile_size"] == 32 and manifest["config"]["threshold"] == 0.5
    assert manifest["onnx_metadata"][META_FORMAT] == FORMAT_TAG
    assert manifest["timing_cache"] == str(tmp_path / "tc.bin")
    gate = manifest["verification"]  # the engine gate ran at the profile's smallest and largest batch
    assert gate["passed"] and gate["runner"] == "tensorrt" and gate["batches"] == [2, 8] and gate["tiles"] == 12
    assert any(line.startswith("fp16 (tensorrt) vs PyTorch fp32 on 12 tiles") for line in lines)


def test_timing_cache_is_saved_and_reused(fake_trt, tmp_path):
    cache = tmp_path / "cache" / "rd.timing"
    _build(tmp_path, timing_cache=cache)
    first = fake_trt.state.builds[-1]
    assert cache.is_file() and first.timing_misses == 2 and first.timing_hits == 0
    _, lines = _build(tmp_path, timing_cache=cache)
    second = fake_trt.state.builds[-1]
    assert second.timing_hits == 2 and second.timing_misses == 0
    assert f"reusing timing cache {cache}" in lines
    assert not list(cache.parent.glob(".*tmp"))


def test_unusable_timing_cache_starts_fresh(monkeypatch, tmp_path):
    cache = tmp_path / "rd.timing"
    cache.write_bytes(b"not a timing cache")
    env = install(monkeypatch, "10.13.3")
    _, lines = _build(tmp_path, timing_cache=cache)
    assert any("starting a new one" in line for line in lines)
    assert env.state.builds[-1].timing_misses == 2
    # A cache written by another TensorRT version is refused by set_timing_cache, then replaced.
    env = install(monkeypatch, "11.4.0")
    _, lines = _build(tmp_path, timing_cache=cache)
    assert any("starting a new one" in line for line in lines)
    assert env.state.builds[-1].timing_hits == 0
    _build(tmp_path, timing_cache=cache)
    assert env.state.builds[-1].timing_hits == 2


def test_failed_build_leaves_previous_outputs_alone(fake_trt, tmp_path):
    _build(tmp_path)
    plan, manifest = tmp_path / "rd.plan", manifest_path(tmp_path / "rd.plan")
    before = plan.read_bytes(), manifest.read_bytes()
    fake_trt.state.fail_build = True
    with pytest.raises(ModelError, match="could not build the engine: .*out of memory") as info:
        _build(tmp_path)
    assert "\n" not in str(info.value)
    assert (plan.read_bytes(), manifest.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rd.onnx", "rd.plan", "rd.plan.json"]


def test_interrupted_write_leaves_no_partial_plan(fake_trt, tmp_path, monkeypatch):
    def fail_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fwrd.atomic.os.replace", fail_replace)
    with pytest.raises(OSError):
        _build(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rd.onnx"]


def test_parser_errors_in_one_line(fake_trt, tmp_path):
    onnx_path = write_tiny_model(tmp_path / "rd.onnx", precision="fp16", extra_op="Mystery")
    with pytest.raises(ModelError) as info:
        build_engine(onnx_path, tmp_path / "rd.plan", verification=tiny_verification(write_tiny_model(
                     tmp_path / "plain.onnx", precision="fp16")), max_batch=8, opt_batch=4, log=lambda _: None)
    assert str(info.value) == ("TensorRT could not parse rd.onnx: No importer registered for op: Mystery at "
                               "node 'mystery' (Mystery)")
    assert not (tmp_path / "rd.plan").exists()


def test_inputs_that_are_not_fwrd_graphs(fake_trt, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    checks = tiny_verification(write_tiny_model(tmp_path / "x.onnx"))
    with pytest.raises(ModelError, match="bad.onnx: not an ONNX model"):
        build_engine(bad, tmp_path / "rd.plan", verification=checks, log=lambda _: None)
    import onnx

    model = onnx.load(str(write_tiny_model(tmp_path / "x.onnx")))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="plain.onnx is not an fwrd model"):
        build_engine(tmp_path / "plain.onnx", tmp_path / "rd.plan", verification=checks, log=lambda _: None)
    with pytest.raises(InputNotFound, match="ONNX model not found"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "rd.plan", verification=checks, log=lambda _: None)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_batch": 4, "opt_batch": 2}, "min <= opt <= max"),
    ({"min_batch": 0}, "min <= opt <= max"),
    ({"workspace_gb": 0}, "workspace must be positive"),
    ({"precision": "bf16"}, "precision must be one of fp16, fp32, int8"),
])
def test_bad_arguments(fake_trt, tmp_path, kwargs, message):
    with pytest.raises(FwrdError, match=message):
        _build(tmp_path, **kwargs)


def test_progress_without_a_monitor(fake_trt, tmp_path, monkeypatch):
    monkeypatch.delattr(fake_trt.trt, "IProgressMonitor")
    manifest, lines = _build(tmp_path)
    assert any("no progress monitor" in line for line in lines)
    assert not any(line.startswith("TensorRT build:") for line in lines)
    assert (tmp_path / "rd.plan").is_file() and manifest["plan_bytes"] > 0


def test_missing_tensorrt_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx_path = write_tiny_model(tmp_path / "rd.onnx")
    with pytest.raises(DependencyMissing) as info:
        build_engine(onnx_path, tmp_path / "rd.plan", verification=tiny_verification(onnx_path), log=lambda _: None)
    message = str(info.value)
    assert message.startswith("TensorRT is not installed") and "pip install fwrd[gpu]" in message
    assert "NVIDIA GPU" in message and "\n" not in message


@pytest.mark.parametrize("failure", ["code", "dlopen"])
def test_no_gpu_is_one_clear_line(monkeypatch, tmp_path, failure):
    onnx_path = write_tiny_model(tmp_path / "rd.onnx")
    checks = tiny_verification(onnx_path)
    install(monkeypatch, "10.13.3", FakeGPU(present=False, failure=failure))
    with pytest.raises(DependencyMissing, match=r"^no usable NVIDIA GPU .*pip install fwrd\[gpu\]"):
        build_engine(onnx_path, tmp_path / "rd.plan", verification=checks, log=lambda _: None)


def test_fake_rejects_removed_api(fake_trt, tmp_path):
    """The fake is only useful if it fails the way TensorRT 10/11 would on old tutorials' calls."""
    trt = fake_trt.trt
    logger = trt.Logger()
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    engine_calls = ["num_bindings", "get_binding_index", "binding_is_input"]
    for obj, name in [(builder, "build_engine"), (config, "max_workspace_size"), (trt, "execute_async_v2")]:
        with pytest.raises(AttributeError):
            getattr(obj, name)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(write_tiny_model(tmp_path / "rd.onnx")))
    if trt.__version__.startswith("11"):
        assert not hasattr(trt.BuilderFlag, "FP16")
        assert not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
        with pytest.raises(AttributeError):
            network.get_layer(0).precision = trt.float32
        for name in ("platform_has_fast_fp16",):
            with pytest.raises(AttributeError):
                getattr(builder, name)
    else:
        assert hasattr(trt.BuilderFlag, "FP16") and builder.platform_has_fast_fp16
    strongly_typed = int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # since 10.0; bit 0 in 11
    assert strongly_typed == (0 if trt.__version__.startswith("11") else 1)
    profile = builder.create_optimization_profile()
    profile.set_shape("tiles", (1, 32, 32, 3), (1, 32, 32, 3), (2, 32, 32, 3))
    config.add_optimization_profile(profile)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    assert engine is not None
    context = engine.create_execution_context()
    for name in engine_calls:
        with pytest.raises(AttributeError):
            getattr(engine, name)
    for name in ("execute_async_v2", "set_binding_shape"):
        with pytest.raises(AttributeError):
            getattr(context, name)
    recorded = {entry.split(".")[-1].rstrip("=") for entry in fake_trt.state.removed_accessed}
    expected = {"build_engine", "max_workspace_size", "execute_async_v2", "set_binding_shape", *engine_calls}
    if trt.__version__.startswith("11"):
        expected |= {"precision", "platform_has_fast_fp16"}
    assert recorded == expected
    fake_trt.state.removed_accessed.clear()  # this test touched them on purpose


@pytest.mark.parametrize("reader", ["onnx", "onnxruntime"])
def test_inspect_onnx_with_either_reader(tmp_path, monkeypatch, reader):
    import onnx

    from fwrd.export.tensorrt_build import inspect_onnx

    good = write_tiny_model(tmp_path / "good.onnx", precision="fp16")
    model = onnx.load(str(good))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    model.graph.node[0].op_type = "Identity"
    del model.graph.node[0].attribute[:]
    onnx.save(model, str(tmp_path / "float_input.onnx"))
    model = onnx.load(str(good))
    next(p for p in model.metadata_props if p.key == "fwrd.precision").value = "int8"
    onnx.save(model, str(tmp_path / "int8.onnx"))
    if reader == "onnxruntime":
        monkeypatch.setitem(sys.modules, "onnx", None)
    info = inspect_onnx(good)
    assert (info.tile_size, info.precision) == (32, "fp16")
    assert info.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match=r"must take one input 'tiles' uint8 \[batch, 32, 32, 3\]"):
        inspect_onnx(tmp_path / "float_input.onnx")
    with pytest.raises(ModelError, match="int8 graph for ONNX Runtime on CPU"):
        inspect_onnx(tmp_path / "int8.onnx")


def test_one_logger_keeps_error_text_while_a_builder_lives(fake_trt, tmp_path):
    """TensorRT keeps one logger per process: a runtime made with a second logger while a builder lives
    reports into the first. fwrd's builder and runtime share one, so the runtime's error text survives."""
    trt = fake_trt.trt
    _build(tmp_path)
    builder = trt.Builder(process_logger(trt))  # alive while the plan is loaded, as during the engine gate
    manifest = json.loads(manifest_path(tmp_path / "rd.plan").read_text())
    fake_trt.gpu.minor = 9  # the plan's compute capability 9.0 no longer matches: deserialisation fails
    from fwrd.config import FWRDConfig

    with pytest.raises(ModelError, match=r"could not load the plan: .*incompatible device, expecting compute 9\.9 "
                                         r"got compute 9\.0"):
        TensorRTBackend(trt, (tmp_path / "rd.plan").read_bytes(), manifest, FWRDConfig.from_dict(manifest["config"]),
                        8, {"index": 0, "name": fake_trt.gpu.name, "compute_capability": "9.9"})
    said: list[str] = []
    with process_logger(trt).routed(said.append):
        trt.Runtime(trt.Logger())  # a second logger is ignored, and TensorRT says so into the first
    assert any("differs from one already provided" in line for line in said)
    del builder
