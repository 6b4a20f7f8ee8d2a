"""fwrd-bench: the verdict logic on hand-made figures, the summaries, and quick smoke runs of the harness
with the stand-in model (structure asserted, never the numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import install

from fwrd.benchmark import naive as naive_module
from fwrd.benchmark.harness import BenchSettings, run_benchmark
from fwrd.benchmark.machine import cpu_flags, cpu_model, parse_nvidia_smi
from fwrd.benchmark.naive import TileScorer, host_preprocess, naive_sample
from fwrd.benchmark.report import overall_verdict, render_markdown, render_text, results_stem, stage_verdict
from fwrd.benchmark.stages import inference_sample
from fwrd.benchmark.stats import is_noisy, summarise
from fwrd.cli.bench import command
from fwrd.config import FWRDConfig
from fwrd.errors import FwrdError
from fwrd.runtime.backends import open_backend
from fwrd.runtime.backends.base import Backend

FAST = ["--seconds", "0.05", "--threads", "1", "--quiet"]


# -- verdict on hand-made figures ------------------------------------------------------------------
def test_verdict_names_inference_when_decode_is_faster():
    v = stage_verdict(decode=800.0, inference=40.0, end_to_end=38.0)
    assert v["bound_by"] == "inference" and v["bound_tiles_per_s"] == 40.0
    assert v["efficiency"] == pytest.approx(0.95) and v["meets_target"] is True
    assert v["headroom"] == pytest.approx(20.0)
    assert v["text"].startswith("inference-bound") and "below" not in v["text"]


def test_verdict_names_decode_and_flags_a_pipeline_below_target():
    v = stage_verdict(decode=30.0, inference=100.0, end_to_end=20.0)
    assert v["bound_by"] == "decode" and v["efficiency"] == pytest.approx(2 / 3, abs=1e-4)
    assert v["meets_target"] is False and "below 0.90" in v["text"]
    assert v["headroom"] == pytest.approx(100 / 30, abs=1e-3)


def test_verdict_edge_cases():
    tie = stage_verdict(decode=50.0, inference=50.0, end_to_end=50.0)
    assert tie["bound_by"] == "decode" and tie["efficiency"] == 1.0
    one = stage_verdict(decode=None, inference=50.0, end_to_end=46.0)
    assert one["bound_by"] == "inference" and one["headroom"] is None and "decode not measured" in one["text"]
    assert stage_verdict(decode=10.0, inference=20.0, end_to_end=None)["bound_by"] is None
    assert stage_verdict(decode=None, inference=None, end_to_end=5.0)["efficiency"] is None
    assert stage_verdict(decode=10.0, inference=20.0, end_to_end=8.0, target=0.5)["meets_target"] is True


def _fig(*values):
    return summarise(values)


def _handmade_result():
    """fp32 and int8 on ONNX Runtime: int8 is 2.5x faster as a model but decode caps it end to end."""
    targets = [{"label": "ort cpu fp32"}, {"label": "ort cpu int8"}]
    inference = [
        {"target": 0, "label": "ort cpu fp32", "batch_size": 8, "tiles_per_s": _fig(9.0, 10.0, 11.0)},
        {"target": 0, "label": "ort cpu fp32", "batch_size": 32, "tiles_per_s": _fig(11.0, 12.0, 12.5)},
        {"target": 1, "label": "ort cpu int8", "batch_size": 32, "tiles_per_s": _fig(30.0, 30.0, 30.0)},
    ]
    e2e = []
    for target, label, value, decode, infer in ((0, "ort cpu fp32", 11.5, 25.0, 12.0),
                                                (1, "ort cpu int8", 20.0, 25.0, 30.0)):
        e2e.append({"target": target, "label": label, "batch_size": 32, "workers": 2,
                    "tiles_per_s": _fig(value, value), "runtime_bottleneck": "inference" if target == 0 else "decode",
                    "verdict": stage_verdict(decode, infer, value)})
    return {"targets": targets, "inference": inference, "end_to_end": e2e, "decode": [],
            "naive": {"status": "ok", "description": "torch", "tiles_per_s": _fig(2.0, 2.0)}}


def test_overall_verdict_picks_fastest_and_compares_like_monai():
    result = _handmade_result()
    v = overall_verdict(result)
    assert v["best_end_to_end"] == {"label": "ort cpu int8", "batch_size": 32, "workers": 2, "tiles_per_s": 20.0}
    assert v["bound_by"] == "decode" and v["efficiency"] == pytest.approx(0.8)
    assert v["speedup_over_naive"] == pytest.approx(10.0)
    (cmp,) = v["comparisons"]
    assert cmp["model_speedup"] == pytest.approx(2.5)  # 30 / best fp32 (median 12.0 at batch 32)
    assert cmp["end_to_end_speedup"] == pytest.approx(20.0 / 11.5, abs=1e-3)
    text = "\n".join(v["lines"])
    assert "Decode-bound" in text and "10.00x" in text and "model 2.50x, end to end 1.74x" in text
    assert "Noisy" not in text


def test_overall_verdict_flags_noise_and_skipped_naive():
    result = _handmade_result()
    result["inference"][0]["tiles_per_s"] = _fig(5.0, 10.0, 11.0)
    result["naive"] = {"status": "skipped", "reason": "torch is not installed"}
    v = overall_verdict(result)
    text = "\n".join(v["lines"])
    assert "Noisy" in text and "inference ort cpu fp32 batch 8" in text
    assert "Naive baseline skipped: torch is not installed" in text and "speedup_over_naive" not in v


def test_summarise_median_and_spread():
    fig = summarise([10.0, 12.0, 11.0])
    assert fig["median"] == 11.0 and fig["min"] == 10.0 and fig["max"] == 12.0 and fig["n"] == 3
    assert fig["spread"] == pytest.approx(2 / 11, abs=1e-4)
    assert summarise([7.0])["spread"] == 0.0 and not is_noisy(summarise([7.0]))
    assert is_noisy(summarise([10.0, 13.0])) and not is_noisy(summarise([10.0, 11.0]))
    with pytest.raises(ValueError):
        summarise([float("nan")])


def test_machine_parsing():
    smi = "NVIDIA H100 80GB HBM3, 81559 MiB, 580.65.06, 9.0\nNVIDIA A100, 40960 MiB, 535.1, [N/A]\n"
    gpus = parse_nvidia_smi(smi)
    assert gpus[0] == {"name": "NVIDIA H100 80GB HBM3", "memory": "81559 MiB", "driver": "580.65.06",
                       "compute_capability": "9.0"}
    assert "compute_capability" not in gpus[1] and parse_nvidia_smi("") == []
    info = "processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
    assert cpu_model(info) == "AMD EPYC 9654 96-Core Processor"
    assert cpu_flags(info) == ["avx2", "avx512f", "avx512_vnni"]


def test_results_stem_names_the_card_or_the_cpu():
    gpu = {"machine": {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}], "cpu": "x", "physical_cores": 16},
           "slide": {"tile_size": 256}}
    assert results_stem(gpu) == "gpu-nvidia-h100-80gb-hbm3-256px"
    cpu = {"machine": {"gpus": [], "cpu": "AMD EPYC 9654 96-Core Processor", "physical_cores": 2},
           "slide": {"tile_size": 64}}
    assert results_stem(cpu) == "cpu-amd-epyc-9654-96-core-processor-2c-64px"


# -- stages ---------------------------------------------------------------------------------------
class CountingBackend(Backend):
    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.config, inner.metadata, inner.precision)
        self.inner, self.calls = inner, []

    def infer(self, tiles):
        self.calls.append(len(tiles))
        return self.inner.infer(tiles)


def test_inference_sample_excludes_warmup(standin_model):
    with open_backend(standin_model, threads=1) as inner:
        backend = CountingBackend(inner)
        tiles = np.full((3, 64, 64, 3), 128, np.uint8)  # fewer than a batch: repeated to fill one
        sample = inference_sample(backend, tiles, batch_size=4, seconds=0.02, warmup=2)
    assert set(backend.calls) == {4}
    assert sample.tiles == 4 * (len(backend.calls) - 2) and sample.tiles >= 4 and sample.seconds > 0


def test_host_preprocess_matches_the_model_normalisation():
    config = FWRDConfig(tile_size=32)
    tile = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = host_preprocess(tile, config)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = (tile[5, 7, 1] / 255.0 - config.mean[1]) / config.std[1]
    assert x[0, 1, 5, 7] == pytest.approx(expected, abs=1e-5)


# -- smoke runs -----------------------------------------------------------------------------------
def test_cli_smoke_run(standin_model, synthetic_tif, tmp_path):
    out_json, saved = tmp_path / "res" / "cpu.json", tmp_path / "saved"
    done = CliRunner().invoke(command, [
        "--model", str(standin_model), "--slide", str(synthetic_tif.path), "--batch-sizes", "4,8",
        "--workers", "1,2", "--repeats", "2", "--json", str(out_json), "--save", str(saved), *FAST])
    assert done.exit_code == 0, done.output
    (out_md,) = saved.glob("*.md")  # --json wins over --save for the JSON; the markdown goes to --save
    assert out_md.name.startswith("cpu-") and out_md.name.endswith("-64px.md") and not list(saved.glob("*.json"))
    assert "Verdict" in done.output and "End to end" in done.output
    result = json.loads(out_json.read_text())
    assert result["schema"] == "fwrd-bench-v1" and result["slide"]["synthetic"] is False
    assert {"cpu", "physical_cores", "gpus", "versions"} <= set(result["machine"])
    assert [r["workers"] for r in result["decode"]] == [1, 2]
    assert sorted(r["batch_size"] for r in result["inference"]) == [4, 8]
    assert sorted((r["batch_size"], r["workers"]) for r in result["end_to_end"]) == [(4, 1), (4, 2), (8, 1), (8, 2)]
    for row in [*result["decode"], *result["inference"], *result["end_to_end"]]:
        fig = row["tiles_per_s"]
        assert fig["n"] == 2 and fig["min"] <= fig["median"] <= fig["max"]
    decode = {r["workers"]: r["tiles_per_s"]["median"] for r in result["decode"]}
    infer = {r["batch_size"]: r["tiles_per_s"]["median"] for r in result["inference"]}
    for row in result["end_to_end"]:
        bound = min(decode[row["workers"]], infer[row["batch_size"]])
        assert row["tiles"] == result["slide"]["tiles"]
        assert row["verdict"]["bound_tiles_per_s"] == bound
        assert row["verdict"]["efficiency"] == pytest.approx(row["tiles_per_s"]["median"] / bound, abs=1e-3)
    assert result["naive"]["status"] == "skipped" and "--checkpoint" in result["naive"]["reason"]
    assert result["verdict"]["best_end_to_end"]["tiles_per_s"] == max(
        r["tiles_per_s"]["median"] for r in result["end_to_end"])
    markdown = out_md.read_text()
    assert markdown.startswith("# fwrd-bench") and "## Verdict" in markdown and "| workers |" in markdown
    assert not list(out_json.parent.glob(".*tmp"))  # atomic writes leave no temp files


def test_compares_backends_in_one_run(standin_model, tmp_path, monkeypatch):
    """An ONNX model and a TensorRT plan (fake TensorRT) side by side; what cannot run is skipped."""
    from fakes.tiny_model import tiny_verification

    from fwrd.export.tensorrt_build import build_engine

    install(monkeypatch, "11.4.0")
    plan = tmp_path / "rd.plan"
    build_engine(standin_model, plan, verification=tiny_verification(standin_model, tile_size=64), min_batch=1,
                 opt_batch=8, max_batch=8, precision="fp32", log=lambda _: None)
    settings = BenchSettings(models=(standin_model, plan), size=512, batch_sizes=(8, 16), workers=(2,),
                             backends=("auto", "tensorrt", "ort-cuda"), stages=("inference", "end-to-end"),
                             seconds=0.03, repeats=1, threads=1)
    result = run_benchmark(settings)
    assert [t["backend"] for t in result["targets"]] == ["onnxruntime", "tensorrt"]
    skipped = {s["what"]: s["reason"] for s in result["skipped"]}
    assert "tensorrt runs plans" in skipped["standin.onnx on tensorrt"]
    assert "CUDAExecutionProvider" in skipped["standin.onnx on ort-cuda"]
    assert "ort-cuda runs ONNX models" in skipped["rd.plan on ort-cuda"]
    assert "not 16" in skipped["rd.plan on tensorrt, batch 16"]  # outside the plan's profile
    assert {(r["target"], r["batch_size"]) for r in result["inference"]} == {(0, 8), (0, 16), (1, 8)}
    (cmp,) = result["verdict"]["comparisons"]
    assert cmp["label"].startswith("tensorrt") and cmp["model_speedup"] > 0 and cmp["end_to_end_speedup"] > 0
    assert result["decode"] == [] and result["naive"] is None
    assert all(r["verdict"]["bound_by"] == "inference" for r in result["end_to_end"])  # decode not measured
    assert "Skipped" in render_text(result) and "## Skipped" in render_markdown(result)


def _standin_from(path, checkpoint_sha: str, precision: str):
    """A stand-in graph whose metadata says which checkpoint it was exported from."""
    from onnx_standin import build_standin

    from fwrd.config import FORMAT_TAG, META_CHECKPOINT_SHA256, META_CONFIG, META_FORMAT, META_PRECISION

    config = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35)
    metadata = {META_FORMAT: FORMAT_TAG, META_CONFIG: config.to_json(), META_PRECISION: precision}
    if checkpoint_sha:
        metadata[META_CHECKPOINT_SHA256] = checkpoint_sha
    return build_standin(path, config, metadata=metadata)


def test_warns_when_the_graphs_come_from_different_checkpoints(tmp_path, monkeypatch):
    fp32 = _standin_from(tmp_path / "rd.onnx", "a" * 64, "fp32")
    int8_same = _standin_from(tmp_path / "rd_int8.onnx", "a" * 64, "int8")
    int8_other = _standin_from(tmp_path / "other_int8.onnx", "b" * 64, "int8")
    unrecorded = _standin_from(tmp_path / "old.onnx", "", "fp32")
    quick = dict(size=512, batch_sizes=(4,), workers=(1,), stages=("inference",), seconds=0.02, repeats=1, threads=1)

    same = run_benchmark(BenchSettings(models=(fp32, int8_same), **quick))
    assert same["warnings"] == [] and "WARNING" not in render_text(same)
    assert [t["checkpoint_sha256"] for t in same["targets"]] == ["a" * 64, "a" * 64]

    lines = []
    mixed = run_benchmark(BenchSettings(models=(fp32, int8_other), **quick), log=lines.append)
    (warning,) = mixed["warnings"]
    assert "2 different checkpoints" in warning and "not like for like" in warning and "bbbbbbbbbbbb" in warning
    assert f"warning: {warning}" in lines
    assert f"WARNING: {warning}" in render_text(mixed) and f"WARNING: {warning}" in render_markdown(mixed)

    partial = run_benchmark(BenchSettings(models=(fp32, unrecorded), **quick))
    assert "old.onnx record(s) no source checkpoint" in partial["warnings"][0]

    # the naive loop's checkpoint is not the one the graphs were exported from
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"another model")
    monkeypatch.setattr("fwrd.benchmark.harness.naive_unavailable", lambda path: None)
    monkeypatch.setattr("fwrd.benchmark.harness.load_torch_scorer",
                        lambda path, threads, device: _numpy_scorer(FWRDConfig(tile_size=64, mpp=0.243)))
    naive = run_benchmark(BenchSettings(models=(fp32,), checkpoint=checkpoint, **{
        **quick, "stages": ("inference", "naive")}))
    (warning,) = naive["warnings"]
    assert "the naive loop runs model.pt" in warning and "different models" in warning


def test_dense_compares_the_two_modes_on_the_same_slide(standin_dense, standin_model, synthetic_tif, tmp_path):
    """fwrd-bench --dense: both modes end to end on one slide, their ratio and agreement; a model that cannot
    score regions keeps its per-tile rows and says why it has no dense one."""
    done = CliRunner().invoke(command, [
        "--model", str(standin_dense), "--model", str(standin_model), "--slide", str(synthetic_tif.path),
        "--stride", "16", "--dense", "--region", "512", "--batch-sizes", "8", "--workers", "1,2",
        "--stages", "end-to-end", "--repeats", "2", "--json", str(tmp_path / "r.json"), *FAST])
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "r.json").read_text())
    rows = result["dense"]
    assert [(r["target"], r["workers"]) for r in rows] == [(0, 1), (0, 2)]
    for row in rows:
        per_tile = [r for r in result["end_to_end"] if r["target"] == 0 and r["workers"] == row["workers"]]
        assert row["per_tile_tiles_per_s"] == per_tile[0]["tiles_per_s"]["median"]
        assert row["speedup"] == pytest.approx(row["tiles_per_s"]["median"] / row["per_tile_tiles_per_s"], abs=1e-3)
        assert row["tiles"] == result["slide"]["tiles"] and row["region_side"] == 512 and row["tiles_per_s"]["n"] == 2
        # the pooling stand-in gives dense scores equal to per-tile ones on a 16 px grid
        assert row["agreement"]["spearman"] > 0.9999 and row["agreement"]["max_abs_diff"] < 1e-5
    skipped = {s["what"]: s["reason"] for s in result["skipped"]}
    assert "cannot score regions" in skipped["standin.onnx on onnxruntime, dense"]
    assert "Dense scoring vs per tile" in done.output and "Dense vs per tile" in done.output


def _numpy_scorer(config: FWRDConfig) -> TileScorer:
    return TileScorer(config, lambda x: float(x.mean()), "numpy stand-in")


def test_naive_baseline_wiring(standin_model, tmp_path, monkeypatch):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"stand-in")
    config = FWRDConfig(tile_size=64, mpp=0.243)
    monkeypatch.setattr("fwrd.benchmark.harness.naive_unavailable", lambda path: None)
    monkeypatch.setattr("fwrd.benchmark.harness.load_torch_scorer", lambda path, threads, device: _numpy_scorer(config))
    settings = BenchSettings(models=(standin_model,), size=512, batch_sizes=(4,), workers=(1,),
                             stages=("inference", "naive"), seconds=0.03, repeats=2, threads=1, checkpoint=checkpoint)
    result = run_benchmark(settings)
    naive = result["naive"]
    assert naive["status"] == "ok" and naive["tiles_per_s"]["n"] == 2 and min(naive["tiles"]) >= 1
    assert result["verdict"]["inference_speedup_over_naive"] == pytest.approx(
        result["inference"][0]["tiles_per_s"]["median"] / naive["tiles_per_s"]["median"], abs=1e-2)

    wrong = _numpy_scorer(FWRDConfig(tile_size=256))
    monkeypatch.setattr("fwrd.benchmark.harness.load_torch_scorer", lambda path, threads, device: wrong)
    with pytest.raises(FwrdError, match="256 px tiles"):
        run_benchmark(settings)


def test_naive_sample_reads_each_tile(synthetic_tif):
    seen = []
    config = FWRDConfig(tile_size=64)
    scorer = TileScorer(config, lambda x: seen.append(x.shape) or 0.0, "counting")
    points = np.array([[0, 0], [64, 0], [128, 64]])
    sample = naive_sample(synthetic_tif.path, points, 0, scorer, seconds=0.01, warmup=2)
    assert len(seen) == sample.tiles + 2 and set(seen) == {(1, 3, 64, 64)}


def test_naive_unavailable_reasons(tmp_path, monkeypatch):
    assert "--checkpoint" in naive_module.naive_unavailable(None)
    monkeypatch.setattr(naive_module.importlib.util, "find_spec", lambda name: None)
    assert "torch is not installed" in naive_module.naive_unavailable(tmp_path / "model.pt")


@pytest.mark.slow
def test_naive_baseline_with_a_trained_checkpoint(trained, synthetic_tif):
    """The real PyTorch loop on the session's trained checkpoint (shared with the export tests)."""
    scorer = naive_module.load_torch_scorer(trained[0], threads=1)
    assert "eager fp32" in scorer.description and scorer.config.tile_size == 64
    sample = naive_sample(synthetic_tif.path, np.array([[0, 0], [128, 128]]), 0, scorer, seconds=0.01)
    assert sample.tiles >= 1


