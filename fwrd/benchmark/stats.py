"""Median and spread of repeated measurements, so that one noisy repeat never decides a verdict.

    summarise([41.0, 43.5, 42.2])
    # {"median": 42.2, "min": 41.0, "max": 43.5, "spread": 0.0592, "n": 3, "values": [41.0, 43.5, 42.2]}

`spread` is (max - min) / median: 0.06 means the repeats varied by 6 % of the median.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

NOISY_SPREAD = 0.2  # a figure whose repeats vary by more than this is flagged in the report


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max, relative spread and the raw values (rounded) of one measured figure."""
    clean = [float(v) for v in values if math.isfinite(float(v))]
    if not clean:
        raise ValueError("no finite measurements to summarise")
    median = statistics.median(clean)
    low, high = min(clean), max(clean)
    spread = (high - low) / median if median > 0 else 0.0
    return {
        "median": _round(median),
        "min": _round(low),
        "max": _round(high),
        "spread": round(spread, 4),
        "n": len(clean),
        "values": [_round(v) for v in clean],
    }


def is_noisy(figure: dict[str, Any] | None) -> bool:
    """True when a summarised figure's repeats disagree by more than NOISY_SPREAD."""
    return bool(figure) and figure.get("n", 0) > 1 and figure.get("spread", 0.0) > NOISY_SPREAD


def _round(value: float) -> float:
    """Four significant digits are more than any throughput measurement here can claim."""
    if value == 0:
        return 0.0
    digits = 3 - int(math.floor(math.log10(abs(value))))
    return round(value, max(digits, 0))
