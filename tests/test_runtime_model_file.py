"""What makes a model file an fwrd model: metadata and I/O checks (fwrd.runtime.model_file)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from onnx_standin import build_standin

from fwrd.config import FORMAT_TAG, META_CONFIG, META_FORMAT, FWRDConfig
from fwrd.errors import InputNotFound, ModelError
from fwrd.digest import file_sha256
from fwrd.runtime.model_file import check_fwrd_model, dtype_name, read_onnx_metadata

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, threshold=1.5)
META = {META_FORMAT: FORMAT_TAG, META_CONFIG: CONFIG.to_json()}
GOOD_IN = [("tiles", "tensor(uint8)", ["batch", 64, 64, 3])]
GOOD_OUT = [("score", "tensor(float)", ["batch"]), ("amap", "tensor(float)", ["batch", 16, 16])]


def test_accepts_an_fwrd_model_and_returns_its_config():
    assert check_fwrd_model(META, GOOD_IN, GOOD_OUT) == CONFIG
    # numpy dtypes, fixed batch and outputs in another order are fine too
    config = check_fwrd_model(META, [("tiles", np.uint8, [8, 64, 64, 3])],
                              [("amap", np.float32, [8, 16, 16]), ("score", "float32", [8])])
    assert config.tile_size == 64


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({}, "has no fwrd metadata"),
        ({META_FORMAT: "other-v9", META_CONFIG: CONFIG.to_json()}, "has format 'other-v9'"),
        ({META_FORMAT: FORMAT_TAG}, "lacks fwrd.config"),
        ({META_FORMAT: FORMAT_TAG, META_CONFIG: "[1, 2]"}, "bad fwrd.config"),
        ({META_FORMAT: FORMAT_TAG, META_CONFIG: '{"tile_size": 100}'}, "multiple of 32"),
    ],
)
def test_bad_metadata_is_refused(metadata, message):
    with pytest.raises(ModelError, match=message):
        check_fwrd_model(metadata, GOOD_IN, GOOD_OUT, source="m.onnx")


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([("input", "tensor(uint8)", ["batch", 64, 64, 3])], r"inputs are \[input\]"),
        ([("tiles", "tensor(float)", ["batch", 3, 64, 64])], "input 'tiles' is float32"),
        ([("tiles", "tensor(uint8)", ["batch", 3, 64, 64])], r"uint8 \[batch, 64, 64, 3\]"),
        ([("tiles", "tensor(uint8)", ["batch", 128, 128, 3])], "input 'tiles'"),
        ([("tiles", "tensor(uint8)", ["batch", 64, 64])], "input 'tiles'"),
        (GOOD_IN + [("extra", "tensor(float)", [1])], "inputs are"),
    ],
)
def test_bad_inputs_are_refused(inputs, message):
    with pytest.raises(ModelError, match=message):
        check_fwrd_model(META, inputs, GOOD_OUT)


@pytest.mark.parametrize(
    "outputs, message",
    [
        (GOOD_OUT[:1], r"outputs are \[score\]"),
        ([("score", "tensor(float)", ["batch", 1]), GOOD_OUT[1]], "output 'score'"),
        ([GOOD_OUT[0], ("amap", "tensor(float)", ["batch", 64, 64])], "output 'amap'"),
        ([GOOD_OUT[0], ("amap", "tensor(float16)", ["batch", 16, 16])], "float16"),
    ],
)
def test_bad_outputs_are_refused(outputs, message):
    with pytest.raises(ModelError, match=message):
        check_fwrd_model(META, GOOD_IN, outputs)


def test_dtype_names():
    assert dtype_name("tensor(uint8)") == "uint8"
    assert dtype_name("tensor(float)") == "float32"
    assert dtype_name(np.uint8) == "uint8"
    assert dtype_name(np.dtype("float32")) == "float32"


def test_metadata_read_with_onnx_or_onnxruntime(tmp_path, monkeypatch):
    path = build_standin(tmp_path / "m.onnx", CONFIG)
    with_onnx = read_onnx_metadata(path)
    assert with_onnx[META_FORMAT] == FORMAT_TAG and FWRDConfig.from_json(with_onnx[META_CONFIG]) == CONFIG
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails: ONNX Runtime reads it
    assert read_onnx_metadata(path) == with_onnx


def test_metadata_of_bad_files(tmp_path):
    with pytest.raises(InputNotFound):
        read_onnx_metadata(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe not protobuf at all")
    with pytest.raises(ModelError, match="not an ONNX model"):
        read_onnx_metadata(junk)


def test_file_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path, chunk=2) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
