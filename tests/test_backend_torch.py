"""`--backend torch`: the checkpoint scored in PyTorch through the same pipeline as the ONNX graph.

On this CPU-only CI the CUDA slot pipeline cannot run; benchmarks/gpu/ runs it on a real GPU. What runs
here: fp32 parity with the exported ONNX fp32 graph (1e-4 relative), fp16 within the fp16 export gate,
fwrd-run end to end with identical tiles, resume keys that tell precisions apart, and one-line errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from fwrd.cli.run import command as run_command
from fwrd.errors import DependencyMissing, ModelError
from fwrd.export.calibration import labelled_synthetic_tiles, noise_tiles
from fwrd.export.verify import GATES
from fwrd.runtime.backends import open_backend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiles(trained):
    from fwrd.model.checkpoint import read_checkpoint
    from fwrd.config import FWRDConfig

    config = FWRDConfig.from_dict(read_checkpoint(trained[0])["config"])
    tissue, _ = labelled_synthetic_tiles(config, per_class=8, seed=5)
    return np.concatenate([tissue, noise_tiles(config, 4, seed=5)])


@pytest.fixture(scope="module")
def torch_fp32(trained):
    backend = open_backend(trained[0], "torch", batch_size=8, device="cpu", precision="fp32")
    yield backend
    backend.close()


def test_fp32_matches_the_exported_onnx_graph(torch_fp32, exported_fp32, tiles):
    onnx = open_backend(exported_fp32[0].onnx, "onnxruntime", batch_size=8)
    want_score, want_amap = onnx.infer(tiles)
    score, amap = torch_fp32.infer(tiles)
    assert torch_fp32.name == "torch" and torch_fp32.precision == "fp32" and torch_fp32.device.startswith("cpu")
    assert score.dtype == np.float32 and score.shape == (len(tiles),)
    assert amap.shape == want_amap.shape
    np.testing.assert_allclose(score, want_score, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(amap, want_amap, rtol=1e-4, atol=1e-5)


def test_fp16_stays_within_the_fp16_gate(trained, torch_fp32, tiles):
    half = open_backend(trained[0], "torch", batch_size=8, device="cpu", precision="fp16")
    assert half.precision == "fp16"
    reference, _ = torch_fp32.infer(tiles)
    score, _ = half.infer(tiles)
    gate = GATES["fp16"]
    delta = np.abs(score.astype(np.float64) - reference)
    assert np.isfinite(score).all()
    assert delta.max() <= gate.max_abs_delta
    assert delta.max() > 0  # it really ran in half precision
    assert half.scores_identity() != torch_fp32.scores_identity()


def test_run_batches_keeps_order_and_tags(torch_fp32, tiles):
    batches = [(k, tiles[k * 5:(k + 1) * 5]) for k in range(3)]
    out = list(torch_fp32.run_batches(iter(batches)))
    assert [tag for tag, _, _ in out] == [0, 1, 2]
    whole, _ = torch_fp32.infer(tiles[:15])
    np.testing.assert_allclose(np.concatenate([s for _, s, _ in out]), whole, rtol=1e-5, atol=1e-6)


def test_fwrd_run_torch_equals_onnx_tile_for_tile(trained, exported_fp32, synthetic_tif, tmp_path):
    slide = synthetic_tif.path  # a tumour slide of ~150 tiles: each tile is compared, a 2048 px one took minutes
    runner = CliRunner()
    common = [str(slide), "--quiet", "--batch-size", "8", "--workers", "2"]
    done = runner.invoke(run_command, common + ["--model", str(trained[0]), "--backend", "torch",
                                                "--device", "cpu", "--out", str(tmp_path / "torch")])
    assert done.exit_code == 0, done.output
    done = runner.invoke(run_command, common + ["--model", str(exported_fp32[0].onnx), "--out", str(tmp_path / "onnx")])
    assert done.exit_code == 0, done.output
    a = np.loadtxt(tmp_path / "torch" / slide.stem / "tiles.csv", delimiter=",", skiprows=1, ndmin=2, usecols=(0, 1, 2))
    b = np.loadtxt(tmp_path / "onnx" / slide.stem / "tiles.csv", delimiter=",", skiprows=1, ndmin=2, usecols=(0, 1, 2))
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    np.testing.assert_allclose(a[:, 2], b[:, 2], rtol=1e-4, atol=1e-6)
    summary = json.loads((tmp_path / "torch" / slide.stem / "summary.json").read_text())
    assert summary["backend"] == "torch" and summary["precision"] == "fp32"


def test_cuda_without_a_gpu_is_one_line(trained):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DependencyMissing, match="sees no CUDA GPU"):
        open_backend(trained[0], "torch", device="cuda")


@pytest.mark.parametrize("args, message", [
    (["--backend", "torch"], "the torch backend runs a checkpoint"),
    (["--precision", "fp16"], "choose how --backend torch runs a checkpoint"),
])
def test_wrong_combinations_are_refused(exported_fp32, synthetic_cohort, tmp_path, args, message):
    slide = synthetic_cohort.slides[0].path
    done = CliRunner().invoke(run_command, [str(slide), "--model", str(exported_fp32[0].onnx),
                                            "--out", str(tmp_path), "--quiet", *args])
    assert done.exit_code != 0
    assert message in done.output and "Traceback" not in done.output


def test_open_backend_refuses_a_plan_on_torch(tmp_path):
    plan = tmp_path / "rd.plan"
    plan.write_bytes(b"not really")
    with pytest.raises(ModelError, match="runs a checkpoint"):
        open_backend(plan, "torch")


def test_without_torch_the_backend_says_how_to_get_it(trained):
    code = textwrap.dedent(f"""
        import sys; sys.modules['torch'] = None
        from fwrd.errors import DependencyMissing
        from fwrd.runtime.backends import open_backend
        try:
            open_backend({str(trained[0])!r}, "torch")
        except DependencyMissing as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install fwrd[train]" in done.stdout
