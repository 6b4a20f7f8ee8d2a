"""Which epoch becomes model.pt, and the sentence that says why.

The paper keeps the epoch with the best validation accuracy; AUROC breaks ties (a set without tumor
patches has none, ranked -1); a full tie keeps the earlier epoch, so more training never replaces
a model unless validation prefers it. Short runs on easy data tie often (accuracy and AUROC 1.0), so
the log names the kept epoch and the rule every time.

    best = BestEpoch()
    is_best, why = best.consider(epoch=2, accuracy=1.0, auroc=1.0)
    # (False, "ties epoch 1 (accuracy 1.0000, AUROC 1.0000): model.pt stays epoch 1, a tie keeps the earlier epoch")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NO_AUROC = -1.0  # rank of "no AUROC" (validation without tumor patches)


@dataclass
class BestEpoch:
    epoch: int | None = None
    key: tuple[float, float] = (float("-inf"), float("-inf"))  # (accuracy, AUROC or NO_AUROC)

    @classmethod
    def resumed(cls, key: Any, epoch: Any, history: list[dict[str, Any]]) -> "BestEpoch":
        """From model.last.pt; checkpoints without `best_epoch` take it from their history."""
        if key is None:
            return cls()
        if epoch is None:
            epoch = next((r["epoch"] for r in reversed(history) if r.get("best")), None)
        return cls(None if epoch is None else int(epoch), (float(key[0]), float(key[1])))

    def consider(self, epoch: int, accuracy: float, auroc: float | None) -> tuple[bool, str]:
        """(whether `epoch` becomes model.pt, why) under the rule above."""
        key = (float(accuracy), NO_AUROC if auroc is None else float(auroc))
        previous, before = self.epoch, self.key
        if previous is None:
            self.epoch, self.key = epoch, key
            return True, "kept as model.pt (first epoch)"
        if key > before:
            self.epoch, self.key = epoch, key
            if key[0] > before[0]:
                return True, f"kept as model.pt (accuracy {key[0]:.4f} beats {before[0]:.4f} of epoch {previous})"
            return True, (f"kept as model.pt (accuracy ties epoch {previous}; AUROC {_auroc(key[1])} beats "
                          f"{_auroc(before[1])})")
        if key == before:
            return False, (f"ties epoch {previous} (accuracy {key[0]:.4f}, AUROC {_auroc(key[1])}): model.pt "
                           f"stays epoch {previous}, a tie keeps the earlier epoch")
        return False, (f"model.pt stays epoch {previous} (accuracy {before[0]:.4f}, AUROC {_auroc(before[1])}; "
                       "the best accuracy wins, AUROC breaks ties)")


def _auroc(value: float) -> str:
    return "n/a" if value == NO_AUROC else f"{value:.4f}"
