"""fwrd-train: bad input is one clear line and a non-zero exit; --resume continues where it stopped."""

import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fwrd.cli.train import command as train_cmd
from fwrd.training.dataset import load_patch_set, stratified_split


def write_patches(root, n_normal, n_tumor, size=64):
    rng = np.random.default_rng(0)
    for folder, n in (("normal", n_normal), ("tumor", n_tumor)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


def run(args):
    result = CliRunner().invoke(train_cmd, [str(a) for a in args])
    return result.exit_code, result.output


def test_missing_folder(tmp_path):
    code, out = run([tmp_path / "nope", "--out", tmp_path / "m.pt"])
    assert code != 0 and "patch folder not found" in out and "Traceback" not in out


def test_empty_patch_folder(tmp_path):
    (tmp_path / "p" / "normal").mkdir(parents=True)
    code, out = run([tmp_path / "p", "--out", tmp_path / "m.pt"])
    assert code != 0 and "'normal/' holds no images" in out
    assert not (tmp_path / "m.pt").exists()


def test_tile_not_multiple_of_32(tmp_path):
    write_patches(tmp_path / "p", 4, 1, size=48)
    code, out = run([tmp_path / "p", "--out", tmp_path / "m.pt"])
    assert code != 0 and "multiple of 32" in out


def test_resume_without_last_checkpoint(tmp_path):
    write_patches(tmp_path / "p", 4, 1)
    code, out = run([tmp_path / "p", "--out", tmp_path / "m.pt", "--resume", "--teacher-weights", "random"])
    assert code != 0 and "no " in out and "last.pt" in out


def test_labels_are_explicit_and_split_is_stratified(tmp_path):
    write_patches(tmp_path / "p", 20, 5)
    patches = load_patch_set(tmp_path / "p")
    assert patches.n_normal == 20 and patches.n_tumor == 5
    assert all((f.parent.name == "normal") == (label == 1) for f, label in zip(patches.files, patches.labels))
    train, val = stratified_split(patches, 0.2, seed=0)
    assert (val.n_normal, val.n_tumor) == (4, 1) and (train.n_normal, train.n_tumor) == (16, 4)


@pytest.mark.slow
def test_resume_continues_to_more_epochs(tmp_path):
    write_patches(tmp_path / "p", 6, 2, size=32)
    out = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, text = run([tmp_path / "p", "--out", out, "--epochs", "1", "--teacher-weights", "random",
                          "--batch-size", "8", "--keep-last"])
        assert code == 0, text
        assert (tmp_path / "m.last.pt").is_file()  # --keep-last
        code, text = run([tmp_path / "p", "--out", out, "--epochs", "2", "--resume", "--batch-size", "8"])
    assert code == 0, text
    history = (tmp_path / "m.history.jsonl").read_text().splitlines()
    assert len(history) == 2 and '"epoch": 2' in history[1]
    assert sorted(p.name for p in tmp_path.glob("m.*")) == ["m.history.jsonl", "m.pt"]  # last.pt removed
    assert "kept as model.pt" in text or "stays epoch 1" in text  # the log says which epoch and why


class Killed(Exception):
    """Stands for a kill right after an epoch's checkpoints are written."""


def _train(settings, kill_after=None):
    from fwrd.training.trainer import train

    lines = []

    def log(line):
        lines.append(line)
        if kill_after is not None and line.startswith(f"epoch {kill_after}/"):
            raise Killed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            records = train(settings, log=log)
        except Killed:
            records = None
    return records, lines


@pytest.mark.slow
def test_killed_and_resumed_training_equals_an_uninterrupted_run(tmp_path):
    """The shuffle, BatchNorm re-estimation batches and every RNG continue where they stopped."""
    import json

    import torch

    from fwrd.model import load_checkpoint
    from fwrd.training.trainer import TrainSettings

    write_patches(tmp_path / "p", 10, 3, size=32)
    common = dict(train_dir=tmp_path / "p", epochs=2, batch_size=4, lr=1e-3, teacher_weights="random", seed=3,
                  progress=False)
    whole, whole_log = _train(TrainSettings(out=tmp_path / "a" / "m.pt", **common))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["m.history.jsonl", "m.pt"]  # one model file
    assert any("removed m.last.pt" in line for line in whole_log)
    assert all(set(r.phases) == {"train", "batchnorm", "validation", "saving"} for r in whole)
    epoch_lines = [line for line in whole_log if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all("batchnorm" in line and "saving" in line for line in epoch_lines)

    out = tmp_path / "b" / "m.pt"
    killed, _ = _train(TrainSettings(out=out, **common), kill_after=1)
    assert killed is None and (tmp_path / "b" / "m.last.pt").is_file()
    resumed, _ = _train(TrainSettings(out=out, resume=True, **common))
    assert [r.epoch for r in resumed] == [2]

    history = [json.loads(line) for line in (tmp_path / "b" / "m.history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    for ours, theirs in zip(history, whole):
        assert ours["loss"] == pytest.approx(theirs.loss, rel=1e-5, abs=1e-7)
        assert ours["val_accuracy"] == theirs.val_accuracy and ours["best"] == theirs.best
        assert ours["val_threshold"] == pytest.approx(theirs.val_threshold, rel=1e-4)
    a, _ = load_checkpoint(tmp_path / "a" / "m.pt")
    b, _ = load_checkpoint(out)
    for name, value in a.student.state_dict().items():
        torch.testing.assert_close(b.student.state_dict()[name], value, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_training_removes_the_temp_files_of_killed_saves(tmp_path):
    # issue 11.10: a kill while saving left `.model.last.pt.<random>.tmp` (1.7 GB at 64 px) for good
    write_patches(tmp_path / "p", 6, 2, size=32)
    stale = [tmp_path / ".m.pt.abcd1234.tmp", tmp_path / ".m.last.pt.k3j9x_2a.tmp"]
    other = tmp_path / ".rd.onnx.abcdefgh.tmp"  # another command's write, maybe in progress: not ours
    for path in stale + [other]:
        path.write_bytes(b"\0" * 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, text = run([tmp_path / "p", "--out", tmp_path / "m.pt", "--epochs", "1", "--teacher-weights", "random",
                          "--batch-size", "8"])
    assert code == 0, text
    assert not any(p.exists() for p in stale) and other.exists()
    assert not list(tmp_path.glob(".m.*.tmp"))


@pytest.mark.slow
def test_amp_trains_in_bf16_and_resumes_only_as_it_started(tmp_path):
    import json

    write_patches(tmp_path / "p", 6, 2, size=32)
    losses = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, extra in (("fp32", []), ("amp", ["--amp", "--keep-last"])):
            code, text = run([tmp_path / "p", "--out", tmp_path / f"{name}.pt", "--epochs", "1", "--teacher-weights",
                              "random", "--batch-size", "8", "--seed", "1", *extra])
            assert code == 0, text
            assert ("mixed precision: bf16 autocast" in text) == (name == "amp")
            losses[name] = json.loads((tmp_path / f"{name}.history.jsonl").read_text())["loss"]
        # the same run in bf16: a close loss, not the same one (autocast really applied)
        assert losses["amp"] != losses["fp32"] and losses["amp"] == pytest.approx(losses["fp32"], rel=0.05)
        code, text = run([tmp_path / "p", "--out", tmp_path / "amp.pt", "--epochs", "2", "--resume",
                          "--batch-size", "8", "--seed", "1"])
    assert code != 0 and "trained with --amp" in text and "Traceback" not in text
