"""What fwrd's real exporter writes, against TensorRT's parser rules and the fakes (no GPU here).

The graphs come from tests/model_fixtures.py (the demo's training, then `fwrd-export` at each precision),
so a change to the exporter that TensorRT would refuse fails here, not minutes into a GPU deployment.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fakes import TRT_VERSIONS, fake_trt, install  # noqa: F401  (fixtures)

from fwrd.cli.export import command as export_cmd
from fwrd.config import META_TARGET
from fwrd.export.gate import VerificationSet, verification_path
from fwrd.export.quantize import KEEP_FP32, fp32_nodes
from fwrd.export.tensorrt_rules import eight_bit_tensors, tensorrt_problems
from fwrd.export.verify import onnx_scores
from fwrd.runtime.backends.tensorrt import TensorRTBackend, manifest_path
from fwrd.digest import file_sha256

pytestmark = pytest.mark.slow
GRAPHS = ("exported_fp32", "exported_fp16", "exported_int8_trt")


def _graph(request, fixture):
    return request.getfixturevalue(fixture)[0].onnx


@pytest.mark.parametrize("fixture", GRAPHS)
def test_graphs_for_tensorrt_have_no_8bit_intermediates(request, fixture):
    """After ONNX shape inference: no UINT8 anywhere inside; INT8 only from Q into DQ (or as weights/zero points)."""
    model = onnx.load(str(_graph(request, fixture)))
    found = eight_bit_tensors(model)
    assert tensorrt_problems(model) == []
    if fixture != "exported_int8_trt":
        assert found == []
        return
    assert found and {t.dtype for t in found} == {"INT8"}
    for t in found:
        assert (t.producer, frozenset(t.consumers)) in {
            ("QuantizeLinear", frozenset({"DequantizeLinear"})),
            ("initializer", frozenset({"DequantizeLinear"})),  # int8 weights
            ("initializer", frozenset({"QuantizeLinear", "DequantizeLinear"})),  # zero points
        }, t


def test_cpu_int8_graph_is_marked_and_breaks_the_rules(exported_int8):
    """The CPU form legitimately carries uint8 activations: the scan sees them, so it never goes to TensorRT."""
    model = onnx.load(str(exported_int8[0].onnx))
    assert {p.key: p.value for p in model.metadata_props}[META_TARGET] == "cpu"
    assert any(t.dtype == "UINT8" and t.producer == "QuantizeLinear" for t in eight_bit_tensors(model))
    assert any("UINT8 from QuantizeLinear" in p for p in tensorrt_problems(model))
    assert verification_path(exported_int8[0].onnx).exists()  # the self-test at load replays it (CPU runs too)


def test_int8_tensorrt_form(exported_int8_trt, exported_fp32):
    """Symmetric int8 Q/DQ, zero point 0, per-channel weights, per-tensor activations, Q/DQ at conv inputs."""
    result, _ = exported_int8_trt
    assert result.report.passed and result.report.precision == "int8"
    model = onnx.load(str(result.onnx))
    graph = model.graph
    assert {p.key: p.value for p in model.metadata_props}[META_TARGET] == "tensorrt"
    values = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert quantize
    for node in quantize:  # activations: per tensor, int8, zero point 0, straight into a DQ
        assert values[node.input[1]].size == 1
        assert values[node.input[2]].dtype == np.int8 and not values[node.input[2]].any()
        assert set(consumers[node.output[0]]) == {"DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    kept_names = set(fp32_nodes(result.onnx, KEEP_FP32))  # left in fp32, as measured in fwrd.export.quantize
    kept = [n for n in convs if n.name in kept_names]
    assert len(kept) == 7 and all(values[n.input[1]].dtype == np.float32 for n in kept)  # names survive folding
    convs = [n for n in convs if n not in kept]
    produced_by = {out: n for n in graph.node for out in n.output}
    for conv in convs:  # both the input and the weights of every other convolution come through DQ
        data, weights = produced_by[conv.input[0]], produced_by[conv.input[1]]
        assert data.op_type == weights.op_type == "DequantizeLinear"
        w_scale = values[weights.input[1]]
        out_channels = values[weights.input[0]].shape[0 if conv.op_type == "Conv" else 1]
        assert w_scale.size == out_channels and values[weights.input[0]].dtype == np.int8
        assert len(conv.input) < 3 or conv.input[2] in values  # float bias: TensorRT has no int32 DQ
    for conv in convs:  # no Q/DQ on convolution outputs
        assert "QuantizeLinear" not in consumers.get(conv.output[0], [])
    checks = VerificationSet.load(verification_path(result.onnx), file_sha256(result.onnx))
    assert len(checks.tiles) == result.report.tiles and checks.is_tumor is not None


def test_fake_parser_takes_the_real_graphs_and_refuses_the_cpu_int8(request, fake_trt, exported_int8):
    trt = fake_trt.trt
    for fixture in GRAPHS:
        network = trt.Builder(trt.Logger()).create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, trt.Logger(trt.Logger.ERROR))
        assert parser.parse_from_file(str(_graph(request, fixture))), [str(parser.get_error(0))]
    network = trt.Builder(trt.Logger()).create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt.Logger(trt.Logger.ERROR))
    assert not parser.parse_from_file(str(exported_int8[0].onnx))
    error = parser.get_error(0)
    assert error.node_operator() == "QuantizeLinear" and error.desc() == "Found unsupported input type of UINT8"


@pytest.mark.parametrize("fixture, version", list(zip(GRAPHS, TRT_VERSIONS)))
def test_engine_built_elsewhere_is_gated_on_the_exports_tiles(request, tmp_path, monkeypatch, fixture, version):
    """`fwrd-export rd.onnx --engine rd.plan` on the (fake) GPU machine: the engine gate uses the tiles and
    PyTorch scores the export saved beside the graph, and the manifest keeps the figures."""
    install(monkeypatch, version)
    graph = _graph(request, fixture)
    plan = tmp_path / "rd.plan"
    done = CliRunner().invoke(export_cmd, [str(graph), "--engine", str(plan), "--max-batch", "8", "--opt-batch", "8"])
    assert done.exit_code == 0, done.output
    manifest = json.loads(manifest_path(plan).read_text())
    gate = manifest["verification"]
    precision = {"exported_fp32": "fp32", "exported_fp16": "fp16", "exported_int8_trt": "int8"}[fixture]
    assert manifest["precision"] == gate["precision"] == precision and manifest["precision_mode"] == "strongly-typed"
    assert gate["passed"] and gate["runner"] == "tensorrt" and gate["batches"] == [1, 8]
    assert gate["auroc_reference"] is not None  # the labelled tiles came along in rd.onnx.verify.npz
    assert manifest["tf32"] is (precision != "fp32")  # cleared for fp32 engines only
    tiles = VerificationSet.load(verification_path(graph)).tiles[:5]
    # int8: the fp32 convolutions (KEEP_FP32) feed quantisers, and their last-bit differences between batch
    # sizes (8 here, 5 below) can move a value across an int8 rounding step: ~1e-4 on the score.
    rtol = 1e-3 if precision == "int8" else 1e-5
    with TensorRTBackend.from_plan(plan, batch_size=8) as backend:
        np.testing.assert_allclose(backend.infer(tiles)[0], onnx_scores(graph, tiles, 5), rtol=rtol, atol=1e-6)
