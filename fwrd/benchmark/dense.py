"""`fwrd-bench --dense`: dense scoring next to per-tile scoring on the same slide, model and workers.

For each target and worker count: dense end to end (the slide's grid points per second of the streaming
phase, as fwrd-run reports them) over the fastest per-tile end-to-end figure of that target at that
worker count (its best batch size), and how the two scorings of the slide agree (Spearman's rank
correlation and the largest difference of the tile scores). Both scorings are documented ways of
scoring, not one the approximation of the other: the agreement says how far apart they are on this
slide, not which is right.

    rows = dense_rows(targets, dense_raw, result["end_to_end"], heatmaps)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from fwrd.benchmark.stats import summarise


def agreement(tiles: np.ndarray, dense: np.ndarray) -> dict[str, Any]:
    """Spearman rho, largest and mean |difference| of two heatmaps over the cells both scored."""
    from scipy.stats import spearmanr  # here: scipy.stats fails to import where torch is blocked (fwrd-bench's test)

    both = np.isfinite(tiles) & np.isfinite(dense)
    a, b = tiles[both].astype(np.float64), dense[both].astype(np.float64)
    if a.size < 3:
        return {"cells": int(a.size), "spearman": None, "max_abs_diff": None, "mean_abs_diff": None}
    diff = np.abs(a - b)
    return {"cells": int(a.size), "spearman": round(float(spearmanr(a, b).statistic), 5),
            "max_abs_diff": round(float(diff.max()), 5), "mean_abs_diff": round(float(diff.mean()), 5)}


def dense_rows(targets: Sequence[Any], dense_raw: dict[tuple[int, int], list], e2e_rows: list[dict[str, Any]],
               heatmaps: dict[tuple[str, int], list]) -> list[dict[str, Any]]:
    """One row per (target, workers) that ran dense: its figure, the per-tile one and their ratio."""
    rows = []
    for (ti, w), runs in sorted(dense_raw.items()):
        samples = [s for s, _ in runs]
        summaries = [summary for _, summary in runs]
        figure = summarise([s.tiles_per_s for s in samples])
        per_tile = [r for r in e2e_rows if r["target"] == ti and r["workers"] == w]
        best = max(per_tile, key=lambda r: r["tiles_per_s"]["median"]) if per_tile else None
        reference = best["tiles_per_s"]["median"] if best else None
        geometry = summaries[0]["dense"]
        row = {
            "target": ti, "label": targets[ti].label, "workers": w, "tiles": samples[0].tiles,
            "tiles_per_s": figure,
            "slide_seconds": summarise([float(s["seconds"]["total"]) for s in summaries]),
            "region_side": geometry["region_side"], "margin": geometry["margin"], "regions": geometry["regions"],
            "pixels_ratio": round(geometry["tile_pixels"] / geometry["region_pixels"], 3),
            "per_tile_batch_size": best["batch_size"] if best else None,
            "per_tile_tiles_per_s": reference,
            "speedup": round(figure["median"] / reference, 3) if reference else None,
            "runtime_bottleneck": statistics.mode(s.get("bottleneck") or "-" for s in summaries),
        }
        if heatmaps.get(("tiles", ti)) and heatmaps.get(("dense", ti)):
            row["agreement"] = agreement(heatmaps["tiles", ti][0], heatmaps["dense", ti][0])
        rows.append(row)
    return rows
