"""Dense scoring next to per-tile scoring on a synthetic cohort: quality, agreement, and where they differ.

Scores the cohort's slides twice with `fwrd-run` (per tile, then `--dense`, same model and grid),
evaluates both runs with `fwrd-eval` (lesion FROC, slide AUROC), and adds what fwrd-eval does not give:
the tile AUROC against the lesion masks (a tile is tumor when the mask marks the pixel at its centre),
Spearman's correlation of the two tile scorings, and a picture per tumor slide of both heatmaps and their
difference with the lesion outlines (where the two scorings disagree: tissue borders, lesion edges).

    fwrd synth cohort/ --tumor 2 --normal 2 --width 1280 --height 1280 --tumor-scale 4 --seed 9176
    python benchmarks/dense_quality.py --model rd_fp32.onnx --cohort cohort --stride 16 --work runs/ \
        --results benchmarks/results/cpu-intel-xeon-2c-dense-quality-64px

(1280 px slides at --tumor-scale 4 are about the smallest whose lesions are not all ITCs to fwrd-eval.)
Besides fwrd-eval's slide AUROC (slide score: mean of the tiles at or above the threshold each run used: the
model's per-tile threshold, and for dense its dense threshold when it was trained with context, else the
per-tile one) it gives the slide AUROC of the highest tile score, which needs none.
Both runs use --resume, so an interrupted study continues where it stopped. Torch-free. Its dense run is a
`fwrd-run --dense`, which takes only a model validated for dense scoring (docs/dense.md): validate the model
first with `fwrd-export MODEL --validate-dense` (which itself reports the tile AUROC both ways).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.stats import spearmanr

from fwrd.benchmark.machine import describe_machine
from fwrd.evaluation.masks import MaskSource, find_masks, load_mask
from fwrd.evaluation.roc import roc_auc
from fwrd.evaluation.tile_labels import LABEL_LEVEL, tile_labels
from fwrd.runtime.outputs.colormap import apply_colormap

MASK_LEVEL = LABEL_LEVEL  # 4 px mask pixels: finer than any grid step studied here


def run(command: str, args: list) -> None:
    """Run one fwrd console command in-process."""
    import importlib

    module = importlib.import_module(f"fwrd.cli.{command}")
    module.command.main([str(a) for a in args], prog_name=command, standalone_mode=False)


def heatmaps(run_dir: Path) -> dict[str, tuple[np.ndarray, dict]]:
    out = {}
    for folder in sorted(p for p in run_dir.iterdir() if (p / "summary.json").is_file()):
        out[folder.name] = (np.load(folder / "heatmap.npy"), json.loads((folder / "summary.json").read_text()))
    return out


def labels_of(source: MaskSource | None, grid: np.ndarray, summary: dict) -> np.ndarray:
    """bool per heatmap cell: the lesion mask at the centre of the cell's tile (False without a mask)."""
    mask = None if source is None else load_mask(source, level=MASK_LEVEL).tumor
    return tile_labels(mask, grid.shape, summary["stride_level0"], summary["tile_level0"], MASK_LEVEL)


