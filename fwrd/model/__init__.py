"""The FW-RD network (teacher / one-class bottleneck / student), its anomaly maps and checkpoints."""

from fwrd.model.anomaly_map import cosine_distance_map, patch_score, summed_anomaly_map
from fwrd.model.checkpoint import import_reference, load_checkpoint, save_checkpoint
from fwrd.model.network import ReverseDistillation
from fwrd.model.weights import load_teacher_weights

__all__ = [
    "ReverseDistillation",
    "cosine_distance_map",
    "import_reference",
    "load_checkpoint",
    "load_teacher_weights",
    "patch_score",
    "save_checkpoint",
    "summed_anomaly_map",
]
