"""Dense scoring on TensorRT (fakes of TensorRT 10.8 / 10.13 / 11 and cuda-python, not a real GPU): the
engine's region profile, region slots on it, and the engine gate through it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_trt  # noqa: F401  (fixture)
from fakes.tiny_model import ort_reference, random_tiles, tiny_verification, write_tiny_int8, write_tiny_model

from fwrd.config import OUTPUT_MAPS
from fwrd.errors import ModelError
from fwrd.export.tensorrt_build import build_engine
from fwrd.runtime.backends import open_backend
from fwrd.runtime.backends.tensorrt import REGION_PROFILE, TensorRTBackend, read_manifest

T = 32
SIDE = 128


def _engine(tmp_path: Path, dense: bool = True, side: int = SIDE) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    onnx_path = write_tiny_model(tmp_path / "rd.onnx", T, precision="fp16", dense=dense)
    plan = tmp_path / "rd.plan"
    build_engine(onnx_path, plan, verification=tiny_verification(onnx_path), min_batch=1, opt_batch=4, max_batch=4,
                 region_side=side, log=lambda _: None)
    state = sys.modules["tensorrt"]._fake
    state.executions.clear()
    return onnx_path, plan


def test_region_profile_is_built_and_gated(fake_trt, tmp_path):
    _, plan = _engine(tmp_path)
    build = fake_trt.state.builds[-1]
    assert build.profiles[0]["tiles"] == [(1, T, T, 3), (4, T, T, 3), (4, T, T, 3)]
    assert build.profiles[1]["tiles"] == [(1, T, T, 3), (1, SIDE, SIDE, 3), (1, SIDE, SIDE, 3)]
    manifest = read_manifest(plan)
    assert manifest["region_profile"] == {"min": [1, T, T, 3], "opt": [1, SIDE, SIDE, 3], "max": [1, SIDE, SIDE, 3]}
    regions = manifest["verification_regions"]
    assert regions["runner"] == "tensorrt-regions" and regions["passed"] and regions["tiles"] == 12


def test_regions_run_on_the_region_profile_and_equal_onnxruntime(fake_trt, tmp_path):
    onnx_path, plan = _engine(tmp_path)
    regions = [random_tiles(1, SIDE, seed=k)[0] for k in range(3)]
    with open_backend(plan, dense=True) as backend:
        assert backend.region == SIDE and backend.fixed_regions
        contexts = [slot.context for slot in backend._slots]
        assert all(c.active_optimization_profile == REGION_PROFILE for c in contexts)
        assert all(c.allocation_strategy.name == "ON_PROFILE_CHANGE" for c in contexts)
        out = list(backend.run_regions((k, r) for k, r in enumerate(regions)))
        smaller = backend.infer_region(regions[0][:64, :96])
    assert [tag for tag, _ in out] == [0, 1, 2]
    assert fake_trt.gpu.max_in_flight == 2
    for (_, maps), region in zip(out, regions):
        want = ort_reference(onnx_path, region[None], OUTPUT_MAPS)
        for got, ref in zip(maps, want):
            np.testing.assert_allclose(got, ref[0], rtol=0, atol=1e-5)
    assert [m.shape for m in smaller] == [(16, 24), (8, 12), (4, 6)]
    with TensorRTBackend.from_plan(plan, batch_size=4) as tiles_backend:  # tile mode keeps profile 0
        assert all(s.context.active_optimization_profile == 0 for s in tiles_backend._slots)
        assert tiles_backend.infer(random_tiles(3, T))[0].shape == (3,)


def test_dense_refusals_are_one_line(fake_trt, tmp_path):
    _, plan = _engine(tmp_path / "dense")
    with pytest.raises(ModelError, match=rf"takes regions of {T} to {SIDE} px a side, not 256: use --region {SIDE}"):
        TensorRTBackend.from_plan(plan, batch_size=4, dense=True, region=256)
    _, old = _engine(tmp_path / "tiles", dense=False)
    assert read_manifest(old)["region_profile"] is None
    with pytest.raises(ModelError, match="cannot score regions .* build it again from a new export"):
        TensorRTBackend.from_plan(old, batch_size=4, dense=True)
    with TensorRTBackend.from_plan(plan, batch_size=4, dense=True) as backend:
        with pytest.raises(ValueError, match="opened for regions"):
            backend.infer(random_tiles(2, T))


def test_int8_engine_is_refused_for_dense(fake_trt, tmp_path):
    onnx_path = write_tiny_int8(tmp_path / "rd8.onnx", "tensorrt", T)
    plan = tmp_path / "rd8.plan"
    build_engine(onnx_path, plan, verification=tiny_verification(onnx_path), min_batch=1, opt_batch=4,
                 max_batch=4, precision="int8", log=lambda _: None)
    with pytest.raises(ModelError, match="is int8: --dense runs fp32 and fp16 models"):
        TensorRTBackend.from_plan(plan, batch_size=4, dense=True)


def _one_node_graph(node, inputs, inits=(), opset=18):
    from onnx import TensorProto, helper

    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_parser_rules_of_the_shape_ops():
    """operators.md / onnxOpImporters.cpp (10.1-GA): axes initializers, Squeeze on dynamic shapes, Range types,
    Resize modes. The tiny dense graph (Shape, Slice, Concat, Resize align_corners) passes them."""
    from onnx import TensorProto, helper, numpy_helper

    from fwrd.export.tensorrt_rules import tensorrt_problems
    from fakes.tiny_model import tiny_model

    dynamic = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h"])
    axes_input = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    cases = {
        "its axes must be an initializer": _one_node_graph(
            helper.make_node("ReduceMean", ["x", "axes"], ["y"]), [dynamic, axes_input]),
        "Squeeze without axes on a dynamic shape": _one_node_graph(helper.make_node("Squeeze", ["x"], ["y"]), [dynamic]),
        "must share one type": _one_node_graph(
            helper.make_node("Range", ["s", "l", "d"], ["y"]), [],
            [numpy_helper.from_array(np.array(0, np.int64), "s"), numpy_helper.from_array(np.array(5.0, np.float32), "l"),
             numpy_helper.from_array(np.array(1, np.int64), "d")]),
        "a Resize TensorRT does not implement": _one_node_graph(
            helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic"), [dynamic],
            [numpy_helper.from_array(np.array([1, 1, 2], np.float32), "scales")]),
    }
    for message, model in cases.items():
        problems = tensorrt_problems(model)
        assert len(problems) == 1 and message in problems[0], problems
    static = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 3])
    assert tensorrt_problems(_one_node_graph(helper.make_node("Squeeze", ["x"], ["y"]), [static])) == []
    assert tensorrt_problems(tiny_model(32, dense=True)) == []
