"""Session fixtures: a model trained the way the demo trains it, and its exports (tests/artifacts.py
builds each once, in a child process, and caches it)."""

from __future__ import annotations

import pytest
from artifacts import artifact, checkpoint, export_result


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(checkpoint path, epoch records) of the demo's training step: random teacher, 64 px patches."""
    return checkpoint(artifact("trained", tmp_path_factory))


@pytest.fixture(scope="session")
def exported_fp32(tmp_path_factory):
    """(ExportResult, log lines) of `fwrd-export model.pt --precision fp32`."""
    return export_result(artifact("export_fp32", tmp_path_factory))


@pytest.fixture(scope="session")
def exported_fp16(tmp_path_factory):
    return export_result(artifact("export_fp16", tmp_path_factory))


@pytest.fixture(scope="session")
def exported_int8(tmp_path_factory):
    return export_result(artifact("export_int8", tmp_path_factory))


@pytest.fixture(scope="session")
def exported_int8_trt(tmp_path_factory):
    """int8 in the form TensorRT fuses (`--precision int8 --target tensorrt`)."""
    return export_result(artifact("export_int8_trt", tmp_path_factory))
