"""The data-type rules of TensorRT's ONNX parser, checked statically on a graph before any TensorRT runs.

A graph that breaks one is refused by `OnnxParser.parse_from_file` on the GPU machine, minutes into a
deployment; checking here lets the export refuse it at once, with the rule that fails. Sources
(onnx-tensorrt, the parser inside TensorRT 10/11):

- UINT8 only as a network input or output: ModelImporter.cpp (release 10.0-GA .. 10.1-GA, line 241),
  "TensorRT does not support UINT8 types for intermediate tensors!"; docs/operators.md: "UINT8 is only
  supported as network input or output tensor types".
- INT8 is a quantized type, reachable only through Q/DQ: docs/operators.md, "INT8, INT4, and FP8 are
  treated as `Quantized Types` ... support is available only through quantization from a
  floating-point type with higher precision".
- QuantizeLinear / DequantizeLinear: zero point INT8 and all zeros (onnxOpImporters.cpp 10.1-GA,
  QuantDequantLinearHelper: "TensorRT only supports symmetric quantization. The zero point ... must be all
  zeros"; operators.md: "`y_zero_point` must be 0"), scales positive ("Scale coefficients must all be
  positive"), per-axis scales only for weights ("Activations-quantization does not support per-axis
  quantization").

The ops the graph for dense scoring adds (its input has dynamic height and width, so its score weights
and map sizes come from shapes at run time), from docs/operators.md (release 10.1-GA, lines 146-211)
and onnxOpImporters.cpp (10.1-GA):
- Reduce*, Squeeze, Slice: "`axes` must be an initializer"; Unsqueeze: "`axes` must be a constant tensor".
- Squeeze without axes only on a static shape: "Cannot infer squeeze dimensions from a dynamic shape!"
  (onnxOpImporters.cpp l.5643-5650).
- Range: start, limit and delta of one type, int32, int64 or float (l.4182-4193).
- Resize: modes nearest or linear, coordinate transformation half_pixel, pytorch_half_pixel,
  tf_half_pixel_for_nn, asymmetric or align_corners, no antialiasing.

    problems = tensorrt_problems(onnx.load("rd.onnx"))   # [] when TensorRT's parser would take it
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

EIGHT_BIT = {TensorProto.UINT8: "UINT8", TensorProto.INT8: "INT8"}
QDQ = ("QuantizeLinear", "DequantizeLinear")
AXES_INPUT = {"ReduceMean": 1, "ReduceSum": 1, "ReduceL2": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1,
              "ReduceL1": 1, "ReduceLogSumExp": 1, "ReduceSumSquare": 1, "Squeeze": 1, "Slice": 3}
RANGE_TYPES = {TensorProto.INT32, TensorProto.INT64, TensorProto.FLOAT}
RESIZE_MODES = {b"nearest", b"linear"}
RESIZE_COORDINATES = {b"half_pixel", b"pytorch_half_pixel", b"tf_half_pixel_for_nn", b"asymmetric", b"align_corners"}


@dataclass(frozen=True)
class EightBitTensor:
    """An 8-bit tensor inside a graph (not a graph input or output) and where it comes from and goes."""

    name: str
    dtype: str  # "UINT8" | "INT8"
    producer: str  # op type, or "initializer"
    consumers: tuple[str, ...]


SHAPE_DATA_MAX = 64  # initializers up to this many elements keep their values for shape inference


def _typed(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every intermediate tensor's type, from ONNX shape inference run on its skeleton.

    Shape inference serialises the whole model to C++ and back; the weights (hundreds of MB) make that
    seconds per call and change no type. So it runs on a copy whose large initializers keep their name,
    type and dims but no values. Values shape inference reads (Reshape's shape, Slice's starts, ...) are
    small int64 tensors and keep theirs (`SHAPE_DATA_MAX`)."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    for tensor in skeleton.graph.initializer:
        if int(np.prod(tensor.dims, dtype=np.int64)) > SHAPE_DATA_MAX and tensor.data_location != TensorProto.EXTERNAL:
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                tensor.ClearField(field)
    return onnx.shape_inference.infer_shapes(skeleton)


def eight_bit_tensors(model: onnx.ModelProto) -> list[EightBitTensor]:
    """Every UINT8/INT8 tensor of `model` (types from ONNX shape inference) that is not a graph input/output."""
    return _eight_bit(_typed(model))


def _eight_bit(typed: onnx.ModelProto) -> list[EightBitTensor]:
    graph = typed.graph
    io = {v.name for v in graph.input} | {v.name for v in graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    types.update({i.name: i.data_type for i in graph.initializer})
    producer = {out: node.op_type for node in graph.node for out in node.output}
    producer.update({i.name: "initializer" for i in graph.initializer})
    consumers: dict[str, list[str]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node.op_type)
    found = []
    for name, elem in types.items():
        if elem in EIGHT_BIT and name not in io and (name in consumers or producer.get(name) != "initializer"):
            found.append(EightBitTensor(name, EIGHT_BIT[elem], producer.get(name, "?"), tuple(consumers[name])))
    return sorted(found, key=lambda t: t.name)


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """What TensorRT's ONNX parser would refuse in `model`, one line each (empty when nothing)."""
    typed = _typed(model)  # once: both rule sets read its types
    problems = []
    for t in _eight_bit(typed):
        if t.dtype == "UINT8" and t.producer != "initializer":
            problems.append(f"{t.name}: UINT8 from {t.producer}; TensorRT takes UINT8 only as a graph input or output")
        elif not _quantized_path(t):
            problems.append(f"{t.name}: INT8 from {t.producer} into {', '.join(t.consumers) or 'nothing'}; "
                            "TensorRT takes INT8 only from QuantizeLinear or as weights, into DequantizeLinear")
    initializers = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in QDQ:
            problems.extend(_qdq_problems(node, initializers))
    problems.extend(_shape_op_problems(typed))
    return problems


