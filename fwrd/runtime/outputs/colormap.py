"""Colour scales for heatmap.png and overlay.png, one per model (never per slide), without matplotlib.

The same colour must mean the same score on every slide a model scores, so the scale depends only
on the model's threshold: `model_scale` spans 0..3 (FW-RD patch scores are sums of three `1 - cos`
maps; trained models put normal tissue well below 3 and the reference threshold is 2.01), widened
upwards for a threshold near or above 3. Scores beyond the scale take its end colours.

heatmap.png colours every scored tile with viridis over the whole scale (perceptually uniform,
readable in grey-scale print and by most colour-blind readers). overlay.png leaves tiles below the
threshold uncoloured, so the H&E stays visible, and paints tiles at or above it with a yellow ->
orange -> red ramp whose opacity also grows with the score (`overlay_colours`).

    scale = model_scale(threshold=1.21)        # ScoreScale(lo=0.0, hi=3.0, threshold=1.21)
    rgb = apply_colormap(heatmap, scale.lo, scale.hi)   # NaN -> `nan_color`
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_VIRIDIS = np.array(
    [
        [0.267004, 0.004874, 0.329415],
        [0.282623, 0.140926, 0.457517],
        [0.229739, 0.322361, 0.545706],
        [0.172719, 0.448791, 0.557885],
        [0.127568, 0.566949, 0.550556],
        [0.157851, 0.683765, 0.501686],
        [0.369214, 0.788888, 0.382914],
        [0.678489, 0.863742, 0.189503],
        [0.993248, 0.906157, 0.143936],
    ]
)
# Above-threshold ramp: far from H&E's pinks and purples at its low end, unmistakably "hot" at the top.
_TUMOR_RAMP = np.array([[255, 235, 0], [255, 140, 0], [220, 20, 0]], np.float64) / 255.0
OVERLAY_ALPHA = (0.3, 0.7)  # opacity at the threshold and at the top of the scale
SCALE_TOP = 3.0


@dataclass(frozen=True)
class ScoreScale:
    """The colour scale of one model: scores lo..hi, tumor call at >= threshold."""

    lo: float
    hi: float
    threshold: float

    def fraction(self, values: np.ndarray) -> np.ndarray:
        """Position of `values` along the scale, clipped to 0..1 (NaN stays NaN)."""
        return np.clip((np.asarray(values, np.float64) - self.lo) / (self.hi - self.lo), 0.0, 1.0)


def model_scale(threshold: float) -> ScoreScale:
    """0..3, or 0..ceil(1.25 x threshold) when the threshold sits near or above 3 (and down to a
    negative threshold's floor), so the threshold always lies inside the scale with room above it."""
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    lo = min(0.0, float(math.floor(threshold)))
    hi = max(SCALE_TOP, float(math.ceil(1.25 * threshold)))
    if hi <= threshold:  # e.g. a negative threshold with ceil(1.25 t) == t
        hi = threshold + 1.0
    return ScoreScale(lo, hi, threshold)


def _ramp(anchors: np.ndarray, n: int) -> np.ndarray:
    pos = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, n)
    return np.round(np.stack([np.interp(t, pos, anchors[:, c]) for c in range(3)], axis=1) * 255).astype(np.uint8)


def colormap_lut(n: int = 256) -> np.ndarray:
    """uint8 [n, 3] viridis: entry 0 is the lowest score's colour, entry n-1 the highest's."""
    return _ramp(_VIRIDIS, n)


LUT = colormap_lut()
TUMOR_LUT = _ramp(_TUMOR_RAMP, 256)


def lut_index(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map values in [lo, hi] to LUT indices 0..255 (clipped; NaN -> 0, mask it yourself)."""
    span = hi - lo if hi > lo else 1.0
    scaled = (np.nan_to_num(np.asarray(values, np.float64), nan=lo) - lo) / span
    return np.clip(np.round(scaled * (len(LUT) - 1)), 0, len(LUT) - 1).astype(np.intp)


def apply_colormap(
    values: np.ndarray, lo: float, hi: float, nan_color: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """uint8 [..., 3] viridis colours of `values`; NaN (off tissue) cells get `nan_color`."""
    rgb = LUT[lut_index(values, lo, hi)]
    rgb[np.isnan(values)] = nan_color
    return rgb


def overlay_colours(values: np.ndarray, scale: ScoreScale) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [..., 3] colour, float [...] opacity) of above-threshold scores for overlay.png.

    Opacity is 0 below the threshold and for NaN; from the threshold to the top of the scale the
    colour runs yellow -> red and the opacity OVERLAY_ALPHA[0] -> OVERLAY_ALPHA[1].
    """
    values = np.asarray(values, np.float64)
    with np.errstate(invalid="ignore"):
        above = np.isfinite(values) & (values >= scale.threshold)
    t = np.clip((np.nan_to_num(values, nan=scale.threshold) - scale.threshold) / (scale.hi - scale.threshold), 0, 1)
    rgb = TUMOR_LUT[np.round(t * (len(TUMOR_LUT) - 1)).astype(np.intp)]
    alpha = np.where(above, OVERLAY_ALPHA[0] + (OVERLAY_ALPHA[1] - OVERLAY_ALPHA[0]) * t, 0.0)
    return rgb, alpha
