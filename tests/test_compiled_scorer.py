"""The torch backend's compiled path (fwrd.model.compiled): the same scores as eager, and eager with one line
when compilation fails (forced here), whatever the failure.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fwrd.config import FWRDConfig
from fwrd.model.compiled import compile_scorer

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, teacher_weights="random")


class Tiny(nn.Module):
    """uint8 NHWC in, like the scorer: cast, conv, ReLU, a cosine-like reduction."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.conv(tiles.float().permute(0, 3, 1, 2) / 255.0))
        return x.sum(dim=(1, 2, 3)), x.mean(dim=1)


def _broken_backend(graph_module, example_inputs):
    raise RuntimeError("no C++ compiler\nsecond line")


def test_a_failed_compilation_runs_eager_and_says_so_in_one_line():
    module = Tiny().eval()
    example = torch.zeros((2, 8, 8, 3), dtype=torch.uint8)
    result = compile_scorer(module, example, backend=_broken_backend)
    assert result.module is module and not result.compiled and result.seconds >= 0
    assert result.note.startswith("torch.compile failed, running eager") and "\n" not in result.note
    assert "no C++ compiler second line" in result.note


@pytest.mark.slow  # the whole network, traced by dynamo before the forced failure: ~10 s of CPU
def test_the_runner_falls_back_to_eager_with_a_note(monkeypatch):
    """`fwrd-run --backend torch --compile` where torch.compile cannot work: eager scores and a note."""
    from fwrd.model.network import ReverseDistillation
    from fwrd.model.runner import TorchRunner

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, **{**kw, "backend": _broken_backend,
                                                                                     "options": None}))
    torch.manual_seed(0)
    model = ReverseDistillation(CONFIG.architecture).eval()
    common = dict(device=torch.device("cpu"), precision="fp32", batch_size=2, threads=2)
    runner = TorchRunner(model, CONFIG, compile=True, **common)
    assert len(runner.notes) == 1 and runner.notes[0].startswith("torch.compile failed, running eager")
    assert runner.describe()["compiled"] is False and runner.describe()["compile_seconds"] >= 0
    tiles = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():  # the runner scores with its eager scorer, at any batch size
        want = runner._scorer(torch.from_numpy(tiles))[0].numpy()
    np.testing.assert_array_equal(runner.infer(tiles)[0], want)


@pytest.mark.slow  # inductor compiles C++ here: ~30 s for this module on a loaded 2-core machine
def test_compiled_equals_eager_on_a_small_input():
    torch.manual_seed(1)
    module = Tiny().eval()
    example = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    result = compile_scorer(module, example)
    assert result.compiled, result.note  # this machine has a C++ compiler: inductor must work
    tiles = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    with torch.inference_mode():
        for got, want in zip(result.module(tiles), module(tiles)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_compile_belongs_to_the_torch_backend(standin_model, synthetic_tif, tmp_path):
    """`fwrd-run --compile` on an ONNX model: one line, no traceback, nothing written."""
    from click.testing import CliRunner

    from fwrd.cli.run import command

    out = tmp_path / "out"
    done = CliRunner().invoke(command, [str(synthetic_tif.path), "--model", str(standin_model), "--compile",
                                        "--out", str(out), "--quiet"])
    assert done.exit_code != 0 and "--compile" in done.output and "Traceback" not in done.output
    assert not out.exists() or not any(out.iterdir())