def _shape_op_problems(typed: onnx.ModelProto) -> list[str]:
    """Axes, Squeeze, Range and Resize rules (module docstring), on the typed model."""
    graph = typed.graph
    initializers = {i.name for i in graph.initializer}
    constants = initializers | {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    values = {v.name: v.type.tensor_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types = {name: t.elem_type for name, t in values.items()}
    types.update({i.name: i.data_type for i in graph.initializer})
    problems = []
    for node in graph.node:
        where = f"{node.op_type} {node.name or node.output[0]}"
        index = AXES_INPUT.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in initializers:
            problems.append(f"{where}: its axes must be an initializer")
        if node.op_type == "Unsqueeze" and len(node.input) > 1 and node.input[1] not in constants:
            problems.append(f"{where}: its axes must be a constant tensor")
        if node.op_type == "Squeeze" and (len(node.input) < 2 or not node.input[1]) and not any(
                a.name == "axes" for a in node.attribute):
            dims = values[node.input[0]].shape.dim if node.input[0] in values else []
            if not dims or any(not d.HasField("dim_value") for d in dims):
                problems.append(f"{where}: Squeeze without axes on a dynamic shape")
        if node.op_type == "Range":
            kinds = {types.get(name) for name in node.input}
            if len(kinds) != 1 or not kinds <= RANGE_TYPES:
                problems.append(f"{where}: start, limit and delta must share one type of int32, int64 or float")
        if node.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("mode", b"nearest") not in RESIZE_MODES or attrs.get("antialias", 0) or attrs.get(
                    "coordinate_transformation_mode", b"half_pixel") not in RESIZE_COORDINATES:
                problems.append(f"{where}: a Resize TensorRT does not implement ({attrs})")
    return problems


def _quantized_path(t: EightBitTensor) -> bool:
    """Q -> DQ, or weights / zero points (initializers) read only by Q/DQ."""
    allowed = ("DequantizeLinear",) if t.producer == "QuantizeLinear" else QDQ
    return t.producer in ("QuantizeLinear", "initializer") and bool(t.consumers) and all(
        c in allowed for c in t.consumers)


def _qdq_problems(node: onnx.NodeProto, initializers: dict[str, TensorProto]) -> list[str]:
    where = f"{node.op_type} {node.name or node.output[0]}"
    if len(node.input) < 2 or node.input[1] not in initializers:
        return [f"{where}: its scale must be an initializer"]
    scale = numpy_helper.to_array(initializers[node.input[1]])
    problems = []
    if not np.all(scale > 0):
        problems.append(f"{where}: scales must all be positive")
    if node.op_type == "QuantizeLinear" and scale.size != 1 and node.input[0] not in initializers:
        problems.append(f"{where}: per-channel scales on an activation (TensorRT quantizes activations per tensor)")
    if len(node.input) > 2 and node.input[2]:
        zero = initializers.get(node.input[2])
        if zero is None:
            problems.append(f"{where}: its zero point must be an initializer")
        elif zero.data_type != TensorProto.INT8:
            problems.append(f"{where}: zero point is {TensorProto.DataType.Name(zero.data_type)}; TensorRT "
                            "quantizes to INT8 only (it would reinterpret the calibrated range)")
        elif np.any(numpy_helper.to_array(zero) != 0):
            problems.append(f"{where}: zero point is not 0 (TensorRT quantizes symmetrically)")
    return problems
