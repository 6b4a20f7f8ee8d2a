"""fwrd-export: one self-contained graph per precision, verified against PyTorch before it is written."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from fwrd.cli.export import command as export_cmd
from fwrd.config import FORMAT_TAG, META_CHECKPOINT_SHA256, META_CONFIG, META_FORMAT, META_PRECISION, FWRDConfig
from fwrd.export import verify
from fwrd.export.pipeline import ExportSettings
from fwrd.export.verify import GATES, onnx_scores, reference_scores
from fwrd.model import load_checkpoint
from fwrd.digest import file_sha256

pytestmark = pytest.mark.slow


def test_fp32_graph_is_one_file_with_fwrd_io_and_metadata(exported_fp32, trained):
    result, _ = exported_fp32
    graph = onnx.load(str(result.onnx), load_external_data=False)
    assert not list(result.onnx.parent.glob("*.data")), "no external-data sidecar"
    inputs = {i.name: i for i in graph.graph.input}
    assert list(inputs) == ["tiles"]
    tensor = inputs["tiles"].type.tensor_type
    assert tensor.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value or d.dim_param for d in tensor.shape.dim] == ["batch", "height", "width", 3]
    outputs = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in graph.graph.output}
    assert outputs == {"score": ["batch"], "amap": ["batch", "height/4", "width/4"],
                       "map_s4": ["batch", "height/4", "width/4"], "map_s8": ["batch", "height/8", "width/8"],
                       "map_s16": ["batch", "height/16", "width/16"]}
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta[META_FORMAT] == FORMAT_TAG and meta[META_PRECISION] == "fp32"
    assert meta[META_CHECKPOINT_SHA256] == file_sha256(trained[0])
    _, config = load_checkpoint(trained[0])
    assert FWRDConfig.from_json(meta[META_CONFIG]) == config


def test_fp32_matches_pytorch_at_batch_1_and_more(exported_fp32, trained):
    result, lines = exported_fp32
    assert result.report.passed and result.report.max_rel_delta <= 1e-4
    assert result.report.batches == (1, 8)
    assert any("Spearman" in line for line in lines), "the measured figures are printed"
    model, config = load_checkpoint(trained[0])
    tiles = np.random.default_rng(5).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    ref = reference_scores(model, config, tiles)
    for batch in (1, 5):
        got = onnx_scores(result.onnx, tiles, batch)
        assert np.max(np.abs(got - ref) / np.abs(ref)) <= 1e-4


def test_amap_is_the_summed_map_at_a_quarter(exported_fp32, trained):
    import torch

    from fwrd.model.anomaly_map import summed_anomaly_map
    from fwrd.model.preprocess import normalise_tiles

    result, _ = exported_fp32
    model, config = load_checkpoint(trained[0])
    tiles = np.random.default_rng(6).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    session = verify.cpu_session(result.onnx)
    score, amap, *_ = session.run(None, {"tiles": tiles})
    with torch.no_grad():
        t, s = model(normalise_tiles(torch.from_numpy(tiles), config))
        expected = summed_anomaly_map(t, s, 16).numpy()
    assert amap.shape == (2, 16, 16)
    np.testing.assert_allclose(amap, expected, rtol=1e-4, atol=1e-5)


def test_fp16_gate_and_report(exported_fp16):
    result, _ = exported_fp16
    report = result.report
    gate = GATES["fp16"]
    assert report.passed
    assert report.max_abs_delta <= gate.max_abs_delta and report.spearman >= gate.min_spearman
    assert report.auroc_reference is not None and abs(report.auroc_exported - report.auroc_reference) <= gate.max_auroc_change
    written = json.loads((result.onnx.parent / (result.onnx.name + ".json")).read_text())
    assert written["verification"]["precision"] == "fp16"
    graph = onnx.load(str(result.onnx))
    conv_types = {i.data_type for i in graph.graph.initializer if i.dims and len(i.dims) == 4}
    assert onnx.TensorProto.FLOAT16 in conv_types, "the convolution stack runs in half precision"


def test_int8_gate_and_speed_figures_recorded(exported_int8, exported_fp32):
    result, _ = exported_int8
    assert result.report.passed and result.report.precision == "int8"
    assert result.size_bytes < exported_fp32[0].size_bytes / 2
    graph = onnx.load(str(result.onnx))
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)


def test_int8_export_reports_progress_and_gates_at_the_models_threshold(exported_int8, trained):
    result, lines = exported_int8
    _, config = load_checkpoint(trained[0])
    assert result.report.threshold == config.threshold
    assert any(line.startswith("calibrating int8: tiles 1-8 of ") for line in lines)
    assert any(line.startswith("quantising the convolutions to int8 for cpu") for line in lines)
    passes = [line for line in lines if line.startswith("verification pass ")]
    assert [p.split(":")[0] for p in passes] == ["verification pass 1/2", "verification pass 2/2"]
    assert f"calls at threshold {config.threshold:.4g} flipped on" in lines[lines.index(passes[-1]) + 1]


def test_failed_int8_gate_says_what_to_do_and_keeps_stdout_clean(trained, tmp_path, monkeypatch):
    """Progress (calibration, quantisation, each verification pass) and the error go to stderr only."""
    monkeypatch.setitem(GATES, "int8", verify.Gate(max_abs_delta=None, max_rel_delta=None, min_spearman=1.1,
                                                  max_auroc_change=0.0, max_flip_fraction=0.0))
    result = CliRunner().invoke(export_cmd, [str(trained[0]), "-o", str(tmp_path / "rd.onnx"), "--precision", "int8"])
    assert result.exit_code != 0 and result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    for step in ("calibrating int8: tiles", "quantising the convolutions", "verification pass 1/2",
                 "verification pass 2/2"):
        assert any(line.startswith(step) for line in lines), step
    assert lines[-1].startswith("Error: int8 export failed its accuracy gate: Spearman ")
    assert "Next: export with --precision fp16" in lines[-1] and "--calibration SLIDE_OR_FOLDER" in lines[-1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content,message", [
    (b"not a checkpoint", "not a PyTorch checkpoint"),
    (b"PK\x03\x04truncated", "truncated or corrupt"),
])
def test_bad_checkpoint_is_one_clear_line(tmp_path, content, message):
    bad = tmp_path / "model.pt"
    bad.write_bytes(content)
    result = CliRunner().invoke(export_cmd, [str(bad), "-o", str(tmp_path / "rd.onnx")])
    assert result.exit_code != 0 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "rd.onnx").exists()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_engine_without_tensorrt_is_one_clear_line_before_exporting(trained, tmp_path, precision):
    result = CliRunner().invoke(export_cmd, [str(trained[0]), "-o", str(tmp_path / "rd.onnx"), "--precision",
                                             precision, "--engine", str(tmp_path / "rd.plan")])
    assert result.exit_code != 0
    assert "pip install" in result.output and "fwrd[gpu]" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # failed before the (long) export


def test_engine_from_an_onnx_without_tensorrt_or_verification_set(tmp_path, monkeypatch):
    from fakes import install
    from fakes.tiny_model import write_tiny_model

    graph = write_tiny_model(tmp_path / "rd.onnx")
    result = CliRunner().invoke(export_cmd, [str(graph), "--engine", str(tmp_path / "rd.plan")])
    assert result.exit_code != 0 and "fwrd[gpu]" in result.output and len(result.output.strip().splitlines()) == 1
    install(monkeypatch, "11.4.0")  # TensorRT here, but no rd.onnx.verify.npz: the engine could not be gated
    result = CliRunner().invoke(export_cmd, [str(graph), "--engine", str(tmp_path / "rd.plan")])
    assert result.exit_code != 0 and "rd.onnx has no verification set rd.onnx.verify.npz" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rd.onnx"]


def test_int8_cpu_graph_cannot_be_an_engine(tmp_path):
    result = CliRunner().invoke(export_cmd, [str(tmp_path / "model.pt"), "--precision", "int8", "--target", "cpu",
                                             "--engine", str(tmp_path / "rd.plan")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip() == ("Error: the int8 CPU graph (uint8 activations) cannot become a TensorRT engine: "
                                     "use --target tensorrt, the default with --engine")
    settings = ExportSettings(checkpoint=tmp_path / "m.pt", output=tmp_path / "rd.onnx", precision="int8",
                              engine=tmp_path / "rd.plan")
    assert settings.target == "tensorrt" and settings.for_tensorrt
    settings = ExportSettings(checkpoint=tmp_path / "m.pt", output=tmp_path / "rd.onnx", precision="int8")
    assert settings.target == "cpu" and not settings.for_tensorrt


def test_export_settings_reject_bad_batch_range(tmp_path):
    from fwrd.errors import FwrdError

    with pytest.raises(FwrdError, match="min-batch"):
        ExportSettings(checkpoint=tmp_path / "m.pt", output=tmp_path / "rd.onnx", min_batch=8, opt_batch=4)
