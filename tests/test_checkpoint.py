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
    source = load_teacher_weights(teacher, str(path))
    assert source.label == path.name and source.file is None  # not torchvision's file: travels inside
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


# -- the ImageNet teacher is named, not stored -------------------------------------------------------
@pytest.fixture
def published(tmp_path, monkeypatch):
    """A stand-in for torchvision's weights file: named `<stem>-<first 8 hex of its sha256>.pth` as
    torch.hub names it, with the hub cache moved under tmp_path. Returns (file, its state dict)."""
    from fwrd.model import weights
    from fwrd.model.teacher import WideResNetTeacher
    from fwrd.digest import file_sha256

    torch.manual_seed(5)
    state = WideResNetTeacher().state_dict()
    state["fc.weight"] = torch.zeros(10, 2048)
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    name = f"wide_resnet50_2-{file_sha256(raw)[:8]}.pth"
    monkeypatch.setattr(weights, "IMAGENET_FILE", name)
    monkeypatch.setattr(weights, "IMAGENET_URL", f"https://example.invalid/{name}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache = weights.hub_cache()
    cache.parent.mkdir(parents=True)
    raw.rename(cache)

    def download(url, **kwargs):  # torch.hub's download, the file already cached
        assert url == weights.IMAGENET_URL and kwargs["file_name"] == name
        return torch.load(cache, weights_only=True)

    monkeypatch.setattr(weights.torch.hub, "load_state_dict_from_url", download)
    return cache, state


def _model_with(source: str) -> ReverseDistillation:
    from fwrd.model.weights import load_teacher_weights

    torch.manual_seed(6)
    model = ReverseDistillation("fwrd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_teacher_weights(model.teacher, source)
    return model


def test_imagenet_teacher_is_named_not_stored_and_reloads_from_the_cache(published, tmp_path):
    cache, state = published
    model = _model_with("imagenet")
    config = FWRDConfig(tile_size=64, teacher_weights="imagenet")
    named = save_checkpoint(tmp_path / "named.pt", model, config, epoch=1)
    data = torch.load(named, weights_only=True)
    assert "teacher" not in data and data["teacher_file"]["name"] == cache.name
    assert len(data["teacher_file"]["sha256"]) == 64 and data["teacher_file"]["url"].endswith(cache.name)
    stored = sum(v.numel() * v.element_size() for part in (model.bottleneck, model.student)
                 for v in part.state_dict().values())
    assert named.stat().st_size < stored + 2_000_000  # the teacher's 100 MB are not in it

    loaded, _ = load_checkpoint(named)
    assert torch.equal(loaded.teacher.conv1.weight, state["conv1.weight"])
    for part in ("bottleneck", "student"):
        ours, theirs = getattr(model, part).state_dict(), getattr(loaded, part).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    named.unlink()  # a checkpoint is ~500 MB: one at a time keeps the suite's temporary disk small
    # saved again (as --resume does), the reloaded model still names its teacher
    again = torch.load(save_checkpoint(tmp_path / "again.pt", loaded, config), weights_only=True)
    assert "teacher" not in again and again["teacher_file"] == data["teacher_file"]


def test_the_torchvision_file_given_by_path_is_named_too(published, tmp_path):
    cache, state = published
    offline = tmp_path / "elsewhere" / cache.name
    offline.parent.mkdir()
    cache.rename(offline)  # the user passed --teacher-weights /some/where/<file>, nothing in the cache
    model = _model_with(str(offline))
    path = save_checkpoint(tmp_path / "m.pt", model, FWRDConfig(tile_size=64), epoch=1)
    data = torch.load(path, weights_only=True)
    assert "teacher" not in data and data["teacher_file"]["seen_at"] == str(offline.resolve())
    loaded, _ = load_checkpoint(path)  # found where training saw it
    assert torch.equal(loaded.teacher.conv1.weight, state["conv1.weight"])


def test_a_missing_or_different_teacher_file_is_one_clear_line(published, tmp_path):
    from fwrd.errors import DependencyMissing

    cache, _ = published
    path = save_checkpoint(tmp_path / "m.pt", _model_with("imagenet"), FWRDConfig(tile_size=64), epoch=1)
    cache.rename(tmp_path / "moved.pth")
    with pytest.raises(DependencyMissing) as missing:
        load_checkpoint(path)
    message = str(missing.value)
    assert "\n" not in message and cache.name in message and str(cache) in message and "https://" in message
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, cache)  # another file under the same name
    with pytest.raises(CheckpointError, match="not the teacher this model was trained with"):
        load_checkpoint(path)


def test_old_checkpoints_that_carry_the_imagenet_teacher_still_load(published, tmp_path):
    cache, state = published
    model = _model_with("imagenet")
    path = tmp_path / "old.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "fwrd_version": "0.1.0", "config": FWRDConfig(tile_size=64).to_dict(),
                "teacher": model.teacher.state_dict(), "bottleneck": model.bottleneck.state_dict(),
                "student": model.student.state_dict()}, path)
    cache.unlink()  # and they need no file
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.teacher.conv1.weight, state["conv1.weight"])
