"""Decode workers: every planned tile arrives exactly once, with OpenSlide's pixels, in bounded buffers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fwrd.config import FWRDConfig
from fwrd.errors import SlideError
from fwrd.runtime.decode import DecodeWorkers
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.settings import RunSettings
from fwrd.slide.reader import open_slide
from fwrd.slide.tile_reader import open_tile_reader

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35)


def _drain(decode: DecodeWorkers) -> tuple[np.ndarray, np.ndarray, set[int]]:
    coords, tiles, buffers = [], [], set()
    for batch in decode.batches():
        buffers.add(id(batch))
        coords.append(batch.coords[: batch.count].copy())
        tiles.append(batch.tiles[: batch.count].copy())
        decode.release(batch)
    return np.concatenate(coords), np.concatenate(tiles), buffers


@pytest.mark.parametrize("workers, stride, direct", [(1, None, True), (3, None, True), (3, 32, True), (2, 48, False)])
def test_every_tile_once_with_openslide_pixels(synthetic_cohort, workers, stride, direct):
    path = synthetic_cohort.slides[1].path
    with open_slide(path) as slide:
        plan = plan_slide(slide, CONFIG, RunSettings(stride=stride))
        with DecodeWorkers(plan, path, batch_size=7, workers=workers, buffers=4, prefer_direct=direct) as decode:
            coords, tiles, buffers = _drain(decode)
        assert decode.reader_kind == ("tifffile" if direct else "openslide")
        assert len(buffers) <= 4  # the pool bounds memory
        assert len(coords) == len(plan.points)
        assert {tuple(c) for c in coords} == {tuple(p) for p in plan.points}
        for (x, y), tile in zip(coords, tiles):
            np.testing.assert_array_equal(tile, slide.read_region((int(x), int(y)), 0, (64, 64)))


def test_level1_tiles_match_openslide(synthetic_cohort):
    path = synthetic_cohort.slides[0].path
    config = CONFIG.replace(mpp=0.486)
    with open_slide(path) as slide:
        plan = plan_slide(slide, config, RunSettings())
        assert plan.level == 1 and plan.geometry.stride == 128 and plan.geometry.tile == 128
        with DecodeWorkers(plan, path, batch_size=16, workers=2) as decode:
            coords, tiles, _ = _drain(decode)
        assert len(coords) == len(plan.points) > 0
        for (x, y), tile in zip(coords, tiles):
            np.testing.assert_array_equal(tile, slide.read_region((int(x), int(y)), 1, (64, 64)))


class _FailingReader:
    kind = "failing"

    def __init__(self, path, level, fail_after):
        self.inner = open_tile_reader(path, level)
        self.calls = 0
        self.fail_after = fail_after
        self.closed = False

    def read(self, x, y, size, height=None):
        self.calls += 1
        if self.calls > self.fail_after:
            raise SlideError("slide.svs: corrupt JPEG tile 7")
        return self.inner.read(x, y, size, height)

    def close(self):
        self.closed = True
        self.inner.close()


def test_a_worker_error_reaches_the_consumer_and_stops_everyone(synthetic_cohort):
    path = synthetic_cohort.slides[0].path
    readers = []

    def factory():
        readers.append(_FailingReader(path, 0, fail_after=2))
        return readers[-1]

    with open_slide(path) as slide:
        plan = plan_slide(slide, CONFIG, RunSettings())
    decode = DecodeWorkers(plan, path, batch_size=4, workers=3, reader_factory=factory)
    with pytest.raises(SlideError, match="corrupt JPEG tile 7"):
        with decode:
            for batch in decode.batches():
                decode.release(batch)
    assert not any(t.name.startswith("fwrd-decode") for t in threading.enumerate())
    assert readers and all(r.closed for r in readers)


def test_consumer_stopping_early_does_not_hang(synthetic_cohort):
    path = synthetic_cohort.slides[0].path
    with open_slide(path) as slide:
        plan = plan_slide(slide, CONFIG, RunSettings())
    with DecodeWorkers(plan, path, batch_size=2, workers=2, buffers=2) as decode:
        first = next(decode.batches())  # never released: workers block on the pool until close()
        assert first.count == 2
    assert not any(t.name.startswith("fwrd-decode") for t in threading.enumerate())


def test_region_workers_read_every_region_once_in_bounded_buffers(synthetic_cohort):
    from fwrd.runtime.decode import RegionWorkers
    from fwrd.runtime.regions import plan_regions

    path = synthetic_cohort.slides[0].path
    with open_slide(path) as slide:
        regions = plan_regions(plan_slide(slide, CONFIG, RunSettings(stride=16)), 256, 32)
        assert regions.regions > 8
        seen, buffers = {}, set()
        with RegionWorkers(regions, path, workers=3, buffers=2) as decode:
            for region in decode.batches():
                buffers.add(id(region))
                assert region.index not in seen
                seen[region.index] = region.pixels.copy()
                assert region.count == regions.region_starts[region.index + 1] - regions.region_starts[region.index]
                decode.release(region)
        assert len(buffers) <= 2 and sorted(seen) == list(range(regions.regions))  # memory: the pool
        for r in (0, regions.regions // 2, regions.regions - 1):
            (x, y), (w, h) = regions.origins[r], regions.sizes[r]
            np.testing.assert_array_equal(seen[r], slide.read_region((int(x), int(y)), 0, (int(w), int(h))))
