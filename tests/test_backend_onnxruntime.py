"""ONNX Runtime backend and open_backend dispatch, on the stand-in model (tests/onnx_standin.py)."""

from __future__ import annotations

import sys
import types

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx_standin import build_standin, reference_scores

from fwrd.config import FORMAT_TAG, META_CONFIG, META_FORMAT, FWRDConfig
from fwrd.errors import DependencyMissing, InputNotFound, ModelError
from fwrd.runtime.backends import open_backend
from fwrd.runtime.backends.onnxruntime import OnnxRuntimeBackend, choose_providers, physical_cores

CONFIG = FWRDConfig(tile_size=32, mpp=0.5, threshold=0.4)


def _tiles(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return build_standin(tmp_path_factory.mktemp("ort") / "m.onnx", CONFIG)


def test_scores_match_numpy_reference_at_any_batch(small_model):
    backend = open_backend(small_model, threads=1)
    assert backend.name == "onnxruntime" and backend.config == CONFIG and backend.precision == "fp32"
    assert backend.device.startswith("cpu") and len(backend.model_sha256) == 64
    tiles = _tiles(5)
    score, amap = backend.infer(tiles)
    want_score, want_amap = reference_scores(tiles)
    assert score.dtype == np.float32 and score.shape == (5,) and amap.shape == (5, 8, 8)
    np.testing.assert_allclose(score, want_score, atol=1e-6)
    np.testing.assert_allclose(amap, want_amap, atol=1e-6)
    single = np.concatenate([backend.infer(tiles[i:i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(single, score, atol=1e-6)


def test_run_batches_yields_tags_in_order(small_model):
    backend = open_backend(small_model, threads=1)
    batches = [(k, _tiles(3, seed=k)) for k in range(4)]
    out = list(backend.run_batches(iter(batches)))
    assert [tag for tag, _, _ in out] == [0, 1, 2, 3]
    for (_, tiles), (_, score, _) in zip(batches, out):
        np.testing.assert_allclose(score, reference_scores(tiles)[0], atol=1e-6)


def test_fixed_batch_model_is_fed_in_padded_chunks(tmp_path):
    path = build_standin(tmp_path / "fixed.onnx", CONFIG, batch=4)
    backend = OnnxRuntimeBackend(path, threads=1)
    assert backend.max_batch == 4
    tiles = _tiles(6, seed=3)
    score, amap = backend.infer(tiles)
    assert score.shape == (6,) and amap.shape == (6, 8, 8)
    np.testing.assert_allclose(score, reference_scores(tiles)[0], atol=1e-6)


def test_wrong_tiles_are_refused(small_model):
    backend = open_backend(small_model, threads=1)
    with pytest.raises(ValueError, match="uint8 tiles of shape"):
        backend.infer(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[batch, 32, 32, 3\]"):
        backend.infer(np.zeros((2, 64, 64, 3), np.uint8))


def test_model_with_other_input_is_refused(tmp_path):
    path = build_standin(tmp_path / "float.onnx", CONFIG, input_dtype=TensorProto.FLOAT)
    with pytest.raises(ModelError, match="input 'tiles' is float32.*uint8"):
        open_backend(path)


def test_model_without_fwrd_metadata_is_refused(tmp_path):
    path = build_standin(tmp_path / "plain.onnx", CONFIG, metadata={"author": "someone"})
    with pytest.raises(ModelError, match="not an fwrd model"):
        open_backend(path)
    path = build_standin(tmp_path / "badcfg.onnx", CONFIG, metadata={META_FORMAT: FORMAT_TAG, META_CONFIG: "{"})
    with pytest.raises(ModelError, match="bad fwrd.config"):
        open_backend(path)


def test_not_a_model_and_missing_model(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(ModelError, match="junk.onnx: not an ONNX model"):
        open_backend(junk)
    with pytest.raises(InputNotFound, match="model not found"):
        open_backend(tmp_path / "missing.onnx")


def test_provider_preference():
    all_three = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(all_three) == all_three
    assert choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(all_three, "cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(DependencyMissing, match="no CUDAExecutionProvider"):
        choose_providers(["CPUExecutionProvider"], "cuda")
    with pytest.raises(ModelError):
        choose_providers(all_three, "tpu")


GPU_EPS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def _spy_sessions(monkeypatch, fail_on_gpu: bool = False) -> list[list]:
    """Pretend this ONNX Runtime has the GPU providers; record what each session attempt asked for."""
    from onnxruntime.capi import onnxruntime_inference_collection as collection

    tried: list[list] = []
    real = collection.InferenceSession._create_inference_session

    def create(self, providers, provider_options, disabled_optimizers=None):
        tried.append(list(providers or []))
        names = [p[0] if isinstance(p, tuple) else p for p in providers or []]
        if fail_on_gpu and set(names) & {"TensorrtExecutionProvider", "CUDAExecutionProvider"}:
            self._fallback_providers = ["CPUExecutionProvider"]  # set by ORT before the provider fails
            raise RuntimeError("CUDA failure 35: CUDA driver version is insufficient")
        return real(self, ["CPUExecutionProvider"], None, disabled_optimizers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_EPS))
    monkeypatch.setattr(collection.InferenceSession, "_create_inference_session", create)
    return tried


def test_onnxruntime_own_fallback_with_its_banner_off_stdout(small_model, monkeypatch, capsys):
    tried = _spy_sessions(monkeypatch, fail_on_gpu=True)
    backend = OnnxRuntimeBackend(small_model, threads=1, batch_size=16)
    assert len(tried) == 2 and tried[1] == ["CPUExecutionProvider"]  # one session, ORT's own retry
    name, options = tried[0][0]
    assert name == "TensorrtExecutionProvider" and tried[0][1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["trt_profile_min_shapes"] == "tiles:1x32x32x3"
    assert options["trt_profile_opt_shapes"] == options["trt_profile_max_shapes"] == "tiles:16x32x32x3"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(
        small_model.with_name(small_model.name + ".ort-trt"))
    assert capsys.readouterr().out == ""  # ORT prints "EP Error ... Falling back" to stdout: not here
    assert backend.providers == ["CPUExecutionProvider"] and backend.device.startswith("cpu")
    assert backend.notes == ["ONNX Runtime: EP Error CUDA failure 35: CUDA driver version is insufficient "
                             "Falling back to ['CPUExecutionProvider'] and retrying."]
    np.testing.assert_allclose(backend.infer(_tiles(2))[0], reference_scores(_tiles(2))[0], atol=1e-6)


def test_tensorrt_ep_cache_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    from fwrd.runtime.backends.onnxruntime import tensorrt_options

    model = build_standin(tmp_path / "m.onnx", CONFIG)
    model.with_name("m.onnx.ort-trt").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    options = tensorrt_options(model, 32, 8)
    assert options["trt_engine_cache_path"] == str(tmp_path / "cache" / "fwrd" / "ort-tensorrt")
    assert options["trt_profile_max_shapes"] == "tiles:8x32x32x3"
    dense = tensorrt_options(model, 32, 8, region=2048)  # dense scoring: one region at a time, up to its side
    assert (dense["trt_profile_min_shapes"], dense["trt_profile_opt_shapes"], dense["trt_profile_max_shapes"]) == (
        "tiles:1x32x32x3", "tiles:1x2048x2048x3", "tiles:1x2048x2048x3")


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_auto_never_sends_the_cpu_int8_graph_to_a_gpu_provider(tmp_path, monkeypatch, target):
    from fakes.tiny_model import write_tiny_int8

    model = write_tiny_int8(tmp_path / "rd8.onnx", target)
    tried = _spy_sessions(monkeypatch)
    backend = OnnxRuntimeBackend(model, threads=1)
    names = [p[0] if isinstance(p, tuple) else p for p in tried[0]]
    if target == "cpu":
        assert names == ["CPUExecutionProvider"]
        assert backend.notes == ["rd8.onnx is the int8 CPU graph: running it on the CPU although a GPU provider is "
                                 "available (export fp16, or int8 with --target tensorrt, for the GPU)"]
        with pytest.raises(ModelError, match=r"rd8.onnx is the int8 graph for ONNX Runtime on CPU .* does not run "
                                             r"on CUDAExecutionProvider"):
            OnnxRuntimeBackend(model, threads=1, device="cuda")
    else:  # the symmetric-int8 TensorRT form is what the GPU providers are for
        assert names == GPU_EPS and backend.notes == []


def test_threads_default_to_physical_cores(small_model):
    assert physical_cores() >= 1
    assert f"({physical_cores()} threads)" in OnnxRuntimeBackend(small_model).device
    assert "(1 threads)" in OnnxRuntimeBackend(small_model, threads=1).device


def _fake_tensorrt(monkeypatch, available=True, reason="ok"):
    calls = []
    module = types.ModuleType("fwrd.runtime.backends.tensorrt")

    class FakeBackend:
        name, device, precision, config, max_batch = "tensorrt", "cuda:0", "fp16", CONFIG, 64
        notes: list[str] = []  # open_backend adds the self-test's note (no verification set beside rd.plan)

        @classmethod
        def from_plan(cls, path, batch_size, dense=False, region=None):
            calls.append((path, batch_size) + ((dense, region) if dense else ()))
            return cls()

    module.TensorRTBackend = FakeBackend
    module.tensorrt_status = lambda: (available, reason)
    monkeypatch.setitem(sys.modules, "fwrd.runtime.backends.tensorrt", module)
    return calls


def test_engine_dispatches_to_tensorrt(tmp_path, monkeypatch):
    plan = tmp_path / "rd.plan"
    plan.write_bytes(b"engine bytes")
    calls = _fake_tensorrt(monkeypatch)
    backend = open_backend(plan, "auto", batch_size=32)
    assert calls == [(plan, 32)] and backend.name == "tensorrt"
    assert backend.model_sha256 and backend.model_path == plan
    open_backend(plan, "tensorrt", batch_size=8)
    assert calls[-1] == (plan, 8)
    open_backend(plan, "tensorrt", dense=True, region=1024)
    assert calls[-1] == (plan, 16, True, 1024)


def test_tensorrt_unavailable_says_why(tmp_path, monkeypatch):
    plan = tmp_path / "rd.plan"
    plan.write_bytes(b"engine bytes")
    _fake_tensorrt(monkeypatch, available=False, reason="TensorRT is not installed: pip install fwrd[gpu]")
    with pytest.raises(DependencyMissing, match="rd.plan: TensorRT is not installed"):
        open_backend(plan)


def test_backend_and_file_kind_must_agree(tmp_path, small_model):
    plan = tmp_path / "rd.plan"
    plan.write_bytes(b"engine bytes")
    with pytest.raises(ModelError, match="runs on the tensorrt backend"):
        open_backend(plan, "onnxruntime")
    with pytest.raises(ModelError, match="tensorrt backend runs an engine"):
        open_backend(small_model, "tensorrt")
    with pytest.raises(ModelError, match="unknown backend"):
        open_backend(small_model, "cuda")
