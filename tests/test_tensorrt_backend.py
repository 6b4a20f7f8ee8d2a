"""The TensorRT backend against the fake TensorRT 10.8 / 10.13 / 11 and fake cuda-python (not a real GPU).

The fake engine runs the ONNX graph with ONNX Runtime when its stream is synchronised, so these tests
compare the backend with ONNX Runtime directly and catch results read before the copy finished.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_trt, install  # noqa: F401  (fixtures)
from fakes.fake_cuda import FakeGPU
from fakes.tiny_model import ort_reference, random_tiles, tiny_verification, write_tiny_model

from fwrd.config import FORMAT_TAG, META_FORMAT
from fwrd.errors import InputNotFound, ModelError
from fwrd.export.tensorrt_build import build_engine
from fwrd.runtime.backends.tensorrt import (
    TensorRTBackend, manifest_path, plan_matches_device, read_manifest, tensorrt_status,
)

T = 32


def _engine(tmp_path: Path, min_batch: int = 1, max_batch: int = 8) -> tuple[Path, Path]:
    onnx_path = write_tiny_model(tmp_path / "rd.onnx", T, precision="fp16")
    plan = tmp_path / "rd.plan"
    build_engine(onnx_path, plan, verification=tiny_verification(onnx_path), min_batch=min_batch,
                 opt_batch=max_batch, max_batch=max_batch, log=lambda _: None)
    state = sys.modules["tensorrt"]._fake  # the engine gate loaded and ran the plan: count from here
    state.deserialize_calls = 0
    state.executions.clear()
    return onnx_path, plan


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_results_equal_onnxruntime_full_and_partial_batches(fake_trt, tmp_path):
    onnx_path, plan = _engine(tmp_path)
    tiles = random_tiles(21, T)
    ref_score, ref_amap = ort_reference(onnx_path, tiles)
    batches = [("a", tiles[:8]), ("b", tiles[8:16]), ("c", tiles[16:])]
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        out = list(backend.run_batches(batches))
        assert [tag for tag, _, _ in out] == ["a", "b", "c"]
        assert [len(score) for _, score, _ in out] == [8, 8, 5]
        _close(np.concatenate([s for _, s, _ in out]), ref_score)
        _close(np.concatenate([a for _, _, a in out]), ref_amap)
        score, amap = backend.infer(tiles[:3])  # one partial batch, synchronously
        assert score.dtype == np.float32 and amap.shape == (3, T // 4, T // 4)
        _close(score, ref_score[:3])
        _close(amap, ref_amap[:3])
        score, amap = backend.infer(tiles[:0])
        assert score.shape == (0,) and amap.shape == (0, T // 4, T // 4)
    assert [batch for _, batch in fake_trt.state.executions] == [8, 8, 5, 3]


def test_two_batches_in_flight_on_non_default_streams(fake_trt, tmp_path):
    onnx_path, plan = _engine(tmp_path)
    tiles = random_tiles(32, T, seed=1)
    gpu = fake_trt.gpu
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        gpu.calls.clear()
        results = list(backend.run_batches((i, tiles[i * 8:(i + 1) * 8]) for i in range(4)))
    assert gpu.max_in_flight == 2
    copies = gpu.calls_named("cudaMemcpyAsync")
    executions = gpu.calls_named("execute_async_v3")
    assert len(copies) == 4 * 3 and len(executions) == 4
    assert all(c.stream for c in copies + executions)  # never the default stream
    assert len({c.stream for c in executions}) == 2  # the two slots alternate
    # batch k+1 was copied in while batch k was still queued for compute on the other stream
    overlapped = [c for c in copies if c.kind == "cudaMemcpyHostToDevice" and c.in_flight >= 1]
    assert len(overlapped) == 3
    _close(np.concatenate([s for _, s, _ in results]), ort_reference(onnx_path, tiles)[0])


def test_producer_may_reuse_its_buffer(fake_trt, tmp_path):
    onnx_path, plan = _engine(tmp_path)
    tiles = random_tiles(24, T, seed=2)
    shared = np.empty((8, T, T, 3), np.uint8)

    def batches():
        for i in range(3):
            shared[:] = tiles[i * 8:(i + 1) * 8]  # overwritten as soon as the next batch is asked for
            yield i, shared

    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        scores = np.concatenate([s for _, s, _ in backend.run_batches(batches())])
    _close(scores, ort_reference(onnx_path, tiles)[0])


def test_partial_batch_below_profile_minimum_is_padded(fake_trt, tmp_path):
    onnx_path, plan = _engine(tmp_path, min_batch=4)
    tiles = random_tiles(2, T, seed=3)
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        score, amap = backend.infer(tiles)
    ref_score, ref_amap = ort_reference(onnx_path, tiles)
    _close(score, ref_score)
    _close(amap, ref_amap)
    assert fake_trt.state.executions[-1][1] == 4


def test_close_frees_everything(fake_trt, tmp_path):
    _, plan = _engine(tmp_path)
    gpu = fake_trt.gpu
    backend = TensorRTBackend.from_plan(plan, batch_size=8)
    assert gpu.live("pinned") == 6 and gpu.live("device") == 6 and len(gpu.user_streams()) == 2
    assert fake_trt.state.live_contexts == 2
    backend.close()
    backend.close()
    gc.collect()
    assert gpu.live("pinned") == 0 and gpu.live("device") == 0 and not gpu.user_streams()
    assert fake_trt.state.live_contexts == 0
    with pytest.raises(ValueError, match="closed"):
        backend.infer(random_tiles(1, T))


def test_stopping_early_leaves_no_work_queued(fake_trt, tmp_path):
    onnx_path, plan = _engine(tmp_path)
    tiles = random_tiles(24, T, seed=4)
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        stream = backend.run_batches((i, tiles[i * 8:(i + 1) * 8]) for i in range(3))
        tag, _, _ = next(stream)
        assert tag == 0
        stream.close()
        assert all(not queue for queue in fake_trt.gpu.streams.values())
        score, _ = backend.infer(tiles[16:])
        _close(score, ort_reference(onnx_path, tiles[16:])[0])


def test_bad_batches_are_refused(fake_trt, tmp_path):
    _, plan = _engine(tmp_path)
    with TensorRTBackend.from_plan(plan, batch_size=4) as backend:
        assert backend.max_batch == 4
        with pytest.raises(ValueError, match="exceeds the backend's batch size 4"):
            list(backend.run_batches([(0, random_tiles(5, T))]))
        with pytest.raises(ValueError, match="expected uint8 tiles"):
            backend.infer(np.zeros((2, T, T, 3), np.float32))
        score, _ = backend.infer(random_tiles(9, T))  # infer splits an oversized batch
        assert score.shape == (9,)


def test_backend_metadata(fake_trt, tmp_path):
    _, plan = _engine(tmp_path)
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        assert backend.tile_size == T and backend.config.threshold == 0.5
        assert backend.metadata[META_FORMAT] == FORMAT_TAG and backend.precision == "fp16"
        info = backend.describe()
        assert info["backend"] == "tensorrt" and info["device"] == "cuda:0 (NVIDIA H100 80GB HBM3)"
        assert info["tensorrt"] == fake_trt.trt.__version__


def test_refuses_plan_for_another_compute_capability_before_deserialising(monkeypatch, tmp_path):
    install(monkeypatch, "10.13.3")
    _, plan = _engine(tmp_path)
    env = install(monkeypatch, "10.13.3", FakeGPU(name="NVIDIA A100-SXM4-80GB", major=8, minor=0))
    with pytest.raises(ModelError) as info:
        TensorRTBackend.from_plan(plan, batch_size=8)
    assert str(info.value) == (
        "rd.plan: plan built for NVIDIA H100 80GB HBM3 (compute capability 9.0) with TensorRT 10.13.3; "
        "this machine has NVIDIA A100-SXM4-80GB (compute capability 8.0) with TensorRT 10.13.3: "
        "rebuild it here with fwrd-export --engine")
    assert env.state.deserialize_calls == 0
    ok, reason = plan_matches_device(read_manifest(plan))
    assert not ok and "NVIDIA A100-SXM4-80GB" in reason


def test_refuses_plan_for_another_tensorrt_before_deserialising(monkeypatch, tmp_path):
    install(monkeypatch, "10.8.0")
    _, plan = _engine(tmp_path)
    assert plan_matches_device(read_manifest(plan)) == (True, "")
    env = install(monkeypatch, "11.4.0")
    with pytest.raises(ModelError, match=r"with TensorRT 10\.8\.0; this machine has .* TensorRT 11\.4\.0"):
        TensorRTBackend.from_plan(plan, batch_size=8)
    assert env.state.deserialize_calls == 0
    # A manifest that lies about the version is caught by TensorRT itself, reported in one line.
    manifest = read_manifest(plan)
    manifest["tensorrt_version"] = "11.4.0"
    manifest_path(plan).write_text(json.dumps(manifest))
    expected = r"could not load the plan: .*expecting library version 11\.4\.0 got 10\.8\.0"
    with pytest.raises(ModelError, match=expected):
        TensorRTBackend.from_plan(plan, batch_size=8)


def test_refuses_batch_size_outside_the_profile(fake_trt, tmp_path):
    _, plan = _engine(tmp_path, min_batch=2, max_batch=8)
    for batch in (16, 1):
        with pytest.raises(ModelError, match=f"built for batches of 2 to 8 tiles, not {batch}"):
            TensorRTBackend.from_plan(plan, batch_size=batch)
    assert fake_trt.state.deserialize_calls == 0


def test_refuses_changed_or_unexplained_plans(fake_trt, tmp_path):
    _, plan = _engine(tmp_path)
    with pytest.raises(InputNotFound, match="TensorRT plan not found"):
        TensorRTBackend.from_plan(tmp_path / "other.plan", batch_size=8)
    plan.write_bytes(plan.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match the sha256 in its manifest"):
        TensorRTBackend.from_plan(plan, batch_size=8)
    manifest_path(plan).write_text("{not json")
    with pytest.raises(ModelError, match="rd.plan.json is not valid JSON"):
        TensorRTBackend.from_plan(plan, batch_size=8)
    manifest_path(plan).unlink()
    with pytest.raises(ModelError, match="rd.plan has no manifest rd.plan.json beside it"):
        TensorRTBackend.from_plan(plan, batch_size=8)
    assert fake_trt.state.deserialize_calls == 0


def test_plan_from_another_gpu_model_of_the_same_capability_loads_with_a_note(monkeypatch, tmp_path):
    install(monkeypatch, "10.13.3")
    onnx_path, plan = _engine(tmp_path)
    env = install(monkeypatch, "10.13.3", FakeGPU(name="NVIDIA H100 PCIe", major=9, minor=0))
    assert plan_matches_device(read_manifest(plan)) == (True, "")
    tiles = random_tiles(3, T)
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        _close(backend.infer(tiles)[0], ort_reference(onnx_path, tiles)[0])
        notes = backend.notes
    assert env.state.deserialize_calls == 1
    assert notes[0] == ("TensorRT WARNING: Using an engine plan file across different models of devices is not "
                        "recommended and is likely to affect performance or even cause errors.")
    assert notes[1].startswith("rd.plan: plan built on NVIDIA H100 80GB HBM3 (compute capability 9.0), running on "
                               "NVIDIA H100 PCIe (compute capability 9.0): same compute capability")


def test_stream_handle_rules_of_execute_async_v3(fake_trt, tmp_path):
    """execute_async_v3(size_t): an int or an __index__ object is the stream; getPtr() is not; a float fails."""
    _, plan = _engine(tmp_path)
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        slot = backend._slots[0]
        slot._set_batch(2)
        raw = slot.stream.stream
        assert slot.context.execute_async_v3(slot.stream.handle)
        assert slot.context.execute_async_v3(raw)  # pybind11 converts it through __index__
        assert not slot.context.execute_async_v3(raw.getPtr())  # an address, not a stream
        with pytest.raises(TypeError, match="incompatible function arguments"):
            slot.context.execute_async_v3(float(slot.stream.handle))
        slot.drain()


def test_tensorrt_status(monkeypatch):
    env = install(monkeypatch, "10.13.3")
    assert tensorrt_status() == (True, "TensorRT 10.13.3 on NVIDIA H100 80GB HBM3 (compute capability 9.0)")
    env.gpu.present = False
    ok, reason = tensorrt_status()
    assert not ok and reason.startswith("no usable NVIDIA GPU")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, reason = tensorrt_status()
    assert not ok and reason.startswith("TensorRT is not installed") and "pip install fwrd[gpu]" in reason
    assert plan_matches_device({"tensorrt_version": "10.13.3", "gpu": {}}) == (False, reason)


def test_enqueue_failure_is_reported_and_drained(fake_trt, tmp_path):
    onnx_path, plan = _engine(tmp_path)
    tiles = random_tiles(4, T, seed=5)
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        context = backend._slots[0].context
        context.execute_async_v3 = lambda stream_handle: False
        with pytest.raises(ModelError, match="TensorRT could not enqueue the batch"):
            backend.infer(tiles)
        assert all(not queue for queue in fake_trt.gpu.streams.values())
        del context.execute_async_v3
        _close(backend.infer(tiles)[0], ort_reference(onnx_path, tiles)[0])
