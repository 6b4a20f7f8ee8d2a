"""A fake of the TensorRT Python API (10.x and 11.x flavours) that really parses and really runs.

`make_tensorrt(version, gpu)` returns a module that looks like `tensorrt` of that version. Each rule below
is taken from NVIDIA's sources (TensorRT `python/src/infer/pyCore.cpp` and `include/NvInfer.h` at tags
v10.0.0, v10.8.0, v10.13.3, v11.0, v11.1; onnx-tensorrt `ModelImporter.cpp`, `onnxOpImporters.cpp` and
`docs/operators.md` at 10.0-GA / 10.1-GA):

- `NetworkDefinitionCreationFlag.STRONGLY_TYPED` exists in every flavour (pyCore.cpp v10.0.0 l.1471).
  10.x: kEXPLICIT_BATCH = 0 (deprecated, ignored), kSTRONGLY_TYPED = 1 (NvInfer.h v10.0.0 l.9370);
  10.13 adds kPREFER_JIT_PYTHON_PLUGINS = 2, kPREFER_AOT_PYTHON_PLUGINS = 3 (NvInfer.h v10.13.3 l.10485);
  11.x: kSTRONGLY_TYPED = 0 (deprecated, always on), kPREFER_JIT_PYTHON_PLUGINS = 1, kPREFER_AOT = 2
  (NvInfer.h v11.1 l.11475): a mask must be `1 << int(flag)`, never a literal.
- 10.x keeps `BuilderFlag.FP16`, precision constraints, `layer.precision`, `set_output_type`; 11.x has
  none of them (pyCore.cpp v11.0 lists BuilderFlag TF32 but no FP16/INT8/BF16), no `EXPLICIT_BATCH`, no
  `platform_has_fast_fp16`, `device_memory_size`, `supports_model`.
- `BuilderFlag.TF32` is on in a fresh builder config ("Enabled by default", NvInfer.h v10.8.0 l.8772,
  v11.1 l.9976). The fake engine models TF32 (and `BuilderFlag.FP16` on a weakly typed network) by
  rounding the inputs and weights of float convolutions to 10 mantissa bits (through fp16, so fp16's
  narrower exponent too: a pessimistic model), so an "fp32" engine built with TF32 on can miss a 1e-4 gate.
- `execute_async_v3(stream_handle)` takes a `size_t` (pyCore.cpp v10.8.0 l.112: `bool
  execute_async_v3(IExecutionContext& self, size_t streamHandle)`): pybind11 accepts an int or an
  object with `__index__`/`__int__`, refuses a float; the value is taken as the `cudaStream_t`.
- One logger per process: a Builder or Runtime created with a different logger while another lives keeps
  using the first and warns ("The logger passed into createInferRuntime differs from one already
  provided for an existing builder, runtime, or refitter ...", TensorRT issue #1475).
- The parser refuses any UINT8 tensor a node produces that is not a graph output (ModelImporter.cpp
  10.0-GA l.241-254, "TensorRT does not support UINT8 types for intermediate tensors!"); Q/DQ inputs of
  type UINT8 ("Found unsupported input type of UINT8", onnxOpImporters.cpp 10.1-GA l.1349, 1354); a
  non-zero zero point ("TensorRT only supports symmetric quantization. The zero point for the
  QuantizeLinear/DequantizeLinear operator must be all zeros.", l.1491); a UINT8 zero point is read as
  INT8 with a warning (l.1459); scales must be positive (l.1387); Conv/ConvTranspose take FP32, FP16 or
  BF16 only (operators.md).
- The runtime refuses a plan from another TensorRT version or compute capability, and loads one from
  another GPU model of the same compute capability with a warning.
- Optimisation profiles: a new execution context is on profile 0 ("The newly created execution context
  will be assigned optimization profile 0", NvInferRuntime.h v10.8.0 l.4344);
  `set_optimization_profile_async(profile_index, stream_handle)` raises RuntimeError("Error in set
  optimization profile async.") when the C++ call fails, e.g. an index outside the engine's profiles
  (pyCore.cpp v10.0.0 l.340-346, v10.8.0 l.333-339, v11.1 l.336-342: PY_ASSERT_RUNTIME_ERROR), and
  switching invalidates the input shapes set before ("Changing this value will invalidate all dynamic
  bindings ... they have to be set again using set_input_shape", pyCoreDoc.h v10.8.0 l.401);
  `create_execution_context(strategy=ExecutionContextAllocationStrategy.STATIC)` takes STATIC,
  ON_PROFILE_CHANGE or USER_MANAGED (pyCore.cpp v10.0.0 l.1169-1171; NvInferRuntime.h v10.8.0
  l.2976-2981). Range imports as a fill layer (onnxOpImporters.cpp 10.1-GA l.4180-4236).
- A context reports an output's shape for the input shapes set (`get_tensor_shape`): the fake runs the
  graph once on zeros of those shapes to learn it, where the output's dimensions are not the inputs'.

In every flavour the calls removed in TensorRT 10 (`execute_async_v2`, `get_binding_index`,
`num_bindings`, `set_binding_shape`, `max_workspace_size`, `build_engine`, `binding_is_input`, ...) do
not exist: touching one raises AttributeError, as the real module does, and is also recorded in
`module._fake.removed_accessed` so a test can prove it never happened even behind a `hasattr`.

The parser reads the ONNX file with `onnx` (check, shape inference, one layer per node with the layer
type TensorRT's parser would give it); the builder validates what the real one validates (a profile
for dynamic inputs, min <= opt <= max, no precision flags in a strongly typed network), consults and
fills the timing cache, drives an `IProgressMonitor`, and serialises a "plan" that carries the ONNX
model, the TensorRT version and the GPU. The execution context runs the graph with ONNX Runtime on CPU
when the stream it was queued on (see fake_cuda) is synchronised, reading and writing the fake device
memory at the tensor addresses.
"""

