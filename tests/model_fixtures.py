"""Session fixtures for a model trained the way the demo trains it, and its exports (made once)."""

from __future__ import annotations

import warnings

import pytest

from fwrd.demo import DemoPlan, run_step

# The test cohort is smaller than the demo's (2048 px slides), so fewer patches; same 10:1 ratio.
TEST_PLAN = DemoPlan(normal_patches=160, tumor_patches=16, epochs=2)


def _demo_args(root, step):
    return dict(TEST_PLAN.steps(root))[step]


@pytest.fixture(scope="session")
def demo_patches(synthetic_cohort, tmp_path_factory):
    """The demo's patch step on the session's synthetic cohort."""
    root = tmp_path_factory.mktemp("demo")
    (root / "cohort").symlink_to(synthetic_cohort.root, target_is_directory=True)
    run_step("patches", _demo_args(root, "patches"), echo=lambda line: None)
    return root / "patches"


@pytest.fixture(scope="session")
def trained(demo_patches):
    """(checkpoint path, epoch records) of the demo's training step: random teacher, 64 px patches."""
    args = _demo_args(demo_patches.parent, "train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step("train", args, echo=lambda line: None)
    return demo_patches.parent / "model.pt", _history(demo_patches.parent / "model.history.jsonl")


def _history(path):
    import json

    from fwrd.training.trainer import EpochRecord

    return [EpochRecord(**json.loads(line)) for line in path.read_text().splitlines()]


def _export(trained, tmp_path_factory, precision, target=None):
    from fwrd.export.pipeline import ExportSettings, export_model

    name = f"{precision}_{target}" if target else precision
    out = tmp_path_factory.mktemp(f"export_{name}") / f"rd_{name}.onnx"
    lines = []
    settings = ExportSettings(checkpoint=trained[0], output=out, precision=precision, target=target)
    result = export_model(settings, log=lines.append)
    return result, lines


@pytest.fixture(scope="session")
def exported_fp32(trained, tmp_path_factory):
    return _export(trained, tmp_path_factory, "fp32")


@pytest.fixture(scope="session")
def exported_fp16(trained, tmp_path_factory):
    return _export(trained, tmp_path_factory, "fp16")


@pytest.fixture(scope="session")
def exported_int8(trained, tmp_path_factory):
    return _export(trained, tmp_path_factory, "int8")


@pytest.fixture(scope="session")
def exported_int8_trt(trained, tmp_path_factory):
    """int8 in the form TensorRT fuses (`--precision int8 --target tensorrt`)."""
    return _export(trained, tmp_path_factory, "int8", "tensorrt")
