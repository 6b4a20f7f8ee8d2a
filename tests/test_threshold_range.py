"""Thresholds must lie in the range of FW-RD scores, and the colour key stays small whatever the scale
(issue 21.8: `--threshold 1e8` never finished, the key laid out threshold/100 ticks)."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from fwrd.cli.run import command
from fwrd.config import FORMAT_TAG, META_CONFIG, META_FORMAT, META_PRECISION, FWRDConfig
from fwrd.errors import FwrdError
from fwrd.runtime.outputs.colormap import ScoreScale, model_scale
from fwrd.runtime.outputs.legend import scale_ticks
from fwrd.runtime.settings import RunSettings


def _run(*args):
    return CliRunner().invoke(command, [str(a) for a in args] + ["--quiet", "--threads", "1"])


@pytest.mark.parametrize("hi", [3.0, 4.0, 130.0, 1.25e8])
def test_the_key_has_a_handful_of_ticks_whatever_the_scale(hi):
    began = time.perf_counter()
    ticks = scale_ticks(ScoreScale(0.0, hi, hi / 2))
    assert 2 <= len(ticks) <= 7 and ticks[0] == 0.0 and ticks[-1] <= hi
    assert time.perf_counter() - began < 0.1
    assert scale_ticks(model_scale(1.21)) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # unchanged where it was fine


@pytest.mark.parametrize("threshold", [-0.01, 3.01, 1e8])
def test_a_threshold_outside_the_score_range_is_refused(threshold):
    with pytest.raises(FwrdError, match=r"outside the range of FW-RD scores \[0, 3\]"):
        RunSettings(threshold=threshold)
    with pytest.raises(FwrdError, match="the model's threshold .* outside the range"):
        FWRDConfig(threshold=threshold)
    with pytest.raises(FwrdError, match="dense threshold .* outside the range"):
        FWRDConfig(dense_threshold=threshold)


@pytest.mark.parametrize("threshold", [0.0, 0.35, 3.0])
def test_thresholds_inside_the_range_are_kept(threshold):
    assert RunSettings(threshold=threshold).threshold == threshold
    assert FWRDConfig(threshold=threshold).threshold == threshold


def test_fwrd_run_refuses_threshold_1e8_in_one_line_before_scoring(synthetic_cohort, standin_model, tmp_path):
    result = _run(synthetic_cohort.slides[2].path, "--model", standin_model, "--out", tmp_path / "out",
                  "--threshold", "1e8")
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert "--threshold (1e+08) lies outside the range" in result.output
    assert not (tmp_path / "out").exists()


def test_a_model_whose_metadata_holds_a_huge_threshold_is_refused(synthetic_cohort, tmp_path):
    from onnx_standin import build_standin

    config = json.loads(FWRDConfig(tile_size=64, mpp=0.243).to_json())
    config["threshold"] = 1e8
    model = build_standin(tmp_path / "lying.onnx", FWRDConfig(tile_size=64), metadata={
        META_FORMAT: FORMAT_TAG, META_CONFIG: json.dumps(config), META_PRECISION: "fp32"})
    result = _run(synthetic_cohort.slides[2].path, "--model", model, "--out", tmp_path / "out")
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert "threshold (1e+08) lies outside the range" in result.output and "lying.onnx" in result.output