from __future__ import annotations

import enum
import json
import operator
import struct
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fake_cuda import FakeGPU, cudaError_t

REMOVED_IN_10 = frozenset({
    "execute_async_v2", "execute_async", "execute", "get_binding_index", "num_bindings",
    "set_binding_shape", "get_binding_shape", "get_binding_dtype", "get_binding_name",
    "binding_is_input", "max_workspace_size", "build_engine", "max_batch_size",
})
REMOVED_IN_11 = frozenset({
    "platform_has_fast_fp16", "device_memory_size", "create_execution_context_without_device_memory",
    "supports_model", "precision", "set_output_type", "get_output_type", "precision_is_set",
    "reset_precision", "output_type_is_set",
})

PLAN_MAGIC = b"FAKETRTPLAN1"
CACHE_MAGIC = b"FAKETRTCACHE1"
TUNED_LAYERS = ("CONVOLUTION", "DECONVOLUTION", "MATRIX_MULTIPLY")

# ONNX op -> TensorRT layer type its importer produces (first layer; enough for precision policies).
OP_LAYER = {
    "Conv": "CONVOLUTION", "ConvTranspose": "DECONVOLUTION", "Relu": "ACTIVATION", "Sigmoid": "ACTIVATION",
    "Clip": "ACTIVATION", "Add": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE",
    "Div": "ELEMENTWISE", "Pow": "ELEMENTWISE", "Max": "ELEMENTWISE", "Min": "ELEMENTWISE",
    "ReduceSum": "REDUCE", "ReduceMean": "REDUCE", "ReduceL2": "REDUCE", "ReduceMax": "REDUCE",
    "Sqrt": "UNARY", "Exp": "UNARY", "Log": "UNARY", "Abs": "UNARY", "Resize": "RESIZE",
    "Cast": "CAST", "Transpose": "SHUFFLE", "Reshape": "SHUFFLE", "Flatten": "SHUFFLE",
    "Squeeze": "SHUFFLE", "Unsqueeze": "SHUFFLE", "Concat": "CONCATENATION", "Constant": "CONSTANT",
    "Shape": "SHAPE", "Gather": "GATHER", "Slice": "SLICE", "MatMul": "MATRIX_MULTIPLY",
    "Gemm": "MATRIX_MULTIPLY", "AveragePool": "POOLING", "MaxPool": "POOLING",
    "GlobalAveragePool": "REDUCE", "BatchNormalization": "SCALE", "InstanceNormalization": "NORMALIZATION",
    "LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "Identity": "IDENTITY",
    "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "ReduceMin": "REDUCE", "Range": "FILL",
}
# docs/operators.md (onnx-tensorrt 10.1-GA), "Supported Types" of the ops whose input type the fake checks.
FLOAT_TYPES = {"FLOAT", "HALF", "BF16"}
INPUT_TYPES = {"Conv": FLOAT_TYPES, "ConvTranspose": FLOAT_TYPES, "QuantizeLinear": FLOAT_TYPES}
LAYER_TYPES = sorted(set(OP_LAYER.values()) | {"PLUGIN_V3"})
LOGGER_CLASH = ("The logger passed into {call} differs from one already provided for an existing builder, runtime, "
                "or refitter. TensorRT maintains only a single logger pointer at any given time, so the existing "
                "value, which can be retrieved with getLogger(), will be used instead. In order to use a new "
                "logger, first destroy all existing builder, runner or refitter objects.")
