"""No dependency floor admits a release with a known file-reading or code-execution hole (issue 26.5;
SECURITY.md ("Models") says which release and why). onnxruntime 1.19.0-1.23.2 read a crafted model's external
data from outside its folder (measured here with the model of test_onnx_external_data.py: 1.19.2, 1.20.1,
1.22.1 and 1.23.2 read it, 1.24.1 and 1.32.0 refuse it)."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
requirements = pytest.importorskip("packaging.requirements")

ROOT = Path(__file__).resolve().parents[1]
# name: (the newest release with the hole, the first without it)
FLOORS = {
    "onnxruntime": ("1.23.2", "1.24.1"),  # external data outside the model's folder (measured)
    "onnxruntime-gpu": ("1.23.2", "1.24.1"),  # the same code, built for CUDA
    # torch.load(weights_only=True) could still run code: CVE-2025-32434 (< 2.6.0), then memory corruption in
    # the weights_only unpickler, CVE-2026-24747 (< 2.10.0)
    "torch": ("2.9.1", "2.10.0"),
    # external data through a symlink out of the model's folder (CVE-2026-27489), ExternalDataInfo attribute
    # injection (CVE-2026-34445), onnx.hub trust bypass (CVE-2026-28500): all <= 1.20.1
    "onnx": ("1.20.1", "1.21.0"),
    "pillow": ("10.2.0", "10.3.0"),  # buffer overflow in ImageCms (CVE-2024-28219); ImageMath.eval (10.2)
    "tqdm": ("4.66.2", "4.66.3"),  # eval of command-line arguments (CVE-2024-34062)
    "setuptools": ("78.1.0", "78.1.1"),  # package_index path traversal (CVE-2025-47273)
}


def _specifiers() -> dict[str, list]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: dict[str, list] = {}
    lists = [data["build-system"]["requires"], data["project"]["dependencies"],
             *data["project"]["optional-dependencies"].values()]
    for reqs in lists:
        for req in map(requirements.Requirement, reqs):
            found.setdefault(req.name.lower(), []).append(req.specifier)
    return found


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_every_floor_is_above_the_last_release_with_a_hole(name):
    holed, fixed = FLOORS[name]
    specs = _specifiers()[name]
    for spec in specs:
        assert not spec.contains(holed, prereleases=True), (name, str(spec))
    assert any(spec.contains(fixed, prereleases=True) for spec in specs), (name, fixed)
