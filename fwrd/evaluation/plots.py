"""FROC and ROC figures drawn with Pillow (axes, ticks, grid, labels): no plotting library needed.

The FROC figure uses a log2 FP axis from 1/8 to 16 FPs per slide and draws the curve exactly as the
score reads it (`np.interp` on the reversed curve), with the six operating points marked and labelled.
The ROC figure is the usual unit square with the chance diagonal.

    image = froc_figure(curve.fps_per_slide, curve.sensitivity, FP_RATES, sens, score)
    image.save("froc.png")   # or fwrd.evaluation.report.save_png(image, path) to write atomically
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 720, 540
LEFT, RIGHT, TOP, BOTTOM = 84, 28, 56, 72
CURVE = (31, 119, 180)
POINT = (214, 39, 40)
GRID = (225, 225, 225)
INK = (30, 30, 30)
CHANCE = (150, 150, 150)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


class _Axes:
    """A plotting frame: maps data coordinates to pixels and draws the frame, grid, ticks and labels."""

    def __init__(self, title: str, xlabel: str, ylabel: str,
                 xmap: Callable[[np.ndarray], np.ndarray], xrange: tuple[float, float],
                 yrange: tuple[float, float] = (0.0, 1.0)) -> None:
        self.image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.xmap, self.xrange, self.yrange = xmap, xrange, yrange
        self.x0, self.x1 = LEFT, WIDTH - RIGHT
        self.y0, self.y1 = HEIGHT - BOTTOM, TOP  # pixel rows of yrange[0] and yrange[1]
        self.small, self.large = _font(13), _font(16)
        self._text((WIDTH / 2, TOP / 2), title, self.large, "mm")
        self._text(((self.x0 + self.x1) / 2, HEIGHT - 18), xlabel, self.small, "mm")
        label = Image.new("RGB", (int(self.draw.textlength(ylabel, font=self.small)) + 4, 18), "white")
        ImageDraw.Draw(label).text((2, 1), ylabel, fill=INK, font=self.small)
        label = label.rotate(90, expand=True)
        self.image.paste(label, (8, int((self.y0 + self.y1) / 2 - label.height / 2)))

    def _text(self, xy: tuple[float, float], text: str, font, anchor: str, fill=INK) -> None:
        try:
            self.draw.text(xy, text, fill=fill, font=font, anchor=anchor)
        except ValueError:  # bitmap fonts do not support anchors
            self.draw.text(xy, text, fill=fill, font=font)

    def px(self, x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
        lo, hi = (self.xmap(np.asarray(v, dtype=float)) for v in self.xrange)
        fx = (self.xmap(np.asarray(x, dtype=float)) - lo) / (hi - lo)
        fy = (np.asarray(y, dtype=float) - self.yrange[0]) / (self.yrange[1] - self.yrange[0])
        xs = self.x0 + np.clip(fx, 0, 1) * (self.x1 - self.x0)
        ys = self.y0 - np.clip(fy, 0, 1) * (self.y0 - self.y1)
        return list(zip(xs.tolist(), ys.tolist()))

    def ticks(self, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]]) -> None:
        for value, text in xticks:
            (x, _), = self.px([value], [self.yrange[0]])
            self.draw.line([(x, self.y1), (x, self.y0)], fill=GRID)
            self.draw.line([(x, self.y0), (x, self.y0 + 6)], fill=INK, width=1)
            self._text((x, self.y0 + 9), text, self.small, "mt")
        for value, text in yticks:
            (_, y), = self.px([self.xrange[0]], [value])
            self.draw.line([(self.x0, y), (self.x1, y)], fill=GRID)
            self.draw.line([(self.x0 - 6, y), (self.x0, y)], fill=INK, width=1)
            self._text((self.x0 - 9, y), text, self.small, "rm")
        self.draw.rectangle([self.x0, self.y1, self.x1, self.y0], outline=INK, width=1)

    def line(self, x: np.ndarray, y: np.ndarray, fill, width: int = 3) -> None:
        points = self.px(x, y)
        if len(points) > 1:
            self.draw.line(points, fill=fill, width=width, joint="curve")

    def dashed(self, x: Sequence[float], y: Sequence[float], fill, dash: int = 8) -> None:
        (ax, ay), (bx, by) = self.px(x, y)
        length = float(np.hypot(bx - ax, by - ay))
        for start in np.arange(0.0, length, 2 * dash):
            t0, t1 = start / length, min(start + dash, length) / length
            self.draw.line([(ax + t0 * (bx - ax), ay + t0 * (by - ay)),
                            (ax + t1 * (bx - ax), ay + t1 * (by - ay))], fill=fill, width=1)

    def marker(self, x: float, y: float, fill, label: str | None = None) -> None:
        (px, py), = self.px([x], [y])
        self.draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=fill, outline=INK)
        if label:
            self._text((px + 2, py - 9), label, self.small, "ls")

    def legend(self, text: str) -> None:
        self._text((self.x1 - 10, self.y0 - 12), text, self.large, "rs")


def _fraction(value: float) -> str:
    return f"1/{int(round(1 / value))}" if value < 1 else f"{value:g}"


def froc_figure(
    fps_per_slide: np.ndarray,
    sensitivity: np.ndarray,
    rates: Sequence[float],
    rate_sensitivity: Sequence[float],
    score: float,
    title: str = "Lesion FROC (Camelyon16)",
) -> Image.Image:
    """The FROC curve on a log2 FP axis (1/8 to 16 FPs per slide) with the operating points marked."""
    xrange = (1 / 8, 16.0)
    axes = _Axes(title, "average false positives per slide", "sensitivity", np.log2, xrange)
    axes.ticks([(v, _fraction(v)) for v in 2.0 ** np.arange(-3, 5)],
               [(v, f"{v:.1f}") for v in np.linspace(0, 1, 6)])
    xs = np.logspace(np.log2(xrange[0]), np.log2(xrange[1]), 400, base=2)
    fps = np.asarray(fps_per_slide, dtype=float)[::-1]
    sens = np.asarray(sensitivity, dtype=float)[::-1]
    axes.line(xs, np.interp(xs, fps, sens), CURVE)
    for rate, value in zip(rates, rate_sensitivity):
        axes.marker(rate, value, POINT, f"{value:.3f}")
    axes.legend(f"FROC score {score:.4f}")
    return axes.image


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auc: float, title: str = "ROC") -> Image.Image:
    """The ROC curve in the unit square with the chance diagonal and the AUC."""
    axes = _Axes(title, "false positive rate (1 - specificity)", "true positive rate (sensitivity)",
                 lambda v: v, (0.0, 1.0))
    ticks = [(v, f"{v:.1f}") for v in np.linspace(0, 1, 6)]
    axes.ticks(ticks, ticks)
    axes.dashed([0.0, 1.0], [0.0, 1.0], CHANCE)
    axes.line(np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float), CURVE)
    axes.legend(f"AUC {auc:.4f}")
    return axes.image
