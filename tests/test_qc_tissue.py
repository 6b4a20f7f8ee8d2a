"""The tissue rule's two additions for scans the reference never met (fwrd.slide.tissue, docs/qc.md): faint
tissue beside strongly stained tissue is kept (saturation threshold capped at FAINT_SATURATION), and a slide on
faintly tinted glass is scored; and QC grows pen strokes' edges on the grid (fwrd.slide.qc.grow)."""

from __future__ import annotations

import numpy as np

from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide import tissue
from fwrd.slide.qc import code_of, grow
from fwrd.slide.tissue import saturation, tissue_mask_from_rgb

GLASS = (244, 244, 246)


def _faint_and_strong() -> tuple[np.ndarray, np.ndarray]:
    """A 96 x 96 image: glass, a strongly stained block (saturation ~0.5) and a faint one (~0.16, below
    Otsu's threshold between glass and the strong block)."""
    rng = np.random.default_rng(0)
    rgb = np.empty((96, 96, 3), np.float64)
    rgb[:] = GLASS
    rgb[10:50, 10:86] = (200, 100, 190)  # strong: saturation 0.5
    rgb[60:90, 10:86] = (205, 175, 205)  # faint, pale purple: saturation 0.15
    rgb += rng.normal(0, 2, rgb.shape)
    faint = np.zeros((96, 96), bool)
    faint[60:90, 10:86] = True
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), faint


def test_faint_tissue_beside_strong_tissue_is_kept(monkeypatch):
    rgb, faint = _faint_and_strong()
    s = saturation(rgb)
    assert tissue.otsu_threshold(s) > tissue.FAINT_SATURATION > np.median(s[~faint & (s < 0.05)])
    assert tissue_mask_from_rgb(rgb)[faint].mean() >= 0.95
    monkeypatch.setattr(tissue, "FAINT_SATURATION", 1.0)  # Otsu alone: the faint block is lost
    assert tissue_mask_from_rgb(rgb)[faint].mean() <= 0.05


def test_a_slide_on_tinted_glass_is_scored(standin_model, tmp_path):
    """The issue's case: glass at saturation ~0.05 against tissue ~0.2; the tinted slide is scored, with about
    the tiles of the same slide on neutral glass."""
    from fwrd.runtime.backends import open_backend
    from fwrd.runtime.settings import RunSettings
    from fwrd.runtime.slide_job import score_slide
    from fwrd.slide.annotations import Annotations, rasterize
    from fwrd.slide.synthetic import write_rgb_slide
    from fwrd.slide.synthetic_render import plan_layout, render

    size = 1024
    layout = plan_layout(np.random.default_rng([3, 0]), size, size, 0, False, 1.0, 1.6)
    rgb = render(np.random.default_rng([3, 1]), layout, rasterize(Annotations(), (size, size), 1.0))
    plain = write_rgb_slide(tmp_path / "plain.svs", rgb)
    paint.tint_glass(rgb, (0.95, 0.975, 1.0))
    s = saturation(rgb)
    glass = s[rgb.mean(axis=2) >= np.percentile(rgb.mean(axis=2), 90)]
    assert 0.04 <= np.median(glass) <= 0.06 and np.median(s[s > 0.15]) >= 0.18
    tinted = write_rgb_slide(tmp_path / "tinted.svs", rgb)
    with open_backend(standin_model, threads=1) as backend:
        results = [score_slide(p, backend, tmp_path / "out", RunSettings(progress=False)) for p in (plain, tinted)]
    assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
    before, after = (r.summary["tiles_scored"] for r in results)
    assert after >= 0.95 * before > 0


def test_pen_edges_grow_from_pen_tiles_only():
    codes = np.zeros((4, 5), np.uint8)
    codes[1, 1] = code_of("pen")
    ink = np.zeros((4, 5), np.float32)
    ink[1, 2] = ink[1, 3] = 0.05  # a stroke's edge running on from the pen tile
    ink[3, 4] = 0.05  # the same ink share far from any pen tile: not pen
    scored = np.ones((4, 5), bool)
    grown = grow(codes, ink >= 0.02, scored, "pen")
    assert grown[1, 2] == grown[1, 3] == code_of("pen") and grown[3, 4] == 0
    assert (grow(codes, ink >= 0.1, scored, "pen") == codes).all()
