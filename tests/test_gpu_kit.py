"""benchmarks/gpu/run.sh --dry-run: the GPU kit's steps on this CPU, so the kit cannot rot without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_runs_every_step_it_can(trained, tmp_path):
    out = tmp_path / "out"
    before = sorted((ROOT / "benchmarks" / "results").glob("gpu-*"))
    env = {**os.environ, "OUT": str(out), "FWRD_KIT_SITE": str(tmp_path / "site"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", "benchmarks/gpu/run.sh", "--dry-run", "--checkpoint", str(trained[0]),
                           "--budget-s", "3000"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((out / "kit.json").read_text())
    status = {name: step["status"] for name, step in record["steps"].items()}
    assert status == {"environment": "ok", "cuda_memory": "skipped", "precision": "ok", "torch_pipeline": "ok",
                      "tensorrt_slots": "skipped", "training": "ok"}, record["steps"]
    assert "no CUDA device" in record["steps"]["cuda_memory"]["reason"]

    precision = record["steps"]["precision"]["result"]
    assert precision["all_finite"] and precision["comparisons"]["fp16"]["max_abs"] > 0

    pipeline = record["steps"]["torch_pipeline"]["result"]["fp16"]
    (e2e,) = pipeline["end_to_end"].values()
    assert e2e["tiles_per_s"] > 0 and pipeline["naive"] > 0 and pipeline["decode"]
    assert set(record["steps"]["torch_pipeline"]["result"]) == {"fp16", "fp16-graphs", "fp32", "dense"}
    (dense,) = record["steps"]["torch_pipeline"]["result"]["dense"]["dense"]
    assert dense["speedup"] > 0 and dense["tiles_per_s"] > 0 and dense["agreement"]["cells"] > 0
    assert dense["speedup"] == pytest.approx(dense["tiles_per_s"] / dense["per_tile_tiles_per_s"], rel=0.01)
    assert "## Dense scoring vs per tile" in (out / "kit.md").read_text()

    training = record["steps"]["training"]["result"]
    assert training["steps"][0]["loss_finite"] and training["fwrd_train"]["epochs"] == 1
    assert training["fwrd_train"]["fp32"]["epochs"][0]["loss"] > 0
    assert {p.name for p in out.iterdir()} >= {"kit.json", "kit.md", "kit.log", "run.log", "bench-fp16.json"}
    assert len(list(out.iterdir())) <= 8  # the device tool brings back at most 8 files
    assert sorted((ROOT / "benchmarks" / "results").glob("gpu-*")) == before  # a dry run records nothing
