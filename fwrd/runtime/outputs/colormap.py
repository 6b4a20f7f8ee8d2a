"""A 256-entry colour lookup table (viridis-like) and score -> RGB mapping, without matplotlib.

The table interpolates linearly between nine anchor colours of matplotlib's viridis (perceptually
uniform, readable in grey-scale print and by most colour-blind readers).

    rgb = apply_colormap(heatmap, lo=0.0, hi=3.0)   # NaN -> `nan_color`
"""

from __future__ import annotations

import numpy as np

_ANCHORS = np.array(
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


def colormap_lut(n: int = 256) -> np.ndarray:
    """uint8 [n, 3]: entry 0 is the lowest score's colour, entry n-1 the highest's."""
    pos = np.linspace(0.0, 1.0, len(_ANCHORS))
    t = np.linspace(0.0, 1.0, n)
    lut = np.stack([np.interp(t, pos, _ANCHORS[:, c]) for c in range(3)], axis=1)
    return np.round(lut * 255).astype(np.uint8)


LUT = colormap_lut()


def lut_index(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map values in [lo, hi] to LUT indices 0..255 (clipped; NaN -> 0, mask it yourself)."""
    span = hi - lo if hi > lo else 1.0
    scaled = (np.nan_to_num(np.asarray(values, np.float64), nan=lo) - lo) / span
    return np.clip(np.round(scaled * (len(LUT) - 1)), 0, len(LUT) - 1).astype(np.intp)


def apply_colormap(
    values: np.ndarray, lo: float, hi: float, nan_color: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """uint8 [..., 3] colours of `values`; NaN (off tissue) cells get `nan_color`."""
    rgb = LUT[lut_index(values, lo, hi)]
    rgb[np.isnan(values)] = nan_color
    return rgb


def score_range(values: np.ndarray, threshold: float) -> tuple[float, float]:
    """Colour scale that spans the scores and always includes the threshold (so it can be marked)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (min(0.0, threshold), max(1.0, threshold))
    lo = float(min(finite.min(), threshold))
    hi = float(max(finite.max(), threshold))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi
