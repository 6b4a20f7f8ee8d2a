"""Shared fixtures. Keep them session-scoped and cheap: other test modules reuse them."""

from __future__ import annotations

import pytest

from fwrd.slide.synthetic import Cohort, SyntheticSlide, make_cohort, make_synthetic_slide


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """2 tumor + 1 normal Aperio .svs slides of 2048 x 2048 (tumor_001 has a `_2` exclusion hole),
    with annotations/, masks/ and reference.csv, made once per test session (~1 s)."""
    return make_cohort(tmp_path_factory.mktemp("cohort"), n_tumor=2, n_normal=1, width=2048, height=2048,
                       fmt="svs", seed=0)


@pytest.fixture(scope="session")
def synthetic_tif(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSlide:
    """A generic pyramidal BigTIFF tumor slide whose size (1000 x 776) is not a multiple of its
    128 px file tiles, with an exclusion hole."""
    folder = tmp_path_factory.mktemp("tif")
    return make_synthetic_slide(folder / "odd_001.tif", width=1000, height=776, fmt="tif", file_tile=128,
                                seed=3, exclusion=True)


@pytest.fixture()
def mixed_cohort(synthetic_cohort, tmp_path):
    """The synthetic slides plus a non-slide, and a slide whose level-0 tiles are corrupt."""
    import shutil

    import tifffile

    folder = tmp_path / "slides"
    shutil.copytree(synthetic_cohort.slides_dir, folder)
    (folder / "notes.svs").write_text("not a slide")
    data = bytearray(synthetic_cohort.slides[0].path.read_bytes())
    with tifffile.TiffFile(synthetic_cohort.slides[0].path) as tif:
        for offset in tif.pages[0].dataoffsets:
            data[offset:offset + 32] = b"\xff" * 32
    (folder / "corrupt.svs").write_bytes(bytes(data))
    return folder


# --- fwrd.runtime: a stand-in for the exported model (tests/onnx_standin.py) ----------------------
@pytest.fixture(scope="session")
def standin_model(tmp_path_factory):
    """A tiny fwrd-format ONNX model on 64 px tiles at 0.243 um/px (score = mean darkness)."""
    from fwrd.config import FWRDConfig
    from onnx_standin import build_standin

    folder = tmp_path_factory.mktemp("standin")
    return build_standin(folder / "standin.onnx", FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35))


@pytest.fixture(scope="session")
def standin_dense(tmp_path_factory):
    """The stand-in of a graph that also scores regions (tests/onnx_standin.py, dense=True), carrying a
    dense-validation record at the tests' geometry (32 px margin) so that dense runs take it."""
    from fwrd.config import FWRDConfig
    from onnx_standin import STANDIN_RECORD, build_standin

    folder = tmp_path_factory.mktemp("standin_dense")
    config = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35, dense_validation=STANDIN_RECORD)
    return build_standin(folder / "standin_dense.onnx", config, dense=True)


# --- a trained model and its exports (tests/model_fixtures.py) --------------------------------------
from model_fixtures import (  # noqa: E402,F401
    exported_fp16, exported_fp32, exported_int8, exported_int8_trt, trained,
)