def picture(path: Path, tiles: np.ndarray, dense: np.ndarray, labels: np.ndarray) -> None:
    """Per-tile heatmap | dense heatmap (each over its own 1-99 % range) | dense - per tile less its median
    (blue lower, red higher: where the two differ beyond a shift of the whole slide), lesion cells outlined."""
    offset = float(np.nanmedian(dense - tiles))
    diff = dense - tiles - offset
    span = float(np.nanmax(np.abs(diff))) or 1.0
    panels = [apply_colormap(m, *np.nanquantile(m, [0.01, 0.99])) for m in (tiles, dense)]
    signed = np.full(diff.shape + (3,), 255, np.uint8)
    ok = np.isfinite(diff)
    t = np.clip(diff / span, -1, 1)
    signed[ok & (t > 0)] = (255 - 255 * t[ok & (t > 0)][:, None] * np.array([0, 1, 1])).astype(np.uint8)
    signed[ok & (t < 0)] = (255 + 255 * t[ok & (t < 0)][:, None] * np.array([1, 1, 0])).astype(np.uint8)
    panels.append(signed)
    edge = labels & ~(np.roll(labels, 1, 0) & np.roll(labels, -1, 0) & np.roll(labels, 1, 1) & np.roll(labels, -1, 1))
    scale = max(1, 400 // max(tiles.shape))
    images = []
    for panel in panels:
        panel = panel.copy()
        panel[edge] = (0, 0, 0)
        images.append(Image.fromarray(panel).resize((panel.shape[1] * scale, panel.shape[0] * scale), Image.NEAREST))
    h = images[0].height
    canvas = Image.new("RGB", (sum(i.width for i in images) + 20 * (len(images) - 1), h + 24), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for image, title in zip(images, ("per tile", "dense", f"dense - per tile - ({offset:+.2f}), +-{span:.2f}")):
        canvas.paste(image, (x, 24))
        draw.text((x + 4, 4), title, fill="black")
        x += image.width + 20
    canvas.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True, help="a `fwrd synth` folder")
    parser.add_argument("--stride", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True, help="where the two runs go")
    parser.add_argument("--results", type=Path, required=True, help="stem of the .md, .json and -<slide>.png written")
    parser.add_argument("--region", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cohort, work = args.cohort, args.work
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for mode in ("tiles", "dense"):
        extra = ["--dense"] + (["--region", args.region] if args.region else []) if mode == "dense" else []
        run("run", [cohort / "slides", "--model", args.model, "--stride", args.stride, "--out",
                                    work / mode, "--workers", args.workers, "--resume", "--quiet", *extra])
        run("evaluate", [work / mode, "--reference", cohort / "reference.csv", "--masks", cohort / "masks",
                         "--slide-dir", cohort / "slides"])
    maps = {mode: heatmaps(work / mode) for mode in ("tiles", "dense")}
    scores = {mode: [] for mode in maps}
    labels_all, summary_rows, pictures = [], [], []
    thresholds = {mode: next(iter(maps[mode].values()))[1]["threshold"] for mode in maps}
    masks = find_masks([cohort / "masks"])
    for name, (tiles_map, summary) in maps["tiles"].items():
        dense_map, dense_summary = maps["dense"][name]
        labels = labels_of(masks.get(name.lower()), tiles_map, summary)
        scored = np.isfinite(tiles_map) & np.isfinite(dense_map)
        labels_all.append(labels[scored])
        scores["tiles"].append(tiles_map[scored])
        scores["dense"].append(dense_map[scored])
        summary_rows.append({"slide": name, "tiles": int(scored.sum()), "tumor_tiles": int(labels[scored].sum()),
                             "score_tiles": summary["score"], "score_dense": dense_summary["score"],
                             "seconds_tiles": summary["seconds"]["total"],
                             "seconds_dense": dense_summary["seconds"]["total"]})
        if labels.any():
            png = args.results.with_name(f"{args.results.name}-{name}.png")
            picture(png, tiles_map, dense_map, labels)
            pictures.append(png.name)
    labels = np.concatenate(labels_all)
    names = list(maps["tiles"])
    truth = dict(line.split(",")[:2] for line in (cohort / "reference.csv").read_text().split())
    slide_truth = np.array([truth[n].strip().lower() == "tumor" for n in names])
    a, b = np.concatenate(scores["tiles"]), np.concatenate(scores["dense"])
    evals = {mode: {k: json.loads((work / mode / "eval" / f"{k}.json").read_text()) for k in ("froc", "slides")}
             for mode in maps}
    record = {
        "model": str(args.model), "cohort": str(cohort), "stride": args.stride, "threshold": thresholds,
        "machine": describe_machine(), "tiles": int(len(a)), "tumor_tiles": int(labels.sum()),
        "tile_auroc": {"tiles": roc_auc(labels, a), "dense": roc_auc(labels, b)},
        "lesion_froc": {m: evals[m]["froc"]["froc"] for m in evals},
        "slide_auroc": {m: evals[m]["slides"]["auc"] for m in evals},
        "slide_auroc_max_tile": {m: roc_auc(slide_truth, np.array([float(np.nanmax(maps[m][n][0])) for n in names]))
                                 for m in maps},  # threshold-free: the model's threshold is a per-tile one
        "tiles_above_threshold": {m: int(np.count_nonzero(s >= thresholds[m])) for m, s in (("tiles", a), ("dense", b))},
        "mean_score": {m: {"tumor": float(s[labels].mean()) if labels.any() else None,
                           "normal": float(s[~labels].mean())} for m, s in (("tiles", a), ("dense", b))},
        "spearman": float(spearmanr(a, b).statistic),
        "abs_diff": {"mean": float(np.abs(a - b).mean()), "p99": float(np.quantile(np.abs(a - b), 0.99)),
                     "max": float(np.abs(a - b).max())},
        "diff_at_lesion_vs_not": {"tumor_mean": float((b - a)[labels].mean()) if labels.any() else None,
                                  "normal_mean": float((b - a)[~labels].mean())},
        "slide_seconds": {m: round(sum(r[f"seconds_{m}"] for r in summary_rows), 1) for m in maps},  # first scoring
        "slides": summary_rows, "pictures": pictures,
        "dense_geometry": next(iter(maps["dense"].values()))[1]["dense"],
    }
    args.results.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| figure | per tile | dense |", "|---|---|---|"]
    lines += [f"| tile AUROC vs lesion masks ({len(a)} tiles, {int(labels.sum())} tumor) | "
              f"{record['tile_auroc']['tiles']:.4f} | {record['tile_auroc']['dense']:.4f} |",
              f"| lesion FROC | {record['lesion_froc']['tiles']:.4f} | {record['lesion_froc']['dense']:.4f} |",
              f"| slide AUROC (fwrd-eval: slide score = mean of tiles >= the run's threshold) | "
              f"{record['slide_auroc']['tiles']:.4f} | {record['slide_auroc']['dense']:.4f} |",
              f"| slide AUROC, slide score = highest tile score (no threshold) | "
              f"{record['slide_auroc_max_tile']['tiles']:.4f} | {record['slide_auroc_max_tile']['dense']:.4f} |",
              f"| tiles >= the run's threshold | {record['tiles_above_threshold']['tiles']} "
              f"({thresholds['tiles']:g}) | {record['tiles_above_threshold']['dense']} ({thresholds['dense']:g}) |",
              f"| mean tile score, tumor / normal tiles | {record['mean_score']['tiles']['tumor']:.3f} / "
              f"{record['mean_score']['tiles']['normal']:.3f} | {record['mean_score']['dense']['tumor']:.3f} / "
              f"{record['mean_score']['dense']['normal']:.3f} |",
              f"| seconds to score the cohort (sum of the slides' summary.json) | {record['slide_seconds']['tiles']:.0f} | "
              f"{record['slide_seconds']['dense']:.0f} |"]
    lines.append(f"| Spearman of the two tile scorings; mean / max abs difference | {record['spearman']:.4f} | "
                 f"{record['abs_diff']['mean']:.4f} / {record['abs_diff']['max']:.4f} |")
    print("\n".join(lines))
    print(f"Spearman {record['spearman']:.4f}; |dense - per tile| mean {record['abs_diff']['mean']:.4f}, "
          f"max {record['abs_diff']['max']:.4f}")
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
