"""FROC and ROC figures: drawn where the data says, with frame and operating points."""

from __future__ import annotations

import numpy as np

from fwrd.evaluation import plots
from fwrd.evaluation.report import save_png


def pixel_x(fraction: float) -> int:
    return round(plots.LEFT + fraction * (plots.WIDTH - plots.RIGHT - plots.LEFT))


def pixel_y(fraction: float) -> int:
    return round(plots.HEIGHT - plots.BOTTOM - fraction * (plots.HEIGHT - plots.BOTTOM - plots.TOP))


def test_froc_figure_marks_the_operating_points(tmp_path):
    fps = np.array([4.0, 2.0, 1.0, 0.5, 0.0])
    sens = np.array([0.9, 0.8, 0.6, 0.4, 0.0])
    rates = (0.25, 0.5, 1, 2, 4, 8)
    at = np.interp(rates, fps[::-1], sens[::-1])
    image = plots.froc_figure(fps, sens, rates, at, float(at.mean()))
    assert image.size == (plots.WIDTH, plots.HEIGHT)
    pixels = np.asarray(image)
    for rate, value in zip(rates, at):  # log2 axis from 1/8 to 16: 7 octaves
        x, y = pixel_x((np.log2(rate) + 3) / 7), pixel_y(value)
        assert tuple(pixels[y, x]) == plots.POINT
    assert tuple(pixels[pixel_y(0.5), plots.LEFT]) == plots.INK  # frame
    assert (pixels == plots.CURVE).all(axis=2).sum() > 500  # the curve is drawn
    path = save_png(image, tmp_path / "sub" / "froc.png")
    assert path.read_bytes().startswith(b"\x89PNG") and not list((tmp_path / "sub").glob(".*tmp"))


def test_roc_figure_follows_the_curve():
    image = plots.roc_figure(np.array([0, 0, 0.5, 0.5, 1]), np.array([0, 0.5, 0.5, 1, 1]), 0.75)
    pixels = np.asarray(image)
    assert tuple(pixels[pixel_y(0.75), pixel_x(0.5)]) == plots.CURVE  # the vertical step at fpr 0.5
    assert tuple(pixels[pixel_y(0.25), pixel_x(0.5)]) != plots.CURVE
    assert tuple(pixels[pixel_y(0.5), pixel_x(0.25)]) == plots.CURVE  # the flat part at tpr 0.5
