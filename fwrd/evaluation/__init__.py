"""Evaluation exactly as Camelyon16 scored it, torch-free.

- `froc`: lesion-level FROC, the organisers' `Evaluation_FROC.py` step for step (quirks included,
  plain bugs fixed and documented there).
- `masks`: tumor masks at level 5 from mask TIFFs (tumor 255 or 1) or ASAP XML.
- `detections`: strict readers for detection CSVs, `reference.csv` and slide scores.
- `roc`: ROC curve and AUC with scikit-learn's tie handling; the slide-level task.
- `patches`: patch accuracy at a threshold, the best threshold, AUROC (the paper's Table 2).
- `plots` and `report`: FROC/ROC figures drawn with Pillow, JSON and printed tables.

The command line is `fwrd-eval` (`fwrd/cli/evaluate.py`).
"""

from fwrd.evaluation.detections import (
    Detections,
    read_detections,
    read_reference,
    read_slide_scores,
)
from fwrd.evaluation.froc import (
    FP_RATES,
    evaluate_lesions,
    evaluation_mask,
    froc_curve,
    froc_score,
    itc_labels,
    major_axis_lengths,
    match_slide,
)
from fwrd.evaluation.masks import find_masks, load_mask, read_mask_tiff
from fwrd.evaluation.patches import best_threshold, patch_metrics
from fwrd.evaluation.roc import evaluate_slides, roc_auc, roc_curve

__all__ = [
    "FP_RATES",
    "Detections",
    "best_threshold",
    "evaluate_lesions",
    "evaluate_slides",
    "evaluation_mask",
    "find_masks",
    "froc_curve",
    "froc_score",
    "itc_labels",
    "load_mask",
    "major_axis_lengths",
    "match_slide",
    "patch_metrics",
    "read_detections",
    "read_mask_tiff",
    "read_reference",
    "read_slide_scores",
    "roc_auc",
    "roc_curve",
]
