"""QC on painted artifacts: per kind, how many tiles QC flags and how many are called tumour, with QC off and on.

Paints `fwrd.slide.synthetic_artifacts.paint_test_card` (blue pen line, green pen circle, out-of-focus square,
fold, air bubble, dirt specks) on (a) a synthetic normal slide and (b) the real H&E crop in tests/data, writes
each as a slide, scores it with `fwrd-run` twice (`--qc off`, `--qc on`) and counts, per kind, the tiles at
least half painted (dirt: any speck), how many QC flagged, how many are called (>= threshold after gating),
and the detections lying on painted pixels; clean tiles (nothing painted) give the share still scored. Also
the QC cost: summary.json's seconds (QC features, summed over decode workers, and judging) against the run.

    python benchmarks/qc_artifacts.py --model rd.onnx --out /tmp/qc-bench [--stride 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fwrd.runtime.backends import open_backend
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide.annotations import Annotations, rasterize
from fwrd.slide.synthetic import write_rgb_slide
from fwrd.slide.synthetic_render import plan_layout, render

REAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "cmu1_small_region_crop.jpg"


def slides(out: Path, size: int) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    made = {}
    layout = plan_layout(np.random.default_rng([7, 0]), size, size, 0, False, 1.0, 1.8)
    rgb = render(np.random.default_rng([7, 1]), layout, rasterize(Annotations(), (size, size), 1.0))
    truth = paint.paint_test_card(rgb, np.random.default_rng(0))
    made["synthetic"] = (write_rgb_slide(out / "synthetic_artifacts.svs", rgb, mpp=0.243), truth)
    real = np.array(Image.open(REAL).convert("RGB"))
    truth = paint.paint_test_card(real, np.random.default_rng(0))
    made["real"] = (write_rgb_slide(out / "real_artifacts.svs", real, mpp=0.499), truth)
    return made


def count(folder: Path, truth: dict[str, np.ndarray], tile0: int, threshold: float) -> dict:
    rows = [line.split(",") for line in (folder / "tiles.csv").read_text().splitlines()[1:]]
    xy = np.array([(int(r[0]), int(r[1])) for r in rows])
    score = np.array([float(r[2]) for r in rows])
    kind = np.array([r[3] if len(r) > 3 else "ok" for r in rows])
    called = (score >= threshold) & (kind == "ok")
    share = {k: np.array([m[y:y + tile0, x:x + tile0].mean() for x, y in xy]) for k, m in truth.items()}
    painted = np.zeros(len(xy), bool)
    for s in share.values():
        painted |= s > 0
    out = {}
    for k, s in share.items():
        sel = s > 0 if k == "dirt" else s >= 0.5
        out[k] = {"tiles": int(sel.sum()), "flagged": int((kind[sel] != "ok").sum()), "called": int(called[sel].sum())}
    out["clean"] = {"tiles": int((~painted).sum()), "flagged": int((kind[~painted] != "ok").sum()),
                    "called": int(called[~painted].sum())}
    inside = 0
    union = np.zeros_like(next(iter(truth.values())))
    for m in truth.values():
        union |= m
    for line in (folder / "detections.csv").read_text().splitlines():
        _, x, y = (float(v) for v in line.split(","))
        inside += bool(union[min(int(y), union.shape[0] - 1), min(int(x), union.shape[1] - 1)])
    out["detections_on_artifacts"] = inside
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--stride", type=int, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    record = {}
    with open_backend(args.model, threads=2) as backend:
        for name, (path, truth) in slides(args.out / "slides", args.size).items():
            settings = {}
            for qc in (False, True):
                began = time.perf_counter()
                result = score_slide(path, backend, args.out / ("on" if qc else "off"),
                                     RunSettings(progress=False, qc=qc, stride=args.stride, batch_size=16))
                s = result.summary
                settings["on" if qc else "off"] = {
                    "status": result.status, "reason": result.error, "wall_s": round(time.perf_counter() - began, 2),
                    "seconds": s["seconds"], "tiles": s["tiles_scored"], "excluded": s.get("tiles_excluded"),
                    "counts": count(result.out_dir, truth, s["tile_level0"], s["threshold"]),
                }
            record[name] = settings
    (args.out / "qc_artifacts.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
