"""Dense scoring only for models validated for it at the geometry the runtime uses (issue 21.1).

A tile's dense score depends on the context the network sees around it, and that depends on the model:
a 64 px model trained on lone tiles ranks tumor inverted once it sees its surroundings (tile AUROC 0.02-0.04
against 0.97 per tile), and one trained with 32 px of context was right at 32 px (0.972) and wrong at the
runtime's 128 px margin (0.486). Training validates the context it trained on; a region pass shows every
tile at least the margin of context, and up to the whole region. So a model carries a record of how it
scored densely *in region passes* on annotated slides (`FWRDConfig.dense_validation`, written by
`fwrd-export MODEL --validate-dense SLIDES`, fwrd.export.dense_validation), and `fwrd-run --dense` refuses,
in one line saying what to do, a model

- without such a record,
- whose dense tile AUROC on it is clearly worse than its per-tile tile AUROC on the same tiles: lower by
  more than CLEARLY_WORSE (0.02, the AUROC change the int8 export gate accepts for a faster path), or
- asked to run at another margin than the record's (no --margin: the record's margin is used).

The record names the region side it was measured with too; a run may use another (a GPU's 4096 px), since
beyond the margin a window's context only grows where the network no longer sees it (the margin was
chosen so that where regions meet moves a score by less than 0.01: README, Dense scoring). There is no
flag to bypass any of this: a model that fails it is scored per tile.

    margin = dense_margin(config, settings.margin, "rd.onnx")       # ModelError, or the margin to run at
"""

from __future__ import annotations

import math
from typing import Any

from fwrd.errors import ModelError

CLEARLY_WORSE = 0.02  # dense tile AUROC more than this below the per-tile one: refused
MIN_TILES = 30  # tumor and normal tiles each that a record must rest on
RECORD_KEYS = ("margin", "region", "stride", "slides", "tiles", "tumor_tiles", "auroc_dense", "auroc_tiles",
               "threshold")


def validate_hint(source: str) -> str:
    """What to run to validate `source` (a plan: the graph it was built from, then the engine again)."""
    if source.lower().endswith((".plan", ".engine", ".trt")):
        return ("validate the ONNX graph it was built from (fwrd-export rd.onnx --validate-dense SLIDES "
                "--annotations DIR) and build the engine again from it")
    return f"validate it on annotated slides it was not trained on: fwrd-export {source} --validate-dense SLIDES --annotations DIR"


def check_record(record: Any, source: str) -> dict[str, Any]:
    """The dense-validation record, checked for the keys and values the runtime relies on."""
    if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
        raise ModelError(f"{source}: its dense-validation record is incomplete; {validate_hint(source)}")
    try:
        numbers = {k: float(record[k]) for k in RECORD_KEYS}
    except (TypeError, ValueError):
        raise ModelError(f"{source}: its dense-validation record holds a value that is not a number; "
                         f"{validate_hint(source)}") from None
    if not all(math.isfinite(v) for v in numbers.values()) or int(numbers["margin"]) % 32 or numbers["margin"] < 0:
        raise ModelError(f"{source}: its dense-validation record is not valid; {validate_hint(source)}")
    if min(numbers["tumor_tiles"], numbers["tiles"] - numbers["tumor_tiles"]) < MIN_TILES:
        raise ModelError(f"{source}: its dense validation rests on {int(numbers['tumor_tiles'])} tumor and "
                         f"{int(numbers['tiles'] - numbers['tumor_tiles'])} normal tiles, fewer than {MIN_TILES} "
                         f"of each; {validate_hint(source)} (more of them)")
    return record


def dense_margin(config: Any, margin: int | None, source: str) -> int:
    """The margin a dense run of this model uses (the one it was validated at); ModelError, in one line
    naming what to do, when the model was not validated for dense scoring, scores clearly worse dense than
    per tile, or `margin` (--margin) is not the validated one."""
    record = getattr(config, "dense_validation", None)
    if record is None:
        raise ModelError(f"{source} has not been validated for dense scoring at the runtime's geometry (how it "
                         f"ranks tumor in region passes is unknown: a model can invert there); {validate_hint(source)}"
                         "; or score it per tile (without --dense)")
    record = check_record(record, source)
    dense, tiles = float(record["auroc_dense"]), float(record["auroc_tiles"])
    geometry = f"{int(record['margin'])} px margin, regions up to {int(record['region'])} px"
    if dense < tiles - CLEARLY_WORSE:
        raise ModelError(f"{source} ranks tumor clearly worse dense than per tile (tile AUROC {dense:.3f} against "
                         f"{tiles:.3f} on {int(record['tiles'])} validation tiles, {geometry}): score it per tile "
                         "(without --dense), or train it with context (fwrd-patches --context) and validate it again")
    if margin is not None and margin != int(record["margin"]):
        raise ModelError(f"{source} was validated for dense scoring with a {geometry}; --margin {margin} was not: "
                         f"leave --margin out, or validate it at that margin (--validate-dense ... --margin {margin})")
    return int(record["margin"])


def dense_note(config: Any) -> str:
    """What `fwrd-run --dense` says about the model it scores with (local and on Ray)."""
    record = config.dense_validation
    if record is None:
        return "the model has not been validated for dense scoring (docs/dense.md): its slides will be refused"
    return (f"dense scoring validated with a {record.get('margin')} px margin, regions up to {record.get('region')} "
            f"px, on {record.get('slides')} slide(s), {record.get('tiles')} tiles: tile AUROC "
            f"{float(record.get('auroc_dense', math.nan)):.4f} dense, {float(record.get('auroc_tiles', math.nan)):.4f} "
            f"per tile; threshold {config.threshold_for(dense=True):g} (chosen on those dense scores)")