def test_memory_stage(standin_model):
    settings = BenchSettings(models=(standin_model,), size=256, batch_sizes=(4,), workers=(1,), stages=("memory",),
                             repeats=1, threads=1)
    result = run_benchmark(settings)
    memory = result["memory"]
    assert [m["dimensions"] for m in memory["slides"]] == [[256, 256], [512, 512]]
    assert all(m["peak_rss_mb"] > 10 for m in memory["slides"]) and memory["ratio_4x_area"] > 0
    assert result["end_to_end"] == [] and any("on 4x its area" in line for line in result["verdict"]["lines"])


# -- bad input ------------------------------------------------------------------------------------
def _fails(args):
    done = CliRunner().invoke(command, args)
    assert done.exit_code != 0
    return done.output


def test_bad_input_is_one_line(standin_model, tmp_path):
    from onnx_standin import build_standin

    assert "at least one --model" in _fails([])
    assert "no such file" in _fails(["--model", str(tmp_path / "missing.onnx")])
    assert "numbers >= 1" in _fails(["--model", str(standin_model), "--batch-sizes", "0"])
    assert "unknown backend 'cuda'" in _fails(["--model", str(standin_model), "--backends", "cuda"])
    assert "unknown stage" in _fails(["--model", str(standin_model), "--stages", "decode,speed"])
    assert "takes a TensorRT plan" in _fails(["--engine", str(standin_model)])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert "junk.onnx" in _fails(["--model", str(junk), *FAST])
    big = build_standin(tmp_path / "t128.onnx", FWRDConfig(tile_size=128, mpp=0.243))
    output = _fails(["--model", str(standin_model), "--model", str(big), *FAST])
    assert "separate runs" in output and "Traceback" not in output
    output = _fails(["--model", str(standin_model), "--precisions", "int8", *FAST])
    assert "fp32, not in --precisions" in output


def test_bench_never_imports_torch_without_the_naive_loop(standin_model, tmp_path):
    """With torch unimportable the harness runs and states why the naive baseline is skipped."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"x")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        import importlib, pkgutil, fwrd.benchmark
        for info in pkgutil.walk_packages(fwrd.benchmark.__path__, "fwrd.benchmark."):
            importlib.import_module(info.name)
        from fwrd.cli.bench import main
        try:
            main(["--model", {str(standin_model)!r}, "--size", "256", "--stages", "inference,naive",
                  "--checkpoint", {str(checkpoint)!r}, "--repeats", "1", "--seconds", "0.02", "--quiet"])
        except SystemExit as exit:
            assert not exit.code, exit.code
        assert sys.modules.get("torch") is None
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Naive baseline skipped: torch" in done.stdout
