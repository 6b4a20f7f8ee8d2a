"""Training with context (`fwrd-patches --context`, fwrd/training/context.py): patches hold the tile at
their centre, the model learns tiles alone and inside their surroundings, validation's dense score is
the runtime's dense rule, and the dense threshold travels to `fwrd-run --dense`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fwrd.cli.patches import command as patches_cmd
from fwrd.cli.run import command as run_cmd
from fwrd.cli.train import command as train_cmd
from fwrd.config import FWRDConfig
from fwrd.errors import FwrdError
from fwrd.training.context import context_scores, lone_tiles, tile_cells
from fwrd.training.dataset import load_patch_set
from fwrd.training.patches import extract_patches


def _extract(cohort, out, context, n_normal=6, n_tumor=2):
    return extract_patches([cohort.slides_dir], out, annotations_dir=cohort.annotations_dir, n_normal=n_normal,
                           n_tumor=n_tumor, tile=64, seed=0, context=context, workers=1)


def test_patches_with_context_hold_the_tile_at_their_centre(synthetic_cohort, tmp_path):
    _extract(synthetic_cohort, tmp_path / "lone", 0)
    _extract(synthetic_cohort, tmp_path / "ctx", 32)
    lone, ctx = load_patch_set(tmp_path / "lone"), load_patch_set(tmp_path / "ctx")
    assert [f.name for f in lone.files] == [f.name for f in ctx.files]  # same sampling, same x, y
    assert (ctx.tile_size, ctx.context, ctx.side, lone.context, lone.side) == (64, 32, 128, 0, 64)
    assert json.loads((tmp_path / "ctx" / "patches.json").read_text())["context"] == 32
    surroundings_differ = 0
    for a, b in zip(lone.files, ctx.files):
        small, big = np.array(Image.open(a)), np.array(Image.open(b))
        assert big.shape == (128, 128, 3)
        np.testing.assert_array_equal(big[32:96, 32:96], small)
        surroundings_differ += int(big[:32].std() > 0)  # real tissue or glass, not padding
    assert surroundings_differ > 0


def test_context_must_be_a_multiple_of_32(synthetic_cohort, tmp_path):
    result = CliRunner().invoke(patches_cmd, [str(synthetic_cohort.slides_dir), "--out", str(tmp_path / "p"),
                                              "--normal", "2", "--tile", "64", "--context", "16"])
    assert result.exit_code != 0 and result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert "context must be 0 or a positive multiple of 32 pixels, got 16" in result.output
    assert not (tmp_path / "p").exists()
    with pytest.raises(FwrdError, match="multiple of 32"):
        FWRDConfig(tile_size=64, context=48)


def test_tile_cells_are_the_cells_under_the_tile():
    side, tile, context = 128, 64, 32
    feats = []
    for stride in (4, 8, 16):
        n = side // stride
        grid = torch.arange(n, dtype=torch.float32)
        feats.append((grid[:, None] * 1000 + grid[None, :]).expand(1, 2, n, n))  # value = row * 1000 + column
    for stride, cells in zip((4, 8, 16), tile_cells(tuple(feats), tile, context)):
        first, count = context // stride, tile // stride
        assert cells.shape[-2:] == (count, count)
        assert cells[0, 0, 0, 0] == first * 1000 + first and cells[0, 0, -1, -1] == (first + count - 1) * 1001
    tiles = torch.zeros(2, side, side, 3, dtype=torch.uint8)
    tiles[:, context:-context, context:-context] = 7
    assert bool((lone_tiles(tiles, context) == 7).all()) and lone_tiles(tiles, 0) is tiles


@pytest.mark.slow
def test_validation_dense_score_is_the_runtime_dense_rule(trained, synthetic_cohort):
    """The dense score validation picks a threshold with is what `fwrd-run --dense` computes."""
    from fwrd.model.checkpoint import model_from_checkpoint, read_checkpoint
    from fwrd.runtime.backends import open_backend
    from fwrd.runtime.window_scores import scores_at
    from fwrd.slide.reader import open_slide

    model, config = model_from_checkpoint(read_checkpoint(trained[0]), trained[0])
    model.eval()
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        patches = np.stack([slide.read_region((x, y), 0, (128, 128)) for x, y in ((608, 672), (1200, 1100))])
    per_tile, dense = context_scores(model, torch.from_numpy(patches), config.replace(context=32))
    with open_backend(trained[0], "torch", threads=1, dense=True) as backend:
        want_per_tile, _ = backend.infer(np.ascontiguousarray(patches[:, 32:96, 32:96]))
        want_dense = [scores_at(backend.infer_region(p), 64, np.array([[32, 32]]))[0] for p in patches]
    np.testing.assert_allclose(per_tile.numpy(), want_per_tile, rtol=1e-5)
    np.testing.assert_allclose(dense.numpy(), want_dense, rtol=1e-5)
    assert not np.allclose(dense.numpy(), per_tile.numpy(), rtol=1e-3)  # context changes the score


@pytest.mark.slow
def test_training_with_context_gives_a_dense_threshold(synthetic_cohort, tmp_path):
    _extract(synthetic_cohort, tmp_path / "p", 32, n_normal=10, n_tumor=4)
    out = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(train_cmd, [str(tmp_path / "p"), "--out", str(out), "--epochs", "1",
                                                "--teacher-weights", "random", "--batch-size", "8", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    assert "64 px with 32 px context (lone and in context)" in result.output and "(dense: val AUROC" in result.output
    from fwrd.model.checkpoint import read_checkpoint

    config = FWRDConfig.from_dict(read_checkpoint(out)["config"])
    record = json.loads(out.with_name("m.history.jsonl").read_text().splitlines()[0])
    assert config.context == 32 and config.dense_threshold == pytest.approx(record["val_threshold_dense"])
    assert config.threshold == pytest.approx(record["val_threshold"]) and record["val_auroc_dense"] is not None

    _extract(synthetic_cohort, tmp_path / "lone_val", 0)
    result = CliRunner().invoke(train_cmd, [str(tmp_path / "p"), "--out", str(tmp_path / "m2.pt"), "--val",
                                            str(tmp_path / "lone_val"), "--teacher-weights", "random"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "validation patches carry 0 px of context, training patches 32 px" in result.output


def test_dense_runs_use_the_models_dense_threshold(synthetic_cohort, tmp_path):
    from onnx_standin import STANDIN_RECORD, build_standin

    # the threshold of a model validated for dense scoring (fwrd-export --validate-dense sets both)
    config = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35, context=32, dense_threshold=0.3,
                        dense_validation={**STANDIN_RECORD, "threshold": 0.3})
    model = build_standin(tmp_path / "ctx.onnx", config, dense=True)
    slide = synthetic_cohort.slides[2].path
    dense = ["--dense", "--region", "320", "--margin", "32"]
    thresholds = {}
    for mode in ("tiles", "dense"):
        args = [str(slide), "--model", str(model), "--stride", "32", "--out", str(tmp_path / mode)]
        args += dense if mode == "dense" else []
        result = CliRunner().invoke(run_cmd, args)
        assert result.exit_code == 0, result.output
        thresholds[mode] = json.loads((tmp_path / mode / slide.stem / "summary.json").read_text())["threshold"]
        if mode == "dense":
            assert "threshold 0.3 (chosen on those dense scores)" in result.output
    assert thresholds == {"tiles": pytest.approx(0.35), "dense": pytest.approx(0.3)}


def test_patch_sidecars_that_disagree_with_the_images_are_refused(synthetic_cohort, tmp_path):
    """A context folder read as lone tiles would train a model on the wrong tile size, silently."""
    from fwrd.errors import DataError

    folder = tmp_path / "ctx"
    _extract(synthetic_cohort, folder, 32)
    meta = json.loads((folder / "patches.json").read_text())
    (folder / "patches.json").write_text(json.dumps({**meta, "context": 64}))
    with pytest.raises(DataError, match="patches are 128 px, but their sidecar records 64 px tiles with 64 px"):
        load_patch_set(folder)
    (folder / "patches.json").unlink()  # patches.csv alone records the tile: the context follows from it
    patches = load_patch_set(folder)
    assert (patches.tile_size, patches.context) == (64, 32)


@pytest.mark.parametrize("field", ["threshold", "dense_threshold"])
def test_a_non_finite_threshold_is_refused(field):
    with pytest.raises(FwrdError, match="not a finite number"):
        FWRDConfig(tile_size=64, **{field: float("nan")})
