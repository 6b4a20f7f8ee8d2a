"""`--resume` keys cover what a result depends on: the reader (issue 21.3) and every byte of the slide file
(issue 21.4), without rereading slides nobody touched."""

from __future__ import annotations

import os

import numpy as np
import openslide
import pytest

import fwrd.slide.identity as identity_module
from fwrd.runtime.backends import open_backend
from fwrd.runtime.backends.base import Backend
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.slide.identity import file_stat, identify, slide_identity
from fwrd.slide.synthetic import make_synthetic_slide
from hostile_files import scan_start, tile_layout

V1_SAMPLE = 1 << 20  # the old fingerprint hashed the first, middle and last MiB only


class Counting(Backend):
    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.config, inner.metadata, inner.precision)
        self.inner, self.name, self.device = inner, inner.name, inner.device
        self.model_sha256, self.model_path = inner.model_sha256, inner.model_path
        self.tiles = 0

    def infer(self, tiles):
        self.tiles += len(tiles)
        return self.inner.infer(tiles)


@pytest.fixture(scope="module")
def backend(standin_model):
    return open_backend(standin_model, threads=1)


def test_resume_with_the_other_reader_rescores(synthetic_cohort, backend, tmp_path):
    slide = synthetic_cohort.slides[0].path
    first = score_slide(slide, backend, tmp_path, RunSettings(resume=True, progress=False))
    assert first.summary["reader"] == "tifffile"
    counting = Counting(backend)
    second = score_slide(slide, counting, tmp_path, RunSettings(resume=True, prefer_direct=False, progress=False))
    assert second.status == "ok" and second.summary["reader"] == "openslide"
    assert counting.tiles == second.summary["tiles_scored"] > 0
    again = Counting(backend)  # and the same reader again keeps it
    assert score_slide(slide, again, tmp_path, RunSettings(resume=True, prefer_direct=False,
                                                           progress=False)).status == "skipped"
    assert again.tiles == 0


def test_identity_covers_every_byte(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, 5 * V1_SAMPLE, dtype=np.uint8))
    path = tmp_path / "s.tif"
    path.write_bytes(data)
    base = slide_identity(path)
    assert base.startswith(f"v2:{len(data)}:")
    for offset in (10, V1_SAMPLE + 12345, len(data) // 2, 4 * V1_SAMPLE - 7, len(data) - 10):
        changed = bytearray(data)
        changed[offset] ^= 0x01
        path.write_bytes(bytes(changed))
        assert slide_identity(path) != base, offset
    path.write_bytes(data)
    os.utime(path, ns=(1, 1))
    assert slide_identity(path) == base  # the content, not the modification time


def test_a_recorded_identity_is_trusted_only_for_an_untouched_file(tmp_path, monkeypatch):
    path = tmp_path / "s.tif"
    path.write_bytes(b"slide bytes")
    real, stat = identify(path)
    recorded = {"slide_identity": "v2:11:recorded", "slide_stat": stat}
    assert identify(path, recorded) == ("v2:11:recorded", stat)  # not reread
    path.write_bytes(b"slide bytes")  # written again, same bytes: the inode-change time moves on
    assert identify(path, recorded)[0] == real
    copy = tmp_path / "copy.tif"
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(stat[1], stat[1]))  # even with the modification time set back (cp -p, touch -r)
    assert identify(copy, {"slide_identity": "v2:11:recorded", "slide_stat": file_stat(path)})[0] == real


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory):
    """A 4.3 MiB slide (the old samples cover 3 of it) and a copy whose level-0 tissue tile outside those
    samples has other entropy-coded bytes that still decode (damage no reader can see: other pixels)."""
    folder = tmp_path_factory.mktemp("big")
    slide = make_synthetic_slide(folder / "big.svs", width=3072, height=3072, quality=98, seed=1).path
    size = slide.stat().st_size
    samples = [(0, V1_SAMPLE), ((size - V1_SAMPLE) // 2, (size + V1_SAMPLE) // 2), (size - V1_SAMPLE, size)]
    offsets, counts, (tw, th), across = tile_layout(slide)
    data = slide.read_bytes()
    for index in np.argsort(counts)[::-1]:  # busy tiles first: tissue
        start, end = offsets[index], offsets[index] + counts[index]
        if any(start < hi and end > lo for lo, hi in samples):
            continue
        changed = bytearray(data)
        body = start + scan_start(data[start:end])
        changed[body + 100 : body + 140] = np.random.default_rng(int(index)).integers(0, 255, 40, np.uint8).tobytes()
        altered = folder / "altered.svs"
        altered.write_bytes(bytes(changed))
        with openslide.OpenSlide(str(altered)) as check:
            try:
                check.read_region((int(index % across) * tw, int(index // across) * th), 0, (tw, th))
            except openslide.OpenSlideError:
                continue  # a change OpenSlide refuses would fail the slide, not rescore it
        return slide, altered
    pytest.fail("no level-0 tile outside the old samples")


def test_resume_rescores_a_slide_changed_outside_the_old_samples(big_slide, backend, tmp_path):
    original, altered = big_slide
    work = tmp_path / "slides" / "case.svs"
    work.parent.mkdir()
    work.write_bytes(original.read_bytes())
    settings = RunSettings(resume=True, progress=False)
    first = score_slide(work, backend, tmp_path / "run", settings)
    before = (tmp_path / "run" / "case" / "tiles.csv").read_bytes()
    work.write_bytes(altered.read_bytes())  # same size, same first, middle and last MiB
    counting = Counting(backend)
    second = score_slide(work, counting, tmp_path / "run", settings)
    assert second.status == "ok" and counting.tiles == second.summary["tiles_scored"]
    assert second.summary["slide_identity"] != first.summary["slide_identity"]
    score_slide(work, backend, tmp_path / "fresh", RunSettings(progress=False))
    after = (tmp_path / "run" / "case" / "tiles.csv").read_bytes()
    assert after == (tmp_path / "fresh" / "case" / "tiles.csv").read_bytes() and after != before


def test_resume_does_not_reread_an_untouched_slide(synthetic_cohort, backend, tmp_path, monkeypatch):
    slide = synthetic_cohort.slides[1].path
    settings = RunSettings(resume=True, progress=False)
    score_slide(slide, backend, tmp_path, settings)

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(identity_module, "file_sha256", no_hashing)
    assert score_slide(slide, backend, tmp_path, settings).status == "skipped"
