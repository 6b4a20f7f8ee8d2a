"""patches.csv and the patch files carry a slide's name as text: never a spreadsheet formula, never a terminal
command (a slide's name comes from someone else's file)."""

from __future__ import annotations

import csv
import os

from fwrd.safe_text import from_csv_cell
from fwrd.training.patches import extract_patches

HOSTILE = "=HYPERLINK(\"http:\")\x1b[2J"


def test_a_hostile_slide_name_is_written_as_text(synthetic_tif, tmp_path):
    slide = tmp_path / "in" / f"{HOSTILE}.tif"
    slide.parent.mkdir()
    os.symlink(synthetic_tif.path, slide)
    out = tmp_path / "patches"
    result = extract_patches([slide.parent], out, annotations_dir=None, n_normal=4, n_tumor=0, tile=64)
    assert result.counts["normal"] == 4
    with open(out / "patches.csv", newline="") as fh:
        names = [row["slide"] for row in csv.DictReader(fh)]
    assert len(names) == 4
    assert all(n == "'" + HOSTILE for n in names)  # a spreadsheet shows it; it runs nothing
    assert {from_csv_cell(n) for n in names} == {HOSTILE}  # and the name is recovered exactly
    files = sorted(p.name for p in (out / "normal").iterdir())
    assert len(files) == 4 and not any("\x1b" in f for f in files)
    assert all(f.startswith('=HYPERLINK("http:")\\x1b[2J_') for f in files)
