"""fwrd.export.tensorrt_rules types a graph by shape inference on its skeleton (weights without values):
the types must be those of shape inference on the whole graph, and the graph itself untouched."""

from __future__ import annotations

import onnx
import pytest
from fakes.tiny_model import write_tiny_int8, write_tiny_model

from fwrd.export.tensorrt_rules import SHAPE_DATA_MAX, _typed, eight_bit_tensors


def _types(model: onnx.ModelProto) -> list[tuple[str, bytes]]:
    return sorted((v.name, v.SerializeToString()) for v in [*model.graph.value_info, *model.graph.output])


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-tensorrt", "int8-cpu"])
def test_skeleton_types_equal_whole_graph_types(tmp_path, precision):
    path = tmp_path / "rd.onnx"
    if precision.startswith("int8"):
        write_tiny_int8(path, target=precision.split("-")[1])
    else:
        write_tiny_model(path, precision=precision)
    model = onnx.load(str(path))
    before = model.SerializeToString()
    big = [i for i in model.graph.initializer if len(onnx.numpy_helper.to_array(i).ravel()) > SHAPE_DATA_MAX]
    assert big  # the skeleton really drops values here
    typed = _typed(model)
    assert _types(typed) == _types(onnx.shape_inference.infer_shapes(model)) and typed.graph.value_info
    assert model.SerializeToString() == before
    if precision == "int8-cpu":
        assert any(t.dtype == "UINT8" for t in eight_bit_tensors(model))
