"""Strict readers for the three CSVs evaluation takes: detections, `reference.csv` and slide scores.

- Detections (Camelyon16 task 2 and `fwrd-run`'s `detections.csv`): one `Confidence,X,Y` row per
  detection at level 0, **no header**. The organisers' reader would crash on a header or a malformed
  row (or, for a negative coordinate, silently index from the far edge of the mask); here each of these
  is a `DataError` naming the file and line. X and Y may be written as integers or decimals.
- `reference.csv` (Camelyon16): no header, `name,Tumor|Normal[,...]`, read as utf-8-sig.
- Slide scores: `fwrd-run`'s `slides.csv` (header `slide,score,status,error`) or a Camelyon16 task-1
  submission (no header, `name,probability`).

Slide names are matched case-insensitively (the official reference writes `Test_001`, the files are
`test_001.tif`): every reader returns dicts keyed by `slide_key(name)`.

    dets = read_detections("out/test_001/detections.csv")   # Detections(probs, x, y)
    ref = read_reference("reference.csv")                    # {"test_001": ("Test_001", True), ...}
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwrd.errors import DataError, InputNotFound
from fwrd.safe_text import from_csv_cell


def slide_key(name: str) -> str:
    """The key slides are matched by: case-insensitive, surrounding blanks ignored."""
    return name.strip().lower()


@dataclass(frozen=True)
class Detections:
    """Detections of one slide: probability (float64) and level-0 X (column), Y (row) per row."""

    probs: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.probs.size)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros(0), np.zeros(0), np.zeros(0))


@dataclass(frozen=True)
class SlideScore:
    """One row of a slide-score file; `score` is None when the run produced none (a failed slide)."""

    name: str
    score: float | None
    status: str = ""
    error: str = ""


def _read_text(path: Path, what: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_detections(path: str | Path) -> Detections:
    """Read one slide's `Confidence,X,Y` rows; blank lines are skipped, anything else malformed raises."""
    path = Path(path)
    probs: list[float] = []
    xs: list[float] = []
    ys: list[float] = []
    for lineno, line in enumerate(_read_text(path, "detections file").splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        values = [_number(f) for f in fields]
        if len(fields) == 3 and all(v is None for v in values):
            raise DataError(
                f"{path}:{lineno}: looks like a header line ({line.strip()!r}); Camelyon16 detection "
                "files have no header, only Confidence,X,Y rows"
            )
        if len(fields) != 3 or any(v is None for v in values):
            raise DataError(
                f"{path}:{lineno}: malformed detection {line.strip()!r}; expected three finite numbers "
                "Confidence,X,Y"
            )
        prob, x, y = values  # type: ignore[misc]
        if x < 0 or y < 0:  # type: ignore[operator]
            raise DataError(f"{path}:{lineno}: negative coordinate in {line.strip()!r}")
        probs.append(prob)  # type: ignore[arg-type]
        xs.append(x)  # type: ignore[arg-type]
        ys.append(y)  # type: ignore[arg-type]
    return Detections(*(np.asarray(values, dtype=np.float64) for values in (probs, xs, ys)))


def read_reference(path: str | Path) -> dict[str, tuple[str, bool]]:
    """Read `reference.csv` -> {key: (name as written, is_tumor)}; duplicates and odd labels raise."""
    path = Path(path)
    reference: dict[str, tuple[str, bool]] = {}
    for lineno, row in enumerate(csv.reader(_read_text(path, "reference file").splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        name = row[0].strip()
        label = row[1].strip().lower() if len(row) > 1 else ""
        if not name or label not in ("tumor", "normal"):
            raise DataError(
                f"{path}:{lineno}: expected 'name,Tumor' or 'name,Normal' (no header), got {','.join(row)!r}"
            )
        key = slide_key(name)
        if key in reference:
            raise DataError(f"{path}:{lineno}: slide {name!r} is listed twice")
        reference[key] = (name, label == "tumor")
    if not reference:
        raise DataError(f"{path}: the reference lists no slides")
    return reference


def read_slide_scores(path: str | Path) -> dict[str, SlideScore]:
    """Read slide scores: `fwrd-run`'s slides.csv (with header) or a headerless `name,probability` file."""
    path = Path(path)
    rows = [r for r in csv.reader(_read_text(path, "slide scores file").splitlines()) if "".join(r).strip()]
    if not rows:
        raise DataError(f"{path}: no slide scores")
    header = [h.strip().lower() for h in rows[0]]
    if "slide" in header:
        if "score" not in header:
            raise DataError(f"{path}: the header has no 'score' column")
        columns = {h: i for i, h in enumerate(header)}
        body, first_line = rows[1:], 2
    else:
        columns = {"slide": 0, "score": 1}
        body, first_line = rows, 1
    scores: dict[str, SlideScore] = {}
    for lineno, row in enumerate(body, start=first_line):
        cell = {h: (row[i].strip() if i < len(row) else "") for h, i in columns.items()}
        if "slide" in header:  # fwrd-run's table: cells a spreadsheet would run carry a leading ' (safe_text)
            cell = {h: (v if h == "score" else from_csv_cell(v)) for h, v in cell.items()}
        name = cell["slide"]
        if not name or len(row) < 2:
            raise DataError(f"{path}:{lineno}: malformed row {','.join(row)!r}; expected slide,score")
        text = cell["score"]
        score = _number(text) if text else None
        if text and score is None:
            raise DataError(f"{path}:{lineno}: score {text!r} of slide {name!r} is not a finite number")
        key = slide_key(name)
        if key in scores:
            raise DataError(f"{path}:{lineno}: slide {name!r} is listed twice")
        scores[key] = SlideScore(name, score, cell.get("status", ""), cell.get("error", ""))
    if not scores:
        raise DataError(f"{path}: no slide scores")
    return scores


def find_detection_files(folder: str | Path) -> dict[str, tuple[str, Path]]:
    """Detection CSVs of a folder -> {key: (slide name, path)}.

    Two layouts: `fwrd-run`'s `DIR/<slide>/detections.csv` (used whenever present, so the run's own
    `slides.csv` is not taken for a slide), else a Camelyon16 submission's `DIR/<slide>.csv`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFound(f"detections folder not found: {folder}")
    nested = sorted(p for p in folder.glob("*/detections.csv") if p.is_file())
    candidates = [(p.parent.name, p) for p in nested] or [
        (p.stem, p) for p in sorted(folder.glob("*.csv")) if p.is_file()
    ]
    found: dict[str, tuple[str, Path]] = {}
    for name, path in candidates:
        key = slide_key(name)
        if key in found:
            raise DataError(f"two detection files for slide {name}: {found[key][1]} and {path}")
        found[key] = (name, path)
    return found
