"""Dense scoring only on models validated for it at the runtime's geometry (issue 21.1): `fwrd-run --dense`
called every tile of a 64 px lone-tile model tumor with an inverted ranking, with a note at most."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from fwrd.cli.export import command as export
from fwrd.cli.run import command as run
from fwrd.config import FWRDConfig
from fwrd.errors import ModelError
from fwrd.runtime.dense_trust import CLEARLY_WORSE, dense_margin
from onnx_standin import STANDIN_RECORD, build_standin

BASE = dict(tile_size=64, mpp=0.243, threshold=0.35)


def _model(tmp_path, record=None, name="m.onnx"):
    return build_standin(tmp_path / name, FWRDConfig(**BASE, dense_validation=record), dense=True)


def _run(*args):
    return CliRunner().invoke(run, [str(a) for a in args] + ["--quiet", "--threads", "1"])


def _refused(result, *words):
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_a_model_never_validated_is_refused_before_any_slide(synthetic_cohort, tmp_path):
    model = _model(tmp_path)  # what every model was before: a lone-tile 64 px model inverts here
    result = _run(synthetic_cohort.slides[0].path, "--model", model, "--out", tmp_path / "out", "--dense")
    _refused(result, "m.onnx has not been validated for dense scoring",
             "fwrd-export m.onnx --validate-dense SLIDES --annotations DIR", "without --dense")
    assert not (tmp_path / "out").exists()
    assert _run(synthetic_cohort.slides[0].path, "--model", model, "--out", tmp_path / "t").exit_code == 0  # per tile


@pytest.mark.parametrize("dense, refused", [(0.97, False), (0.99 - CLEARLY_WORSE, False), (0.96, True), (0.04, True)])
def test_clearly_worse_dense_than_per_tile_is_refused(dense, refused):
    config = FWRDConfig(**BASE, dense_validation={**STANDIN_RECORD, "auroc_dense": dense, "auroc_tiles": 0.99})
    if refused:
        with pytest.raises(ModelError, match=f"clearly worse dense than per tile .tile AUROC {dense:.3f} against 0.990"):
            dense_margin(config, None, "m.onnx")
    else:
        assert dense_margin(config, None, "m.onnx") == 32


def test_the_margin_follows_the_record_and_another_is_refused(synthetic_cohort, tmp_path):
    model = _model(tmp_path, {**STANDIN_RECORD, "margin": 64})
    slide = synthetic_cohort.slides[2].path
    result = _run(slide, "--model", model, "--out", tmp_path / "out", "--dense", "--stride", "32", "--region", "320")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / slide.stem / "summary.json").read_text())
    assert summary["dense"]["margin"] == 64 and summary["settings"]["margin"] == 64
    assert "validated with a 64 px margin, regions up to 256 px" in result.output
    other = _run(slide, "--model", model, "--out", tmp_path / "o2", "--dense", "--region", "320", "--margin", "128")
    _refused(other, "validated for dense scoring with a 64 px margin", "--margin 128 was not")


@pytest.mark.parametrize("change, words", [
    ({"tiles": 100, "tumor_tiles": 5}, "5 tumor and 95 normal tiles"),
    ({"auroc_dense": "high"}, "not a number"),
    ({"margin": 40}, "not valid"),
])
def test_a_record_that_proves_nothing_is_refused(change, words):
    config = FWRDConfig(**BASE, dense_validation={**STANDIN_RECORD, **change})
    with pytest.raises(ModelError, match=words):
        dense_margin(config, None, "m.onnx")
    incomplete = {k: v for k, v in STANDIN_RECORD.items() if k != "auroc_tiles"}
    with pytest.raises(ModelError, match="record is incomplete"):
        dense_margin(FWRDConfig(**BASE, dense_validation=incomplete), None, "m.onnx")


def test_an_engine_is_told_to_validate_its_graph():
    with pytest.raises(ModelError, match="validate the ONNX graph it was built from .* build the engine again"):
        dense_margin(FWRDConfig(**BASE), None, "rd.plan")


def test_validate_dense_writes_a_record_fwrd_run_then_takes(synthetic_cohort, tmp_path):
    model = _model(tmp_path)
    validated = tmp_path / "validated" / "m.onnx"
    validated.parent.mkdir()
    args = [model, "-o", validated, "--validate-dense", synthetic_cohort.slides[0].path,
            "--annotations", synthetic_cohort.root / "annotations", "--stride", "32", "--workers", "1"]
    result = CliRunner().invoke(export, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "fwrd-run --dense will score with it at a 128 px margin" in result.output
    from fwrd.runtime.model_file import read_onnx_metadata

    config = FWRDConfig.from_json(read_onnx_metadata(validated)["fwrd.config"])
    record = config.dense_validation
    assert record["margin"] == 128 and record["region"] == 1536 and record["stride"] == 32 and record["slides"] == 1
    assert record["tumor_tiles"] >= 30 and record["tiles"] - record["tumor_tiles"] >= 30
    assert record["auroc_tiles"] > 0.9 and abs(record["auroc_dense"] - record["auroc_tiles"]) < 0.02
    assert config.dense_threshold == record["threshold"] and 0 <= record["threshold"] <= 3
    assert FWRDConfig.from_json(read_onnx_metadata(model)["fwrd.config"]).dense_validation is None  # -o: a copy
    slide = synthetic_cohort.slides[2].path
    done = _run(slide, "--model", validated, "--out", tmp_path / "out", "--dense", "--stride", "32")
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "out" / slide.stem / "summary.json").read_text())["dense"]["margin"] == 128


def test_validation_needs_annotated_lesions(synthetic_cohort, tmp_path):
    model = _model(tmp_path)
    normal = tmp_path / "normal"
    normal.mkdir()
    shutil.copy(synthetic_cohort.slides[2].path, normal)  # the normal slide only
    result = CliRunner().invoke(export, [str(model), "--validate-dense", str(normal), "--stride", "32"])
    _refused(result, "0 tumor", "needs at least 30 of each")
    from fwrd.runtime.model_file import read_onnx_metadata

    assert FWRDConfig.from_json(read_onnx_metadata(model)["fwrd.config"]).dense_validation is None


def test_a_benchmark_times_dense_scoring_of_any_model(synthetic_cohort, tmp_path):
    """fwrd-bench measures speed, and its scores go to a scratch folder: it never needs the record."""
    from fwrd.benchmark.stages import end_to_end_sample
    from fwrd.runtime.backends import open_backend
    from fwrd.runtime.settings import RunSettings

    model = _model(tmp_path)
    settings = RunSettings(stride=32, dense=True, region=256, margin=32, progress=False)
    with open_backend(model, threads=1, dense=True, region=256) as backend:
        sample, summary = end_to_end_sample(synthetic_cohort.slides[2].path, backend, settings, tmp_path)
    assert sample.tiles > 0 and summary["mode"] == "dense"
