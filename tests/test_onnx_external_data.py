"""fwrd refuses a model whose external data points outside its folder (issue 26.5): ONNX Runtime 1.19 read
`../../etc/passwd` into a crafted model's tile scores. Every path that loads an ONNX model checks it first:
the runtime backends (fwrd-run, fwrd-eval patches), fwrd-export from an .onnx, fwrd-bench."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from fwrd.config import FWRDConfig
from fwrd.errors import ModelError
from fwrd.runtime.onnx_data import FIELDS, external_locations, refuse_outside_data

REFUSED = "keeps its data outside the model's folder"


def crafted(folder: Path, location: str, where: str = "initializer") -> Path:
    """The stand-in model plus a tensor whose bytes are said to lie at `location` (written with onnx's
    helpers, never loaded by them): as an initializer, or as a Constant inside an If branch."""
    from onnx_standin import build_standin

    folder.mkdir(parents=True, exist_ok=True)
    path = build_standin(folder / "crafted.onnx", FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35))
    model = onnx.load(str(path))
    leak = helper.make_tensor("leak", TensorProto.UINT8, [4], b"\0\0\0\0", raw=True)
    set_external_data(leak, location=location, offset=0, length=4)
    leak.ClearField("raw_data")
    if where == "initializer":
        model.graph.initializer.append(leak)
    else:  # nested: a node attribute's subgraph holding a Constant
        branch = helper.make_graph([helper.make_node("Constant", [], ["c"], value=leak)], "branch", [],
                                   [helper.make_tensor_value_info("c", TensorProto.UINT8, [4])])
        model.graph.node.append(helper.make_node("If", ["cond"], ["unused"], then_branch=branch, else_branch=branch))
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(b"root")
    return path


@pytest.mark.parametrize("where", ["initializer", "subgraph"])
def test_a_location_outside_the_folder_is_refused(tmp_path, secret, where):
    for location in ("../secret.bin", str(secret), "sub/../../secret.bin"):
        path = crafted(tmp_path / "model", location, where)
        assert set(external_locations(path)) == {("leak", location)}  # (both If branches hold it)
        with pytest.raises(ModelError, match=REFUSED):
            refuse_outside_data(path)


def test_a_link_beside_the_model_that_leads_outside_is_refused(tmp_path, secret):
    folder = tmp_path / "model"
    path = crafted(folder, "weights.bin")
    os.symlink(secret, folder / "weights.bin")
    with pytest.raises(ModelError, match="through a link"):
        refuse_outside_data(path)


def test_data_beside_the_model_and_plain_models_pass(tmp_path, standin_model):
    folder = tmp_path / "model"
    path = crafted(folder, "weights.bin")
    (folder / "weights.bin").write_bytes(b"abcd")
    refuse_outside_data(path)
    assert external_locations(standin_model) == []
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match="not an ONNX model"):
        refuse_outside_data(junk)


def test_every_loader_refuses_it_in_one_line(tmp_path, secret, synthetic_cohort):
    from fwrd.cli.bench import command as bench
    from fwrd.cli.export import command as export
    from fwrd.cli.run import command as run
    from fwrd.runtime.backends import open_backend
    from fwrd.runtime.model_file import read_onnx_metadata

    path = crafted(tmp_path / "model", "../secret.bin")
    for load in (open_backend, read_onnx_metadata, lambda p: open_backend(p, dense=True)):
        with pytest.raises(ModelError, match=REFUSED):
            load(path)
    slide = synthetic_cohort.slides[2].path
    for command, args in ((run, [slide, "--model", path, "--out", tmp_path / "out", "--quiet"]),
                          (export, [path, "--engine", tmp_path / "rd.plan"]),
                          (bench, ["--model", path, "--stages", "inference", "--quiet", "--seconds", "0.1"])):
        result = CliRunner().invoke(command, [str(a) for a in args])
        assert result.exit_code == 1 and REFUSED in result.output, result.output
        assert result.output.count("Error:") == 1 and "Traceback" not in result.output


def test_the_field_numbers_are_onnx_own():
    from onnx import onnx_ml_pb2

    for message, fields in FIELDS.items():
        descriptor = getattr(onnx_ml_pb2, message).DESCRIPTOR
        for number, (name, kind) in fields.items():
            field = descriptor.fields_by_name[name]
            assert field.number == number, (message, name)
            assert (field.message_type.name if field.message_type else "") == kind, (message, name)


def test_the_check_reads_no_weights(tmp_path):
    """A large model is walked, not loaded: its raw tensor bytes are skipped by length."""
    weights = numpy_helper.from_array(np.zeros((64, 1024, 1024), np.float32), "big")  # 256 MiB
    graph = helper.make_graph([helper.make_node("Identity", ["big"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 1024, 1024])], [weights])
    path = tmp_path / "big.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    assert external_locations(path) == []
    assert time.perf_counter() - began < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: far below the file
