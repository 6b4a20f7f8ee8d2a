"""The self-test at load (issue 21.7): where the export's verification tiles lie beside a model, the backend
scores them first and refuses to run unless they pass the export gate of its precision. Metadata that lies,
another graph carrying this model's metadata and broken numerics were all accepted before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from fwrd.config import FORMAT_TAG, META_CONFIG, META_FORMAT, META_PRECISION, FWRDConfig
from fwrd.digest import file_sha256
from fwrd.errors import ModelError
from fwrd.evaluation.gate import VerificationSet, verification_path
from fwrd.runtime.backends import open_backend
from onnx_standin import build_standin

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35)


def tiles(n: int = 24, side: int = 64) -> np.ndarray:
    """Flat grey tiles of distinct darkness (half of them dark: 'tumor'), plus a little noise."""
    rng = np.random.default_rng(0)
    grey = np.linspace(40, 230, n)[:, None, None, None]
    return np.clip(grey + rng.integers(-20, 20, (n, side, side, 3)), 0, 255).astype(np.uint8)


def exported(folder: Path, dense: bool = True, config: FWRDConfig = CONFIG) -> Path:
    """A stand-in graph with its verification set beside it, as fwrd-export leaves them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = build_standin(folder / "rd.onnx", config, dense=dense)
    sample = tiles()
    reference = own_scores(path, sample)  # what PyTorch fp32 is to a real export
    VerificationSet(sample, reference, reference[:12] > np.median(reference), file_sha256(path)).save(
        verification_path(path))
    return path


def own_scores(path: Path, sample: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["score"], {"tiles": sample})[0].astype(np.float64)


def reseal(path: Path) -> None:
    """Make the verification set name the graph now at `path` (as one who rewrote both would)."""
    checks = VerificationSet.load(verification_path(path))
    checks.onnx_sha256 = file_sha256(path)
    checks.save(verification_path(path))


@pytest.mark.parametrize("dense", [False, True])
def test_a_model_that_passes_opens_without_a_note(tmp_path, dense):
    path = exported(tmp_path / "m", dense=dense)
    with open_backend(path, dense=dense) as backend:  # dense: one-tile regions by the window rule
        assert not any("verification" in note for note in backend.notes)


def test_a_missing_verification_file_is_a_note_not_silence(tmp_path, synthetic_cohort):
    from fwrd.cli.run import command

    path = exported(tmp_path / "m")
    verification_path(path).unlink()
    with open_backend(path) as backend:
        assert any("no verification tiles beside rd.onnx" in note for note in backend.notes)
    result = CliRunner().invoke(command, [str(synthetic_cohort.slides[2].path), "--model", str(path), "--out",
                                          str(tmp_path / "out"), "--quiet", "--threads", "1"])
    assert result.exit_code == 0 and "note: no verification tiles beside rd.onnx" in result.output


def test_metadata_that_lies_about_the_tile_size_is_refused(tmp_path):
    path = exported(tmp_path / "m")
    lying = json.loads(CONFIG.to_json())
    lying["tile_size"] = 128  # the dynamic-shape graph would run at 128 px without a word
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == META_CONFIG:
            prop.value = json.dumps(lying)
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="was made for another graph"):
        open_backend(path)
    reseal(path)  # even with a set rewritten to name the lying graph
    with pytest.raises(ModelError, match="says it takes 128 px tiles, but it was verified on 64 px tiles"):
        open_backend(path)


def test_another_graph_carrying_this_models_metadata_is_refused(tmp_path):
    path = exported(tmp_path / "m", dense=False)
    impostor = onnx.load(str(path))  # the same metadata, other numbers: 1/128 instead of 1/255
    for init in impostor.graph.initializer:
        if init.name == "inv255":
            init.CopyFrom(numpy_helper.from_array(np.array(1 / 128, np.float32), "inv255"))
    onnx.save(impostor, str(path))
    with pytest.raises(ModelError, match="was made for another graph"):
        open_backend(path)
    reseal(path)
    with pytest.raises(ModelError, match=r"failed its self-test at load on onnxruntime .*fp32 export gate"):
        open_backend(path)


def test_numerics_beyond_the_gate_of_the_precision_are_refused(tmp_path):
    path = exported(tmp_path / "m", dense=False)
    checks = VerificationSet.load(verification_path(path))
    checks.reference = checks.reference * (1 + 5e-4)  # what a device 5e-4 off would score: fp32 allows 1e-4
    checks.save(verification_path(path))
    with pytest.raises(ModelError, match="exceeds the bound"):
        open_backend(path)
    fp16 = tmp_path / "h"  # the same drift is within the fp16 gate (0.5 % relative, 0.01 absolute)
    shutil.copytree(tmp_path / "m", fp16)
    model = onnx.load(str(fp16 / "rd.onnx"))
    for prop in model.metadata_props:
        if prop.key == META_PRECISION:
            prop.value = "fp16"
    onnx.save(model, str(fp16 / "rd.onnx"))
    reseal(fp16 / "rd.onnx")
    with open_backend(fp16 / "rd.onnx") as backend:
        assert backend.precision == "fp16"


def test_a_model_without_fwrd_metadata_still_gets_its_usual_line(tmp_path):
    path = build_standin(tmp_path / "plain.onnx", CONFIG, metadata={META_FORMAT: FORMAT_TAG + "-other"})
    with pytest.raises(ModelError, match="not an fwrd model"):
        open_backend(path)


def test_an_engine_is_tested_on_the_set_of_the_graph_it_was_built_from(standin_model, tmp_path, monkeypatch):
    """A plan (the fake TensorRT of tests/fakes) scores the set beside the graph its manifest names; a set
    that its scores disagree with (as broken GPU numerics would) refuses it."""
    from fakes import install
    from fakes.tiny_model import tiny_verification

    from fwrd.export.tensorrt_build import build_engine

    install(monkeypatch, "11.4.0")
    graph = tmp_path / "rd.onnx"
    shutil.copy(standin_model, graph)
    checks = tiny_verification(graph, tile_size=64)
    plan = tmp_path / "rd.plan"
    build_engine(graph, plan, verification=checks, min_batch=1, opt_batch=8, max_batch=8, precision="fp32",
                 log=lambda _: None)
    with open_backend(plan, batch_size=8) as engine:
        assert any("no verification tiles beside rd.plan (rd.onnx.verify.npz)" in n for n in engine.notes)
    checks.save(verification_path(graph))
    with open_backend(plan, batch_size=8) as engine:
        assert not any("verification" in n for n in engine.notes)
    checks.reference = checks.reference + 0.01
    checks.save(verification_path(graph))
    with pytest.raises(ModelError, match="rd.plan failed its self-test at load on tensorrt"):
        open_backend(plan, batch_size=8)
