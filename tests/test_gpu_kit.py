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
    assert status == {"environment": "ok", "cuda_memory": "skipped", "precision": "ok", "levers": "ok",
                      "torch_pipeline": "ok", "tensorrt_slots": "skipped", "training": "ok"}, record["steps"]
    assert "no CUDA device" in record["steps"]["cuda_memory"]["reason"]

    precision = record["steps"]["precision"]["result"]
    assert precision["all_finite"] and precision["comparisons"]["fp16"]["max_abs"] > 0

    pipeline = record["steps"]["torch_pipeline"]["result"]["fp16"]
    (e2e,) = pipeline["end_to_end"].values()
    assert e2e["tiles_per_s"] > 0 and pipeline["naive"] > 0 and pipeline["decode"]
    runs = record["steps"]["torch_pipeline"]["result"]
    assert set(runs) == {"fp16", "dense", "dense-section"}  # compiled, fp16-graphs, fp32: GPU plan only
    for run in ("dense", "dense-section"):
        (dense,) = runs[run]["dense"]
        assert dense["speedup"] > 0 and dense["tiles_per_s"] > 0 and dense["agreement"]["cells"] > 0
        assert dense["speedup"] == pytest.approx(dense["tiles_per_s"] / dense["per_tile_tiles_per_s"], rel=0.01)
    assert runs["dense-section"]["slide"]["tiles"] > 0
    markdown = (out / "kit.md").read_text()
    assert "## Dense scoring vs per tile" in markdown and "(tissue-filled section)" in markdown
    assert "## Levers" in markdown

    levers = record["steps"]["levers"]["result"]
    assert levers["baseline"] == "unfolded" and levers["gflop_per_tile"] > 0
    variants = levers["variants"]
    assert set(variants) == {"unfolded", "folded", "compiled"}  # graphs and bf16: GPU plan only
    for name, row in variants.items():
        assert row["tiles_per_s"] > 0 and row["within_fp16_gate"], (name, row)
    assert variants["folded"]["scores"]["max_rel"] <= 1e-5  # folding is exact in fp32
    assert variants["compiled"]["compiled"] and "compile_seconds" in variants["compiled"]
    assert variants["unfolded"]["x_baseline"] == 1.0
    split = levers["kernel_split"]
    assert split["unfolded"]["fraction"].get("batchnorm", 0) > 0 and "batchnorm" not in split["folded"]["fraction"]
    assert split["folded"]["fraction"]["convolution"] > 0
    assert levers["dense"]["gflop_per_region"] > 0 and levers["dense"]["per_flop_efficiency_vs_tiles"] > 0
    assert levers["small_tiles"]["best_batch"] in (2, 4)

    training = record["steps"]["training"]["result"]
    assert training["steps"][0]["loss_finite"] and training["fwrd_train"]["epochs"] == 1
    assert training["fwrd_train"]["fp32"]["epochs"][0]["loss"] > 0
    assert {p.name for p in out.iterdir()} >= {"kit.json", "kit.md", "kit.log", "run.log", "bench-fp16.json"}
    assert len(list(out.iterdir())) <= 8  # the device tool brings back at most 8 files
    assert sorted((ROOT / "benchmarks" / "results").glob("gpu-*")) == before  # a dry run records nothing
