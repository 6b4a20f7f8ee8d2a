"""Checkpoints carry the whole network and its config; bad files give one clear error."""

import warnings

import pytest
import torch

from fwrd.config import FWRDConfig
from fwrd.errors import CheckpointError, InputNotFound
from fwrd.model import ReverseDistillation, import_reference, load_checkpoint, save_checkpoint
from fwrd.model.checkpoint import CHECKPOINT_FORMAT


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(1)
    model = ReverseDistillation("fwrd")
    config = FWRDConfig(tile_size=64, level=1, mpp=0.486, threshold=1.23, teacher_weights="random")
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, config, epoch=3)
    return path, model, config


def test_round_trip_restores_weights_and_config(saved):
    path, model, config = saved
    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config == config
    assert not loaded.training
    for part in ("teacher", "bottleneck", "student"):
        ours, theirs = getattr(model, part).state_dict(), getattr(loaded, part).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not list(path.parent.glob(".model.pt.*")), "no temporary file left behind"


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFound, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint(saved, tmp_path):
    path = tmp_path / "cut.pt"
    with open(saved[0], "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(1 << 20))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_foreign_dict(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not an fwrd checkpoint"):
        load_checkpoint(path)


def test_wrong_architecture(tmp_path):
    model = ReverseDistillation("rd4ad")
    path = tmp_path / "wrong.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "config": FWRDConfig(architecture="fwrd").to_dict(),
                "teacher": model.teacher.state_dict(), "bottleneck": model.bottleneck.state_dict(),
                "student": model.student.state_dict()}, path)
    with pytest.raises(CheckpointError, match="'bottleneck' weights do not match"):
        load_checkpoint(path)


def test_reference_checkpoint_imports_with_teacher_weights(tmp_path):
    """A reference RD4AD/FW-RD checkpoint: {'bn': ..., 'decoder': ...}, with the unused conv4/bn4."""
    torch.manual_seed(2)
    source = ReverseDistillation("rd4ad")
    bn = dict(source.bottleneck.state_dict())
    bn["conv4.weight"] = torch.zeros(2048, 4096, 1, 1)
    bn["bn4.weight"] = torch.ones(2048)
    path = tmp_path / "wres50_rd.pth"
    torch.save({"bn": bn, "decoder": source.student.state_dict()}, path)
    with pytest.raises(CheckpointError, match="fwrd import-reference"):
        load_checkpoint(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, config = import_reference(path, "random", FWRDConfig(tile_size=256, threshold=2.01))
    assert config.architecture == "rd4ad" and config.threshold == 2.01
    got = model.bottleneck.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in source.bottleneck.state_dict().items())


def test_teacher_weights_from_a_local_file(tmp_path):
    from fwrd.model.weights import load_teacher_weights
    from fwrd.model.teacher import WideResNetTeacher

    reference = WideResNetTeacher()
    state = reference.state_dict()
    state["fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "wide_resnet50_2-95faca4d.pth"
    torch.save(state, path)
    teacher = WideResNetTeacher()
    assert load_teacher_weights(teacher, str(path)) == path.name
    assert torch.equal(teacher.conv1.weight, reference.conv1.weight)
    with pytest.raises(InputNotFound):
        load_teacher_weights(teacher, str(tmp_path / "missing.pth"))


def test_imagenet_download_failure_is_one_clear_line(monkeypatch):
    from fwrd.errors import DependencyMissing
    from fwrd.model import weights
    from fwrd.model.teacher import WideResNetTeacher

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(weights.torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(DependencyMissing, match="--teacher-weights /path/to/wide_resnet50_2-95faca4d.pth"):
        weights.load_teacher_weights(WideResNetTeacher(), "imagenet")