OTHER_SKU = ("Using an engine plan file across different models of devices is not recommended and is likely to "
             "affect performance or even cause errors.")
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 16: "BF16"}
TRT_TO_NP = {"FLOAT": np.float32, "HALF": np.float16, "UINT8": np.uint8, "INT8": np.int8,
             "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@dataclass
class BuildRecord:
    """What one `build_serialized_network` call saw, for tests to assert on."""

    network_flags: int = 0
    strongly_typed: bool = False
    explicit_batch: bool = False
    builder_flags: set[str] = field(default_factory=set)
    fp32_layers: list[str] = field(default_factory=list)
    fp32_output_layers: list[str] = field(default_factory=list)
    workspace: int | None = None
    profiles: list[dict[str, list[tuple[int, ...]]]] = field(default_factory=list)
    timing_hits: int = 0
    timing_misses: int = 0
    phases: list[str] = field(default_factory=list)
    steps: int = 0
    succeeded: bool = False


@dataclass
class FakeTRT:
    """State shared by the classes of one fake module."""

    version: str
    gpu: FakeGPU
    module: Any = None
    builds: list[BuildRecord] = field(default_factory=list)
    parsed_files: list[str] = field(default_factory=list)
    deserialize_calls: int = 0
    removed_accessed: list[str] = field(default_factory=list)
    live_contexts: int = 0
    executions: list[tuple[int, int]] = field(default_factory=list)  # (stream, batch) when queued
    fail_build: bool = False  # make the next builds fail like an out-of-memory tactic search
    process_logger: Any = None  # the one logger TensorRT uses while a builder or runtime lives
    live_owners: int = 0  # builders + runtimes alive
    reduced_convs: list[str] = field(default_factory=list)  # convolutions the last plan runs in 10-bit mantissas

    @property
    def major_minor(self) -> tuple[int, int]:
        return _version_tuple(self.version)

    @property
    def v11(self) -> bool:
        return self.major_minor[0] >= 11

    def adopt_logger(self, logger: Any, call: str) -> Any:
        """The logger a new builder/runtime will really use (TensorRT keeps one per process)."""
        if self.live_owners and self.process_logger is not None and logger is not self.process_logger:
            _log(self, self.process_logger, "WARNING", LOGGER_CLASH.format(call=call))
        elif not self.live_owners:
            self.process_logger = logger
        self.live_owners += 1
        return self.process_logger

    def enum(self, name: str) -> Any:
        return getattr(self.module, name)

    def cls(self, name: str) -> Any:
        return getattr(self.module, name)

    def compute_capability(self) -> str:
        return f"{self.gpu.major}.{self.gpu.minor}"


class _Strict:
    """Missing attributes raise AttributeError; removed TensorRT API is also recorded."""

    _env: FakeTRT

    def __getattr__(self, name: str) -> Any:
        if name in REMOVED_IN_10 or name in REMOVED_IN_11:
            type(self)._env.removed_accessed.append(f"{type(self).__name__}.{name}")
        raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        # pybind11 objects refuse unknown attributes: `layer.precision = ...` on TensorRT 11 fails.
        if (name in REMOVED_IN_10 or name in REMOVED_IN_11) and not hasattr(type(self), name):
            type(self)._env.removed_accessed.append(f"{type(self).__name__}.{name}=")
            raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


class Dims(tuple):
    """trt.Dims: a tuple of ints, -1 for a dynamic dimension."""

    def __repr__(self) -> str:
        return f"({', '.join(str(d) for d in self)})"


class IHostMemory(bytes):
    """Serialised data (plan, timing cache): supports the buffer protocol like the real one."""

    @property
    def nbytes(self) -> int:
        return len(self)


class ILogger(_Strict):
    def __init__(self) -> None:
        self._trt_initialised = True

    def log(self, severity: Any, msg: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


class Logger(ILogger):
    def __init__(self, min_severity: Any = None) -> None:
        super().__init__()
        severity = self._env.enum("ILogger").Severity
        self.min_severity = severity.WARNING if min_severity is None else min_severity
        self.messages: list[tuple[Any, str]] = []

    def log(self, severity: Any, msg: str) -> None:
        self.messages.append((severity, msg))
        if int(severity) <= int(self.min_severity):
            print(f"[TRT] {msg}", file=sys.stderr)


class IProgressMonitor(_Strict):
    def __init__(self) -> None:
        self._trt_initialised = True

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        raise RuntimeError("pure virtual")

    def step_complete(self, phase_name: str, step: int) -> bool:
        raise RuntimeError("pure virtual")

    def phase_finish(self, phase_name: str) -> None:
        raise RuntimeError("pure virtual")


def _check_initialised(obj: Any, what: str) -> None:
    if not getattr(obj, "_trt_initialised", False):
        raise TypeError(f"{what}.__init__() must be called when overriding __init__")


def _log(env: FakeTRT, logger: Any, level: str, msg: str) -> None:
    logger.log(getattr(env.enum("ILogger").Severity, level), msg)


class ITensor(_Strict):
    def __init__(self, name: str, dtype: Any, shape: tuple[int, ...], dim_params: tuple[str, ...] = ()):
        self.name = name
        self.dtype = dtype
        self.shape = Dims(shape)
        self.dim_params = dim_params
        self.is_network_input = False
        self.is_network_output = False


class ILayer(_Strict):
    def __init__(self, name: str, type_: Any, inputs: list[ITensor], outputs: list[ITensor], op: str,
                 node_index: int = -1):
        self.name = name
        self.type = type_
        self.op = op
        self.node_index = node_index
        self._inputs = inputs
        self._outputs = outputs
        self._precision: Any = None
        self._output_types: dict[int, Any] = {}

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> ITensor | None:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ILayer10(ILayer):
    """TensorRT 10 layers still take precision hints (gone in 11)."""

    @property
    def precision(self) -> Any:
        return self._precision if self._precision is not None else self._env.enum("DataType").FLOAT

    @precision.setter
    def precision(self, value: Any) -> None:
        self._precision = value

    @property
    def precision_is_set(self) -> bool:
        return self._precision is not None

    def reset_precision(self) -> None:
        self._precision = None

    def set_output_type(self, index: int, dtype: Any) -> None:
        self._output_types[index] = dtype

    def get_output_type(self, index: int) -> Any:
        return self._output_types.get(index, self._outputs[index].dtype)

    def output_type_is_set(self, index: int) -> bool:
        return index in self._output_types


class INetworkDefinition(_Strict):
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.name = "network"
        self.layers: list[ILayer] = []
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.onnx_bytes: bytes = b""
        self.onnx_outputs: list[dict[str, Any]] = []

    @property
    def strongly_typed(self) -> bool:
        flag = int(self._env.enum("NetworkDefinitionCreationFlag").STRONGLY_TYPED)
        return bool(self.flags & (1 << flag)) or self._env.v11

    def get_flag(self, flag: Any) -> bool:
        return bool(self.flags & (1 << int(flag)))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]


class ParserError(_Strict):
    def __init__(self, code: Any, desc: str, node: int = -1, node_name: str = "", node_operator: str = ""):
        self._code, self._desc = code, desc
        self._node, self._node_name, self._node_operator = node, node_name, node_operator

    def code(self) -> Any:
        return self._code

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._node_name

    def node_operator(self) -> str:
        return self._node_operator

    def file(self) -> str:
        return "ModelImporter.cpp"

    def line(self) -> int:
        return 0

    def func(self) -> str:
        return "parseFromFile"

    def local_function_stack(self) -> list[str]:
        return []

    def __str__(self) -> str:
        where = f"In node {self._node} with name: {self._node_name} and operator: {self._node_operator} " \
            if self._node >= 0 else ""
        return f"{where}({self.func()}): {self._code.name}: {self._desc}"


class OnnxParser(_Strict):
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        _check_initialised(logger, "ILogger")
        self.network = network
        self.logger = logger
        self._errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def _error(self, code: str, desc: str, node: int = -1, name: str = "", op: str = "") -> None:
        env = type(self)._env
        err = ParserError(getattr(env.enum("ErrorCode"), code), desc, node, name, op)
        self._errors.append(err)
        _log(env, self.logger, "ERROR", str(err))

    def parse_from_file(self, model: str) -> bool:
        env = type(self)._env
        env.parsed_files.append(str(model))
        try:
            data = Path(model).read_bytes()
        except OSError:
            self._error("MODEL_DESERIALIZE_FAILED", f"Failed to open file: {model}")
            return False
        return self.parse(data, str(Path(model).parent))

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        env = type(self)._env
        try:
            proto = onnx.load_from_string(bytes(model))
            onnx.checker.check_model(proto)
            proto = onnx.shape_inference.infer_shapes(proto)
        except Exception as exc:  # DecodeError, ValidationError, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._error("MODEL_DESERIALIZE_FAILED", f"Failed to parse ONNX model: {first}")
            return False
        graph = proto.graph
        types_: dict[str, tuple[int, tuple[int, ...], tuple[str, ...]]] = {}
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            tt = vi.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
            params = tuple(d.dim_param for d in tt.shape.dim)
            types_[vi.name] = (tt.elem_type, dims, params)
        initializers = {init.name for init in graph.initializer}
        data_type = env.enum("DataType")
        layer_type = env.enum("LayerType")
        tensors: dict[str, ITensor] = {}

        def tensor(name: str) -> ITensor:
            if name not in tensors:
                elem, dims, params = types_.get(name, (1, (), ()))
                tensors[name] = env.cls("ITensor")(
                    name, getattr(data_type, ONNX_TO_TRT.get(elem, "FLOAT")), dims, params)
            return tensors[name]

        network = self.network
        for vi in graph.input:
            if vi.name in initializers:
                continue
            elem = vi.type.tensor_type.elem_type
            if elem not in ONNX_TO_TRT:
                self._error("UNSUPPORTED_NODE_DATATYPE", f"input {vi.name} has unsupported type {elem}")
                return False
            t = tensor(vi.name)
            t.is_network_input = True
            network.inputs.append(t)
        ok = True
        values = {init.name: init for init in graph.initializer}
        graph_outputs = {vi.name for vi in graph.output}
        for index, node in enumerate(graph.node):
            if node.domain not in ("", "ai.onnx") or node.op_type not in OP_LAYER:
                self._error("UNSUPPORTED_NODE", f"No importer registered for op: {node.op_type}", index,
                            node.name, node.op_type)
                ok = False
                continue
            if ok:  # like parseNode: the first importer error ends the import
                problem = self._node_problem(node, types_, values, graph_outputs)
                if problem is not None:
                    self._error(problem[0], problem[1], index, node.name, node.op_type)
                    return False
            layer = env.cls("ILayer")(
                node.name or f"{node.op_type}_{index}", getattr(layer_type, OP_LAYER[node.op_type]),
                [tensor(n) if n else None for n in node.input if n not in initializers],
                [tensor(n) for n in node.output], node.op_type, index)
            network.layers.append(layer)
        if not ok:
            return False
        for vi in graph.output:
            t = tensor(vi.name)
            t.is_network_output = True
            network.outputs.append(t)
        network.onnx_bytes = bytes(model)
        return True

    def _node_problem(self, node: Any, types_: dict, values: dict, graph_outputs: set[str]) -> tuple[str, str] | None:
        """The importer's type rules (sources in the module docstring): (error code, message) or None."""
        from onnx import numpy_helper

        def dtype(name: str) -> str:
            elem = values[name].data_type if name in values else types_.get(name, (1, (), ()))[0]
            return ONNX_TO_TRT.get(elem, "FLOAT")

        env = type(self)._env
        op = node.op_type
        if op in ("QuantizeLinear", "DequantizeLinear"):
            if dtype(node.input[0]) == "UINT8" or (op == "QuantizeLinear" and len(node.input) > 2
                                                   and node.input[2] and dtype(node.input[2]) == "UINT8"):
                return "UNSUPPORTED_NODE", "Found unsupported input type of UINT8"
            if len(node.input) < 2:
                return "INVALID_NODE", ("This version of TensorRT requires at least 2 inputs for the "
                                        "QuantizeLinear/DequantizeLinear operator.")
            if node.input[1] in values and not np.all(numpy_helper.to_array(values[node.input[1]]) > 0):
                return "INVALID_NODE", "Scale coefficients must all be positive"
            if len(node.input) > 2 and node.input[2] in values:
                if dtype(node.input[2]) == "UINT8":
                    _log(env, self.logger, "WARNING", "TensorRT doesn't support QuantizeLinear/DequantizeLinear "
                         "with UINT8 zero_point. TensorRT will use INT8 instead.")
                if np.any(numpy_helper.to_array(values[node.input[2]]) != 0):
                    return "INVALID_NODE", ("TensorRT only supports symmetric quantization. The zero point for the "
                                            "QuantizeLinear/DequantizeLinear operator must be all zeros.")
        elif op in INPUT_TYPES and dtype(node.input[0]) not in INPUT_TYPES[op]:
            return "UNSUPPORTED_NODE", f"Found unsupported input type of {dtype(node.input[0])}"
        for out in node.output:
            if out and op != "QuantizeLinear" and dtype(out) == "UINT8" and out not in graph_outputs:
                return "UNSUPPORTED_NODE", "TensorRT does not support UINT8 types for intermediate tensors!"
        return None

    def supports_model_v2(self, model: bytes, path: str | None = None) -> bool:
        return self.parse(model, path)

    def supports_operator(self, op_name: str) -> bool:
        return op_name in OP_LAYER


class OnnxParser10(OnnxParser):
    def supports_model(self, model: bytes, path: str | None = None) -> tuple[bool, list]:
        return self.parse(model, path), []


class IOptimizationProfile(_Strict):
    def __init__(self) -> None:
        self.shapes: dict[str, list[tuple[int, ...]]] = {}
        self.valid = True

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
        if len({len(s) for s in shapes}) != 1 or any(
            not (a <= b <= c) for a, b, c in zip(*shapes)
        ) or any(d < 0 for s in shapes for d in s):
            self.valid = False  # the real one logs and leaves the profile invalid
            return
        self.shapes[input] = shapes

    def get_shape(self, input: str) -> list[Dims]:
        return [Dims(s) for s in self.shapes.get(input, [])]

    def __bool__(self) -> bool:
        return self.valid


class ITimingCache(_Strict):
    def __init__(self, entries: dict[str, str], trt_version: str, cc: str) -> None:
        self.entries = dict(entries)
        self.trt_version = trt_version
        self.cc = cc

    def serialize(self) -> IHostMemory:
        body = json.dumps({"trt": self.trt_version, "cc": self.cc, "entries": self.entries}).encode()
        return IHostMemory(CACHE_MAGIC + body)

    def combine(self, other: "ITimingCache", ignore_mismatch: bool) -> bool:
        if not ignore_mismatch and (other.trt_version, other.cc) != (self.trt_version, self.cc):
            return False
        self.entries.update(other.entries)
        return True

    def reset(self) -> bool:
        self.entries.clear()
        return True


class IBuilderConfig(_Strict):
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger
        self.flags: set[str] = {"TF32"}  # "Enabled by default" (NvInfer.h v10.8.0 l.8769-8772)
        self.pools: dict[str, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None
        self.builder_optimization_level = 3
        if hasattr(type(self)._env.module, "IProgressMonitor"):
            self.progress_monitor = None

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(flag.name)

    def get_flag(self, flag: Any) -> bool:
        return flag.name in self.flags

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        if not isinstance(pool_size, int) or pool_size < 0:
            raise TypeError("set_memory_pool_limit(): incompatible function arguments")
        self.pools[pool.name] = pool_size

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self.pools.get(pool.name, 80 * 2**30)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile.valid or not profile.shapes:
            _log(type(self)._env, self._logger, "ERROR", "addOptimizationProfile: invalid profile")
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        env = type(self)._env
        blob = bytes(serialized_timing_cache)
        if not blob:
            return env.cls("ITimingCache")({}, env.version, env.compute_capability())
        if not blob.startswith(CACHE_MAGIC):
            _log(env, self._logger, "ERROR", "createTimingCache: the timing cache blob is corrupted")
            return None
        try:
            data = json.loads(blob[len(CACHE_MAGIC):])
        except ValueError:
            _log(env, self._logger, "ERROR", "createTimingCache: the timing cache blob is corrupted")
            return None
        return env.cls("ITimingCache")(data["entries"], data["trt"], data["cc"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        env = type(self)._env
        if not ignore_mismatch and (cache.trt_version, cache.cc) != (env.version, env.compute_capability()):
            _log(env, self._logger, "WARNING", "setTimingCache: the timing cache was created on another "
                 "device or TensorRT version")
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


class Builder(_Strict):
    def __init__(self, logger: ILogger) -> None:
        _check_initialised(logger, "ILogger")
        self.logger = type(self)._env.adopt_logger(logger, "createInferBuilder")
        self.max_threads = 1

    def __del__(self) -> None:
        type(self)._env.live_owners -= 1

    def create_network(self, flags: int = 0) -> INetworkDefinition | None:
        env = type(self)._env
        known = 0
        for member in env.enum("NetworkDefinitionCreationFlag"):
            known |= 1 << int(member)
        if flags & ~known:
            _log(env, self.logger, "ERROR", f"createNetworkV2: invalid network creation flags {flags}")
            return None
        return env.cls("INetworkDefinition")(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return type(self)._env.cls("IBuilderConfig")(self.logger)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return type(self)._env.cls("IOptimizationProfile")()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        env = type(self)._env
        rec = BuildRecord(network_flags=network.flags, strongly_typed=network.strongly_typed,
                          explicit_batch=bool(network.flags & 1) and not env.v11,
                          builder_flags=set(config.flags), workspace=config.pools.get("WORKSPACE"),
                          profiles=[dict(p.shapes) for p in config.profiles])
        env.builds.append(rec)

        def fail(msg: str) -> None:
            _log(env, self.logger, "ERROR", f"IBuilder::buildSerializedNetwork: Error Code 4: {msg}")
            return None

        if not network.layers or not network.outputs:
            return fail("Network must have at least one output")
        for t in network.inputs:
            if -1 in t.shape:
                if not config.profiles:
                    return fail("Network has dynamic or shape inputs, but no optimization profile has "
                                "been defined.")
                for p in config.profiles:
                    if t.name not in p.shapes:
                        return fail(f"Optimization profile is missing values for input {t.name}")
                    for shape in p.shapes[t.name]:
                        if len(shape) != len(t.shape) or any(s != d for s, d in zip(shape, t.shape) if d != -1):
                            return fail(f"profile dimensions {shape} do not match {tuple(t.shape)} of {t.name}")
        precision_flags = {"FP16", "BF16", "INT8", "FP8", "INT4"} & config.flags
        rec.fp32_layers = [layer.name for layer in network.layers if layer._precision is not None]
        rec.fp32_output_layers = [layer.name for layer in network.layers if layer._output_types]
        if network.strongly_typed and (precision_flags or rec.fp32_layers or rec.fp32_output_layers):
            return fail("API Usage Error (precision flags and layer precisions are not allowed in a "
                        "strongly typed network)")
        if rec.fp32_layers and not {"OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"} & config.flags:
            _log(env, self.logger, "WARNING", "layer precisions are set but ignored without "
                 "OBEY_PRECISION_CONSTRAINTS or PREFER_PRECISION_CONSTRAINTS")
        monitor = getattr(config, "progress_monitor", None)
        if monitor is not None:
            _check_initialised(monitor, "IProgressMonitor")
        tuned = [layer for layer in network.layers if layer.type.name in TUNED_LAYERS]

        def phase(name: str, parent: str | None, steps: int) -> bool:
            rec.phases.append(name)
            if monitor is None:
                return True
            monitor.phase_start(name, parent, steps)
            for step in range(steps):
                rec.steps += 1
                if not monitor.step_complete(name, step):
                    return False
            monitor.phase_finish(name)
            return True

        if not phase("Building engine", None, 1) or not phase("Tactic selection", "Building engine", len(tuned)):
            return fail("Build cancelled by the progress monitor")
        cache = config.timing_cache or env.cls("ITimingCache")({}, env.version, env.compute_capability())
        precision = "strong" if network.strongly_typed else ("fp16" if "FP16" in config.flags else "fp32")
        for layer in tuned:
            key = f"{layer.type.name}:{layer.name}:{precision}"
            if key in cache.entries:
                rec.timing_hits += 1
            else:
                rec.timing_misses += 1
                cache.entries[key] = f"tactic{rec.timing_misses}"
        if env.fail_build:
            return fail("Internal Error (could not find any implementation for node; out of memory)")
        io = []
        for t in network.inputs + network.outputs:
            io.append({"name": t.name, "mode": "INPUT" if t.is_network_input else "OUTPUT",
                       "dtype": t.dtype.name, "shape": list(t.shape), "params": list(t.dim_params)})
        header = json.dumps({
            "trt": env.version, "device": env.gpu.name, "cc": env.compute_capability(),
            "strongly_typed": network.strongly_typed, "flags": sorted(config.flags),
            "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
            "io": io,
        }).encode()
        reduced = _reduced_precision_convs(network, config)
        env.reduced_convs = [layer.name for layer in reduced]
        graph = _round_conv_inputs(network.onnx_bytes, {layer.node_index for layer in reduced})
        rec.succeeded = True
        return IHostMemory(PLAN_MAGIC + struct.pack("<I", len(header)) + header + graph)


def _reduced_precision_convs(network: INetworkDefinition, config: IBuilderConfig) -> list[ILayer]:
    """Float convolutions TensorRT may run with 10-bit mantissa inputs: all of them under TF32, and, in a
    weakly typed network with BuilderFlag.FP16, those not pinned to fp32. A convolution fed by a
    Dequantize layer is an int8 kernel (explicit quantization) and is left alone."""
    producers = {layer.get_output(j).name: layer for layer in network.layers for j in range(layer.num_outputs)}
    half = not network.strongly_typed and "FP16" in config.flags
    chosen = []
    for layer in network.layers:
        if layer.type.name not in ("CONVOLUTION", "DECONVOLUTION") or not layer.num_inputs:
            continue
        data = layer.get_input(0)
        source = producers.get(data.name)
        if data.dtype.name != "FLOAT" or (source is not None and source.type.name == "DEQUANTIZE"):
            continue
        pinned = layer._precision is not None and layer._precision.name == "FLOAT"
        if "TF32" in config.flags or (half and not pinned):
            chosen.append(layer)
    return chosen


def _round_conv_inputs(onnx_bytes: bytes, nodes: set[int]) -> bytes:
    """The graph with the data and weight inputs of `nodes` rounded to 10 mantissa bits (through fp16)."""
    if not nodes:
        return onnx_bytes
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    values = {init.name: init for init in model.graph.initializer}
    out = []
    for index, original in enumerate(model.graph.node):
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if index in nodes:
            for k in (0, 1):
                name = node.input[k]
                if name in values:
                    rounded = numpy_helper.to_array(values[name]).astype(np.float16).astype(np.float32)
                    values[name].CopyFrom(numpy_helper.from_array(rounded, name))
                else:
                    half, back = f"{name}__tf32h{index}", f"{name}__tf32{index}"
                    out.append(helper.make_node("Cast", [name], [half], to=TensorProto.FLOAT16))
                    out.append(helper.make_node("Cast", [half], [back], to=TensorProto.FLOAT))
                    node.input[k] = back
        out.append(node)
    del model.graph.node[:]
    model.graph.node.extend(out)
    return model.SerializeToString()


class Builder10(Builder):
    @property
    def platform_has_fast_fp16(self) -> bool:
        return True


class Runtime(_Strict):
    def __init__(self, logger: ILogger) -> None:
        _check_initialised(logger, "ILogger")
        self.logger = type(self)._env.adopt_logger(logger, "createInferRuntime")

    def __del__(self) -> None:
        type(self)._env.live_owners -= 1

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> "ICudaEngine | None":
        env = type(self)._env
        env.deserialize_calls += 1
        blob = bytes(serialized_engine)
        if not blob.startswith(PLAN_MAGIC):
            _log(env, self.logger, "ERROR", "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                 "(Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            return None
        (size,) = struct.unpack("<I", blob[len(PLAN_MAGIC):len(PLAN_MAGIC) + 4])
        start = len(PLAN_MAGIC) + 4
        header = json.loads(blob[start:start + size])
        if header["trt"] != env.version:
            _log(env, self.logger, "ERROR", "IRuntime::deserializeCudaEngine: Error Code 6: The engine plan "
                 f"file is not compatible with this version of TensorRT, expecting library version "
                 f"{env.version} got {header['trt']}, please rebuild.")
            return None
        if header["cc"] != env.compute_capability():
            _log(env, self.logger, "ERROR", "IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The "
                 f"engine plan file is generated on an incompatible device, expecting compute "
                 f"{env.compute_capability()} got compute {header['cc']}, please rebuild.)")
            return None
        if header["device"] != env.gpu.name:
            _log(env, self.logger, "WARNING", OTHER_SKU)
        return env.cls("ICudaEngine")(header, blob[start + size:])


class ICudaEngine(_Strict):
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes) -> None:
        self._header = header
        self._onnx = onnx_bytes
        self._io = header["io"]
        self._session: Any = None
        self.name = "fake engine"

    def _tensor(self, name: str) -> dict[str, Any]:
        for t in self._io:
            if t["name"] == name:
                return t
        raise KeyError(name)

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index]["name"]

    def get_tensor_mode(self, name: str) -> Any:
        mode = self._env.enum("TensorIOMode")
        try:
            return getattr(mode, self._tensor(name)["mode"])
        except KeyError:
            return mode.NONE

    def get_tensor_dtype(self, name: str) -> Any:
        return getattr(self._env.enum("DataType"), self._tensor(name)["dtype"])

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._tensor(name)["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        return [Dims(s) for s in self._header["profiles"][profile_index][name]]

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._header["profiles"])

    @property
    def device_memory_size_v2(self) -> int:
        return 1 << 20

    def create_execution_context(self, strategy: Any = None) -> "IExecutionContext":
        allocation = self._env.enum("ExecutionContextAllocationStrategy")
        strategy = allocation.STATIC if strategy is None else strategy
        if not isinstance(strategy, allocation):
            raise TypeError("create_execution_context(): incompatible function arguments")
        context = self._env.cls("IExecutionContext")(self)
        context.allocation_strategy = strategy
        return context

    def output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """The output shapes for these input shapes, from one run of the graph on zeros (cached)."""
        key = tuple(sorted(shapes.items()))
        cache = self.__dict__.setdefault("_output_shapes", {})
        if key not in cache:
            feeds = {t["name"]: np.zeros(shapes[t["name"]], TRT_TO_NP[t["dtype"]])
                     for t in self._io if t["mode"] == "INPUT"}
            names = [t["name"] for t in self._io if t["mode"] == "OUTPUT"]
            cache[key] = {n: tuple(v.shape) for n, v in zip(names, self.session().run(names, feeds))}
        return cache[key]

    def serialize(self) -> IHostMemory:
        header = json.dumps(self._header).encode()
        return IHostMemory(PLAN_MAGIC + struct.pack("<I", len(header)) + header + self._onnx)

    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(self._onnx, opts, providers=["CPUExecutionProvider"])
        return self._session


class ICudaEngine10(ICudaEngine):
    @property
    def device_memory_size(self) -> int:
        return 1 << 20

    def create_execution_context_without_device_memory(self) -> "IExecutionContext":
        return self.create_execution_context()


class IExecutionContext(_Strict):
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self.active_optimization_profile = 0
        self._env.live_contexts += 1

    def __del__(self) -> None:
        self._env.live_contexts -= 1

    def _inputs(self) -> list[dict[str, Any]]:
        return [t for t in self.engine._io if t["mode"] == "INPUT"]

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if not 0 <= profile_index < self.engine.num_optimization_profiles:
            raise RuntimeError("Error in set optimization profile async.")
        if profile_index != self.active_optimization_profile:
            self._shapes.clear()  # the dynamic shapes set so far belonged to the other profile
        self.active_optimization_profile = profile_index
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        try:
            t = self.engine._tensor(name)
        except KeyError:
            return False
        shape = tuple(int(d) for d in shape)
        lo, _, hi = self.engine._header["profiles"][self.active_optimization_profile][name]
        if t["mode"] != "INPUT" or len(shape) != len(t["shape"]) or any(
            not (a <= s <= b) for s, a, b in zip(shape, lo, hi)
        ):
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        t = self.engine._tensor(name)
        if t["mode"] == "INPUT":
            return Dims(self._shapes.get(name, t["shape"]))
        sizes: dict[str, int] = {}
        for inp in self._inputs():
            if inp["name"] in self._shapes:
                for param, size in zip(inp["params"], self._shapes[inp["name"]]):
                    if param:
                        sizes[param] = size
        dims = tuple(sizes.get(p, -1) if d == -1 else d for d, p in zip(t["shape"], t["params"]))
        if -1 in dims and not self.infer_shapes():  # e.g. "height/4": what the graph computes
            dims = self.engine.output_shapes(self._shapes)[name]
        return Dims(dims)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        try:
            self.engine._tensor(name)
        except KeyError:
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def infer_shapes(self) -> list[str]:
        return [t["name"] for t in self._inputs() if t["name"] not in self._shapes]

    def execute_async_v3(self, stream_handle: int) -> bool:
        env = self._env
        try:  # pybind11's size_t caster: int or __index__, then __int__; never a float
            if isinstance(stream_handle, float):
                raise TypeError
            stream_handle = operator.index(stream_handle) if hasattr(type(stream_handle), "__index__") \
                else int(stream_handle)
        except (TypeError, ValueError):
            raise TypeError("execute_async_v3(): incompatible function arguments. The following argument types "
                            "are supported:\n    1. (self: tensorrt.IExecutionContext, stream_handle: int) "
                            f"-> bool\n\nInvoked with: {stream_handle!r}") from None
        logger = env.process_logger
        if stream_handle not in env.gpu.streams:  # e.g. stream.getPtr(): an address, not a stream
            if logger is not None:
                _log(env, logger, "ERROR", "IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime "
                     "(invalid resource handle)")
            return False
        missing = [t["name"] for t in self.engine._io if t["name"] not in self._addresses]
        unset = self.infer_shapes()
        if missing or unset:
            if logger is not None:
                _log(env, logger, "ERROR", f"IExecutionContext::enqueueV3: missing address or shape for "
                     f"{missing + unset}")
            return False
        shapes = dict(self._shapes)
        addresses = dict(self._addresses)
        engine = self.engine
        outputs = [(t["name"], tuple(self.get_tensor_shape(t["name"])), t["dtype"])
                   for t in engine._io if t["mode"] == "OUTPUT"]
        batch = next(iter(shapes.values()))[0]
        env.executions.append((stream_handle, batch))
        env.gpu.record("execute_async_v3", stream_handle)

        def run() -> int:
            feeds = {}
            for t in self._inputs():
                dtype = np.dtype(TRT_TO_NP[t["dtype"]])
                shape = shapes[t["name"]]
                raw = env.gpu.bytes_at(addresses[t["name"]], int(np.prod(shape)) * dtype.itemsize, "device")
                if raw is None:
                    return cudaError_t.cudaErrorIllegalAddress
                feeds[t["name"]] = raw.view(dtype).reshape(shape).copy()
            names = [name for name, _, _ in outputs]
            results = engine.session().run(names, feeds)
            for (name, shape, dtype_name), value in zip(outputs, results):
                value = np.ascontiguousarray(value, dtype=TRT_TO_NP[dtype_name])
                if value.shape != shape:
                    return cudaError_t.cudaErrorIllegalAddress
                target = env.gpu.bytes_at(addresses[name], value.nbytes, "device")
                if target is None:
                    return cudaError_t.cudaErrorIllegalAddress
                target[:] = value.reshape(-1).view(np.uint8)
            return cudaError_t.cudaSuccess

        return env.gpu.enqueue(stream_handle, "execute", run) == cudaError_t.cudaSuccess


def _nptype(dtype: Any) -> type:
    return TRT_TO_NP[dtype.name]


def make_tensorrt(version: str, gpu: FakeGPU) -> types.ModuleType:
    """A module that behaves like `tensorrt` `version` on the fake GPU `gpu`."""
    env = FakeTRT(version, gpu)
    mod = types.ModuleType("tensorrt")
    env.module = mod
    mod._fake = env
    mod.__version__ = version
    legacy = not env.v11

    if env.v11:  # NvInfer.h v11.1 l.11471-11480
        flags = {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
    else:  # NvInfer.h v10.0.0 l.9362-9370, v10.13.3 l.10475-10490
        flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
        if env.major_minor >= (10, 13):
            flags.update(PREFER_JIT_PYTHON_PLUGINS=2, PREFER_AOT_PYTHON_PLUGINS=3)
    builder_flags = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
                     "SAFETY_SCOPE", "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE",
                     "EXCLUDE_LEAN_RUNTIME", "WEIGHT_STREAMING", "STRIP_PLAN"]
    if legacy:
        builder_flags += ["FP16", "INT8", "BF16", "FP8", "INT4", "OBEY_PRECISION_CONSTRAINTS",
                          "PREFER_PRECISION_CONSTRAINTS"]

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    enums = {
        "NetworkDefinitionCreationFlag": enum.IntEnum("NetworkDefinitionCreationFlag", flags),
        "BuilderFlag": enum.IntEnum("BuilderFlag", {n: i for i, n in enumerate(builder_flags)}),
        "MemoryPoolType": enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1,
                                                          "DLA_LOCAL_DRAM": 2, "DLA_GLOBAL_DRAM": 3,
                                                          "TACTIC_SHARED_MEMORY": 4}),
        "DataType": enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4,
                                              "UINT8": 5, "FP8": 6, "BF16": 7, "INT64": 8, "INT4": 9}),
        "TensorIOMode": enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2}),
        "ExecutionContextAllocationStrategy": enum.IntEnum("ExecutionContextAllocationStrategy", {
            "STATIC": 0, "ON_PROFILE_CHANGE": 1, "USER_MANAGED": 2}),
        "LayerType": enum.IntEnum("LayerType", {n: i for i, n in enumerate(LAYER_TYPES)}),
        "ErrorCode": enum.IntEnum("ErrorCode", {n: i for i, n in enumerate([
            "SUCCESS", "INTERNAL_ERROR", "MEM_ALLOC_FAILED", "MODEL_DESERIALIZE_FAILED", "INVALID_VALUE",
            "INVALID_GRAPH", "INVALID_NODE", "UNSUPPORTED_GRAPH", "UNSUPPORTED_NODE",
            "UNSUPPORTED_NODE_ATTR", "UNSUPPORTED_NODE_INPUT", "UNSUPPORTED_NODE_DATATYPE",
            "UNSUPPORTED_NODE_DYNAMIC", "UNSUPPORTED_NODE_SHAPE", "REFIT_FAILED"])}),
    }
    mod.__dict__.update(enums)
    data_type = enums["DataType"]
    mod.float32, mod.float16, mod.uint8, mod.int8, mod.int32 = (
        data_type.FLOAT, data_type.HALF, data_type.UINT8, data_type.INT8, data_type.INT32)
    mod.nptype = _nptype
    mod.Dims = Dims
    mod.IHostMemory = IHostMemory

    chosen = {
        "ILogger": ILogger, "Logger": Logger, "IProgressMonitor": IProgressMonitor, "ITensor": ITensor,
        "ILayer": ILayer10 if legacy else ILayer, "INetworkDefinition": INetworkDefinition,
        "OnnxParser": OnnxParser10 if legacy else OnnxParser, "IOptimizationProfile": IOptimizationProfile,
        "ITimingCache": ITimingCache, "IBuilderConfig": IBuilderConfig,
        "Builder": Builder10 if legacy else Builder, "Runtime": Runtime,
        "ICudaEngine": ICudaEngine10 if legacy else ICudaEngine, "IExecutionContext": IExecutionContext,
    }
    for name, base in chosen.items():
        setattr(mod, name, type(name, (base,), {"_env": env, "__module__": "tensorrt"}))
    mod.ILogger.Severity = Severity
    for member in Severity:
        setattr(mod.Logger, member.name, member)

    def module_getattr(name: str) -> Any:
        if name in REMOVED_IN_10 or name in REMOVED_IN_11:
            env.removed_accessed.append(f"tensorrt.{name}")
        raise AttributeError(f"module 'tensorrt' has no attribute '{name}'")

    mod.__getattr__ = module_getattr
    return mod
