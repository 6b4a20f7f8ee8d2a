"""Dense scoring for GPUs without the full-size regions: region sides in a few shapes (`quantum`), the
torch backend's choice on CUDA, and the loop that keeps two regions in flight (order, and nothing left
writing a buffer when the consumer stops early)."""

from __future__ import annotations

import numpy as np
import pytest

from fwrd.config import FWRDConfig
from fwrd.errors import FwrdError
from fwrd.runtime.plan import plan_slide
from fwrd.runtime.regions import ALIGN, plan_regions
from fwrd.runtime.settings import RunSettings
from fwrd.slide.reader import open_slide

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, threshold=0.35)


@pytest.fixture(scope="module")
def plan(synthetic_cohort):
    with open_slide(synthetic_cohort.slides[0].path) as slide:
        return plan_slide(slide, CONFIG, RunSettings(stride=16))


@pytest.mark.parametrize("quantum", [128, 256])
def test_quantised_regions_cover_their_points_in_few_shapes(plan, quantum):
    side, margin = 512, 64
    tight = plan_regions(plan, side, margin)
    rounded = plan_regions(plan, side, margin, quantum=quantum)
    full = plan_regions(plan, side, margin, fixed=True)
    assert sorted(map(tuple, rounded.points)) == sorted(map(tuple, plan.points))  # each point exactly once
    assert np.all((rounded.sizes % quantum == 0) | (rounded.sizes == side)) and np.all(rounded.sizes <= side)
    assert np.all(rounded.origins % ALIGN == 0)
    r = np.repeat(np.arange(rounded.regions), np.diff(rounded.region_starts))
    assert np.all(rounded.offsets >= margin) and np.all(rounded.offsets + plan.tile + margin <= rounded.sizes[r])
    shapes = {tuple(s) for s in rounded.sizes.tolist()}
    assert len(shapes) <= (side // quantum) ** 2
    assert tight.pixels <= rounded.pixels <= full.pixels  # between tissue-tight and full-size


def test_a_quantum_off_the_network_stride_is_refused(plan):
    with pytest.raises(FwrdError, match="multiple of 32"):
        plan_regions(plan, 512, 64, quantum=100)


def test_other_backends_keep_tissue_tight_regions_at_the_stride():
    from fwrd.runtime.backends.base import Backend
    from fwrd.runtime.backends.torch import GPU_REGION_QUANTUM

    class Plain(Backend):
        def infer(self, tiles):
            raise NotImplementedError

    assert GPU_REGION_QUANTUM % ALIGN == 0 and GPU_REGION_QUANTUM > ALIGN
    backend = Plain(CONFIG, {}, "fp32")  # every other backend keeps tissue-tight regions at the stride
    assert backend.region_quantum == ALIGN and backend.fixed_regions is False
    assert backend.describe().get("region_quantum") is None  # described only when opened for regions


class FakeSlot:
    """Stands in for region_scores.RegionSlot: records what a CUDA slot would be asked to do."""

    def __init__(self, log: list) -> None:
        self.log, self.tag = log, None

    def submit(self, forward, pixels, windows) -> None:
        self.tag = int(pixels[0, 0, 0])
        self.log.append(("submit", self.tag))

    def collect(self) -> np.ndarray:
        self.log.append(("collect", self.tag))
        return np.full(2, self.tag, np.float32)

    def drain(self) -> None:
        self.log.append(("drain", self.tag))


def test_two_regions_in_flight_in_order_and_drained_when_stopped():
    from fwrd.model.region_scores import score_regions_streamed

    log: list = []
    slots = [FakeSlot(log), FakeSlot(log)]
    items = [(k, np.full((1, 1, 3), k, np.uint8), None) for k in range(4)]
    got = list(score_regions_streamed(None, items, slots))
    assert [tag for tag, _ in got] == [0, 1, 2, 3] and all(s[0] == tag for tag, s in got)
    # region 1 is submitted before region 0 is collected: two in flight
    assert log[:3] == [("submit", 0), ("submit", 1), ("collect", 0)]
    log.clear()
    stream = score_regions_streamed(None, items, [FakeSlot(log), FakeSlot(log)])
    next(stream)
    stream.close()  # the consumer stops early: the slot still in flight is drained
    assert log[-1][0] == "drain"
