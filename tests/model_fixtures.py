"""Session fixtures for a model trained the way the demo trains it, and its exports (made once)."""

from __future__ import annotations

import warnings

import pytest

from fwrd.demo import DemoPlan, make_patches, train_model

# The test cohort is smaller than the demo's (2048 px slides), so fewer patches; same 10:1 ratio.
TEST_PLAN = DemoPlan(normal_patches=160, tumor_patches=16, epochs=3)


@pytest.fixture(scope="session")
def demo_patches(synthetic_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "patches"
    make_patches(synthetic_cohort.slides_dir, synthetic_cohort.annotations_dir, out, TEST_PLAN)
    return out


@pytest.fixture(scope="session")
def trained(demo_patches, tmp_path_factory):
    """(checkpoint path, epoch records) of a random-teacher model on 64 px synthetic patches."""
    out = tmp_path_factory.mktemp("trained") / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = train_model(demo_patches, out, TEST_PLAN, log=lambda line: None)
    return out, records


def _export(trained, tmp_path_factory, precision):
    from fwrd.export.pipeline import ExportSettings, export_model

    out = tmp_path_factory.mktemp(f"export_{precision}") / f"rd_{precision}.onnx"
    lines = []
    result = export_model(ExportSettings(checkpoint=trained[0], output=out, precision=precision), log=lines.append)
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
