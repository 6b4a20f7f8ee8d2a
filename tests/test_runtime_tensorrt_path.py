"""`fwrd-run --engine rd.plan` end to end on the fake TensorRT + cuda-python (tests/fakes; no GPU).

The TensorRT backend keeps two batches in flight while the decode pool reuses its buffers, so equal
results with ONNX Runtime show both sides keep the Backend contract (copy before asking for more).
"""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from fakes import install
from fakes.tiny_model import tiny_verification

from fwrd.cli.run import command
from fwrd.export.tensorrt_build import build_engine
from fwrd.runtime.backends import open_backend
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide


def _table(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, usecols=(0, 1, 2))


def test_engine_run_equals_onnxruntime(synthetic_cohort, standin_model, tmp_path, monkeypatch):
    fake = install(monkeypatch, "11.4.0")
    plan = tmp_path / "rd.plan"
    build_engine(standin_model, plan, verification=tiny_verification(standin_model, tile_size=64), min_batch=1,
                 opt_batch=8, max_batch=8, precision="fp32", log=lambda _: None)
    slide = synthetic_cohort.slides[0].path
    settings = RunSettings(batch_size=8, workers=2, buffers=2, progress=False)
    with open_backend(plan, batch_size=8) as engine:
        assert engine.name == "tensorrt"
        result = score_slide(slide, engine, tmp_path / "trt", settings)
    with open_backend(standin_model, threads=1) as ort_backend:
        score_slide(slide, ort_backend, tmp_path / "ort", settings)
    trt = _table(tmp_path / "trt" / slide.stem / "tiles.csv")
    ort = _table(tmp_path / "ort" / slide.stem / "tiles.csv")
    np.testing.assert_array_equal(trt[:, :2], ort[:, :2])
    np.testing.assert_allclose(trt[:, 2], ort[:, 2], atol=1e-5)
    assert result.summary["backend"] == "tensorrt" and len(fake.state.executions) >= len(trt) // 8

    out = tmp_path / "cli"
    done = CliRunner().invoke(command, [str(slide), "--engine", str(plan), "--out", str(out), "--batch-size", "8",
                                        "--quiet"])
    assert done.exit_code == 0, done.output
    np.testing.assert_allclose(_table(out / slide.stem / "tiles.csv")[:, 2], ort[:, 2], atol=1e-5)
