"""A checkpoint's teacher reference is a file name, never a path (issue 26.6): a crafted checkpoint made
fwrd open, hash and echo `../../etc/shadow` with a download address taken from the file."""

from __future__ import annotations

import pytest

from fwrd.errors import CheckpointError, DependencyMissing
from fwrd.model import weights
from fwrd.model.weights import IMAGENET_FILE, IMAGENET_URL, TeacherFile, restore_teacher

SHA = "ab" * 32


@pytest.fixture
def hashed(monkeypatch, tmp_path):
    """Every path fwrd hashes while restoring a teacher (it must never be one the checkpoint chose)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    seen = []
    monkeypatch.setattr(weights, "file_sha256", lambda path: seen.append(str(path)) or "0" * 64)
    return seen


@pytest.mark.parametrize("name", ["../../etc/shadow", "/etc/shadow", "shadow", "..", f"sub/{IMAGENET_FILE}"])
def test_a_name_that_is_a_path_or_another_file_is_refused(name, hashed):
    with pytest.raises(CheckpointError, match=f"may only name torchvision's {IMAGENET_FILE}") as refused:
        TeacherFile.from_dict({"name": name, "url": "https://evil.invalid/x", "sha256": SHA}, "m.pt")
    assert "evil" not in str(refused.value) and "\n" not in str(refused.value)
    assert hashed == []


def test_the_address_is_ours_and_a_path_elsewhere_is_never_opened(hashed, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:x")
    ref = TeacherFile.from_dict({"name": IMAGENET_FILE, "url": "https://evil.invalid/x", "sha256": SHA,
                                 "seen_at": str(secret)}, "m.pt")
    assert ref.url == IMAGENET_URL and ref.seen_at == ""  # not the published file's name: dropped
    with pytest.raises(DependencyMissing) as missing:
        restore_teacher(object(), ref, "m.pt")
    assert "evil" not in str(missing.value) and IMAGENET_URL in str(missing.value)
    assert hashed == []  # /.../shadow was neither opened nor hashed
    for sneaky in (f"/data/../etc/{IMAGENET_FILE}", f"relative/{IMAGENET_FILE}"):
        assert TeacherFile.from_dict({"name": IMAGENET_FILE, "sha256": SHA, "seen_at": sneaky}).seen_at == ""
    kept = tmp_path / "weights" / IMAGENET_FILE  # where training found the published file: still tried
    assert TeacherFile.from_dict({"name": IMAGENET_FILE, "sha256": SHA, "seen_at": str(kept)}).seen_at == str(kept)


def test_a_sha256_that_is_not_one_is_refused():
    for bad in ("", "0" * 63, "Z" * 64, None):
        with pytest.raises(CheckpointError, match="no valid sha256"):
            TeacherFile.from_dict({"name": IMAGENET_FILE, "url": IMAGENET_URL, "sha256": bad})
