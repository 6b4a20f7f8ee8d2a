"""Torch-free streaming whole-slide scoring: the `fwrd-run` pipeline.

The data flow shows in the module names:

    plan.py       slide -> tissue mask -> tile grid -> work units (file-tile-aligned blocks)
    regions.py    --dense: the grid's points grouped into regions (one network pass each), with margins
    decode.py     work units -> decode workers (own TileReader each) -> reusable uint8 batch buffers
                  (--dense: regions -> one reusable buffer per region in flight)
    infer.py      ready batches -> backend.run_batches() -> scores, while the next batches decode
                  (--dense: regions -> backend.run_regions() -> per-scale maps -> window_scores.py)
    outputs/      scores -> tiles.csv, heatmap.npy/png, overlay.png, detections.csv, tumor.geojson,
                  summary.json (each written atomically, in a staging folder swapped in whole);
                  slides_table.py: OUT/slides.csv rebuilt from the folder under a lock
    slide_job.py  score_slide(): one slide end to end, a plain function
    cohort.py     many slides: sharding, resume, update_slides_table() after each
    cluster.py    many slides on a Ray cluster (`fwrd-run --ray`; the only module that imports Ray, and
                  only then): actors call cohort.score_or_fail, the driver update_slides_table() once

A driver of its own (another cluster engine) calls score_slide per slide and update_slides_table(out,
failures) after, exactly as cohort.py does.

Nothing here imports torch. Public names are imported lazily so that importing one backend module
does not pull in the slide readers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "open_backend": "fwrd.runtime.backends",
    "RunSettings": "fwrd.runtime.settings",
    "SlideResult": "fwrd.runtime.slide_job",
    "score_slide": "fwrd.runtime.slide_job",
    "score_cohort": "fwrd.runtime.cohort",
    "update_slides_table": "fwrd.runtime.outputs.slides_table",
    "find_slides": "fwrd.slide.discover",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fwrd.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
