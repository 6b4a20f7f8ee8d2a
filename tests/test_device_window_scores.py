"""Dense scoring's window scores made by torch (what the GPU path runs) equal numpy's (fwrd.runtime.window_scores).

On this CPU-only CI the same code runs on device cpu: the torch runner's synchronous region path (the
CUDA one adds pinned buffers and streams around the very same calls), and `device_window_scores` on
random maps, aligned and unaligned windows alike.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fwrd.config import FWRDConfig
from fwrd.model.region_scores import device_window_scores
from fwrd.runtime.window_scores import map_shapes, planned_scores, scores_at, window_plan, window_scores

CONFIG = FWRDConfig(tile_size=64, mpp=0.243, teacher_weights="random")


def _windows(rng: np.random.Generator, height: int, width: int, tile: int, n: int, step: int) -> np.ndarray:
    xs = rng.integers(0, (width - tile) // step + 1, n) * step
    ys = rng.integers(0, (height - tile) // step + 1, n) * step
    return np.stack([xs, ys], axis=1)


@pytest.mark.parametrize("tile, step", [(64, 16), (256, 64), (64, 8)])  # step 8: windows between feature pixels
def test_device_window_scores_equal_numpys(tile, step):
    rng = np.random.default_rng(tile + step)
    height, width = 4 * tile + 96, 3 * tile + 160
    maps = [rng.random(shape).astype(np.float32) * 0.3 for shape in map_shapes(height, width)]
    offsets = _windows(rng, height, width, tile, 40, step)
    plan = window_plan([m.shape for m in maps], tile, offsets)
    want = scores_at(maps, tile, offsets)
    got = device_window_scores([torch.from_numpy(m) for m in maps],
                               [(torch.from_numpy(wy), torch.from_numpy(wx)) for wy, wx in plan.weights],
                               torch.from_numpy(plan.rows), torch.from_numpy(plan.cols)).numpy()
    assert got.dtype == np.float32 and got.shape == (40,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(planned_scores(maps, plan), want)
    table = window_scores(maps, tile, np.unique(offsets[:, 0]), np.unique(offsets[:, 1]))
    np.testing.assert_array_equal(table[plan.rows, plan.cols], want)  # the plan indexes the full table


@pytest.mark.slow  # four region passes of the whole network: ~15 s of CPU
def test_the_torch_runners_region_path_equals_maps_and_numpy():
    """TorchRunner.score_regions (device window scores) vs its maps read off with numpy, on a real network."""
    from fwrd.model.network import ReverseDistillation
    from fwrd.model.runner import TorchRunner

    torch.manual_seed(0)
    model = ReverseDistillation(CONFIG.architecture).eval()
    runner = TorchRunner(model, CONFIG, device=torch.device("cpu"), precision="fp32", threads=2, regions=True)
    rng = np.random.default_rng(5)
    regions = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((96, 128), (64, 96))]
    offsets = [_windows(rng, r.shape[0], r.shape[1], 64, 6, 16) for r in regions]
    items = ((k, r, window_plan(map_shapes(*r.shape[:2]), 64, o)) for k, (r, o) in enumerate(zip(regions, offsets)))
    got = list(runner.score_regions(items))
    assert [tag for tag, _ in got] == [0, 1]
    for (_, scores), region, where in zip(got, regions, offsets):
        want = scores_at(runner.infer_region(region), 64, where)
        np.testing.assert_allclose(scores, want, rtol=1e-6, atol=0)
    runner.close()
