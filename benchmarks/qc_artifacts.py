"""QC on painted artifacts, on a test cohort and under a stain shift: what QC flags, what it changes in the calls,
and what it costs.

1. Painted artifacts (`paint`): `fwrd.slide.synthetic_artifacts.paint_test_card` (blue pen line, green pen
   circle, out-of-focus square, fold, air bubble, dirt specks) on a synthetic normal slide, on the real H&E crop
   in tests/data and, with `--real-extra SLIDE`, on regions of another real slide outside that crop (not held
   out: the thresholds were chosen on these and on synthetic seeds the tests do not use; `--seed` paints with
   other positions) and, with `--real-image IMAGE` (a PNG or JPEG; repeatable), on whole real images
   (tests/data/tiatoolbox_target_image.jpg: dense carcinoma, development data since QC's second round;
   tests/data/stardist_histo.jpg: dense tumour, held out, small: `--min-side 1000` mirrors it out to the
   card's size). Each is scored once with QC
   on (QC changes no score, so the QC-off outputs are derived from the raw scores); per kind, the tiles the
   artifact covers (at least half of the tile's pixels painted and, for pen, fold and bubble, visibly
   changed: a fold over glass is no fold; blur: the blurred square; dirt: any speck), how many QC flagged
   and how many are called (>= threshold after gating), and the detections lying on painted pixels; clean
   tiles (nothing painted) give the share still scored.
2. Test cohort (`--cohort N`): a synthetic cohort (N tumour + 1 normal slides, seeds apart from the training
   cohort's) scored with QC off and on: tile AUROC (labels from the annotations, a tile is tumour when at
   least half of it is) and lesion FROC (fwrd-eval's) on each, so QC's effect on tumour detection is measured.
3. Stain shift (`--stain`): the cohort's normal and first tumour slide with tissue pixels moved in HED space
   (`--stain-gains H,E ...`, default haematoxylin x1.35, eosin x0.7: a darker, bluer stain) and scored again:
   calls and QC flags before/after, tile by tile how far the scores moved and how many calls flipped.
4. Cost: summary.json's seconds (QC features, summed over the decode workers; judging) against the run's wall
   time, inference and decoding.
5. Own-image models (`--own-model`): each real image is also scored, QC on and off, by a normal model trained on
   its own unpainted pixels (benchmarks/qc_own_model.py: the demo's recipe, random teacher, threshold from
   fwrd-train's validation; cached under OUT/own_models), so that "called" on real pixels means something: the
   shared model calls almost every real tile. The clean tiles called are that model's false calls on the very
   tissue it was trained and thresholded on (optimistic).

    python benchmarks/qc_artifacts.py --model rd.onnx --out /tmp/qc-bench [--real-extra CMU-1-Small-Region.svs]
        [--real-image tests/data/stardist_histo.jpg [--only-real-images] [--min-side 1000]] [--bubbles 12]
        [--glass-margin 0.15] [--cohort 3] [--stain [--stain-gains 1.35,0.7 0.7,1.35]] [--threads 2] [--resume]
        [--own-model [--own-patches 200] [--own-epochs 1]]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from qc_own_model import OwnRecipe, own_model

from fwrd.config import QCThresholds
from fwrd.evaluation.roc import roc_auc
from fwrd.runtime.backends import open_backend
from fwrd.runtime.outputs.detections import write_detections
from fwrd.runtime.outputs.heatmap import CellGeometry
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import score_slide
from fwrd.slide import synthetic_artifacts as paint
from fwrd.slide.annotations import Annotations, load_asap_xml, rasterize
from fwrd.slide.reader import open_slide
from fwrd.slide.synthetic import make_cohort, write_rgb_slide
from fwrd.slide.synthetic_render import plan_layout, render

REAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "cmu1_small_region_crop.jpg"
CROP = (600, 1200, 1024)  # where the vendored crop lies in CMU-1-Small-Region (x, y, side)
CHANGED = 8  # a painted pixel counts when some channel moved by more than this
GLASS = (245.0, 244.0, 242.0)  # bare glass of the CMU crop (tests/data), for --glass-margin
MARGIN = 24  # pixels between an extra bubble (--bubbles) and any other painted artifact


def painted_slides(out: Path, size: int, seed: int, real_extra: Path | None, mpp: float,
                   real_images: tuple[Path, ...] = (), only_real_images: bool = False,
                   min_side: int = 0, bubbles: int = 0, glass_margin: float = 0.0,
                   clean: dict | None = None) -> dict[str, tuple[Path, dict]]:
    """name -> (slide path, {kind: bool mask of the pixels the artifact visibly changed}). Every slide is written
    at `mpp` (the model's): the real pixels (0.499 um/px) are scored as if they were at the model's resolution,
    since fwrd never enlarges a slide coarser than the model. `glass_margin` > 0: each `--real-image`, once
    painted, is laid on glass (`on_glass`). `clean`, if given, receives name -> the unpainted pixels."""
    images = {}
    if not only_real_images:
        layout = plan_layout(np.random.default_rng([seed, 0]), size, size, 0, False, 1.0, 1.8)
        images["synthetic"] = render(np.random.default_rng([seed, 1]), layout,
                                     rasterize(Annotations(), (size, size), 1.0))
        images["real"] = np.array(Image.open(REAL).convert("RGB"))
    if real_extra is not None and not only_real_images:
        with open_slide(real_extra) as slide:
            whole = slide.read_region((0, 0), 0, slide.dimensions)
        x, y, side = CROP
        images["real_heldout_top"] = np.ascontiguousarray(whole[:y - 100, 400:2000])
        images["real_heldout_bottom"] = np.ascontiguousarray(whole[y + side + 6:, 400:2000])
    for image in real_images:
        images[f"real_{image.stem}"] = mirrored_to(np.array(Image.open(image).convert("RGB")), min_side)
    made = {}
    for name, rgb in images.items():
        before = rgb.copy()
        if clean is not None:
            clean[name] = before
        truth = paint.paint_test_card(rgb, np.random.default_rng(seed), pen_width=max(48, rgb.shape[0] // 40))
        if bubbles:
            truth["bubble"] |= extra_bubbles(rgb, np.random.default_rng([seed, 2]), bubbles, truth)
        changed = np.abs(rgb.astype(np.int16) - before).max(axis=2) > CHANGED
        truth = {k: m if k in ("dirt", "blur") else m & changed for k, m in truth.items()}
        if glass_margin > 0 and name.startswith("real_") and name[5:] in {i.stem for i in real_images}:
            rgb, truth = on_glass(rgb, truth, glass_margin, np.random.default_rng([seed, 3]))
        made[name] = (write_rgb_slide(out / f"{name}_artifacts.svs", rgb, mpp=mpp), truth)
    return made


def extra_bubbles(rgb: np.ndarray, rng: np.random.Generator, count: int, truth: dict[str, np.ndarray],
                  radius: tuple[float, float] = (0.03, 0.08), tries: int = 500) -> np.ndarray:
    """Paint `count` more air bubbles (radius a fraction `radius` of the image's shorter side, centre anywhere)
    where they touch no artifact already painted (`truth`'s masks, MARGIN pixels apart); the mask of all of them. The
    card holds one bubble (1-2 tiles per image): these make a sample of dozens, drawn from `rng` (the seed), on
    whatever tissue, glass or edge they land."""
    h, w = rgb.shape[:2]
    taken = np.zeros((h, w), bool)
    for mask in truth.values():
        taken |= mask
    out = np.zeros((h, w), bool)
    for _ in range(count):
        for _ in range(tries):
            r = rng.uniform(*radius) * min(h, w)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            margin = r + MARGIN
            y0, y1, x0, x1 = (max(0, int(cy - margin)), min(h, int(cy + margin) + 1),
                              max(0, int(cx - margin)), min(w, int(cx + margin) + 1))
            if not taken[y0:y1, x0:x1].any():
                break
        else:
            break  # no free place left
        painted = paint.bubble(rgb, (cx, cy), r)
        taken |= painted
        taken[y0:y1, x0:x1] = True
        out |= painted
    return out


def mirrored_to(rgb: np.ndarray, side: int) -> np.ndarray:
    """`rgb` extended by mirror images of itself (centred) to at least `side` pixels a side: the card paints at
    fractions of the image, so on a small image its artifacts would shrink to a tile or two (a fold of 30 um);
    mirroring keeps real pixels and no seam of colour or focus."""
    h, w = rgb.shape[:2]
    dy, dx = max(0, side - h), max(0, side - w)
    if not dy and not dx:
        return rgb
    return np.pad(rgb, ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2), (0, 0)), mode="symmetric")


def on_glass(rgb: np.ndarray, truth: dict[str, np.ndarray], margin: float,
             rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`rgb` laid in the middle of bare glass `margin` x its longer side wide on every side (GLASS, with a scanner's
    noise of about one grey level), and `truth` padded to match. A whole-slide image always shows glass around
    the section, and the tissue mask (the reference's Otsu rule) and the glass colour QC balances by are taken
    from it; an image that is all tissue has neither, so Otsu splits the tissue itself and about half of it goes
    unscored (stardist's and slideflow's images: 51 % and 54 % of the field in the mask)."""
    pad = int(round(margin * max(rgb.shape[:2])))
    h, w = rgb.shape[:2]
    glass = np.asarray(GLASS, np.float32) + rng.normal(0.0, 1.0, (h + 2 * pad, w + 2 * pad, 1)).astype(np.float32)
    canvas = np.clip(np.rint(glass), 0, 255).astype(np.uint8)
    canvas[pad:pad + h, pad:pad + w] = rgb
    return canvas, {k: np.pad(m, pad) for k, m in truth.items()}


def _tiles(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open(folder / "tiles.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    xy = np.array([(int(r["x"]), int(r["y"])) for r in rows], np.int64).reshape(-1, 2)
    return xy, np.array([float(r["score"]) for r in rows]), np.array([r.get("qc", "ok") for r in rows])


def count(folder: Path, truth: dict[str, np.ndarray], tile0: int, threshold: float) -> dict:
    xy, score, kind = _tiles(folder)
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
    union = np.zeros_like(next(iter(truth.values())))
    for m in truth.values():
        union |= m
    inside = 0
    for line in (folder / "detections.csv").read_text().splitlines():
        _, x, y = (float(v) for v in line.split(","))
        inside += bool(union[min(int(y), union.shape[0] - 1), min(int(x), union.shape[1] - 1)])
    out["detections_on_artifacts"] = inside
    return out


def qc_off_view(folder: Path, out: Path) -> Path:
    """The QC-off outputs this benchmark needs (tiles.csv without gating, detections.csv from the raw grid),
    derived from a QC-on run's folder: QC changes no tile score, only which count, so one scoring serves both."""
    summary = json.loads((folder / "summary.json").read_text())
    xy, score, _ = _tiles(folder)
    width, height = summary["slide_dimensions"]
    geometry = CellGeometry(width, height, summary["stride_level0"], summary["tile_level0"])
    values = np.full(geometry.shape, np.nan, np.float32)
    values[xy[:, 1] // geometry.stride, xy[:, 0] // geometry.stride] = score
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tiles.csv", "w", newline="") as handle:
        handle.write("x,y,score\n" + "".join(f"{x},{y},{v:.9g}\n" for (x, y), v in zip(xy, score)))
    write_detections(out / "detections.csv", values, geometry, summary["nms_radius_cells"])
    (out / "summary.json").write_text(json.dumps({**summary, "status": "ok"}))
    return out


def cost(summary: dict, wall: float) -> dict:
    s = summary["seconds"]
    qc = s.get("qc_features", 0.0) + s.get("qc_judge", 0.0)
    return {"wall_s": round(wall, 2), "total_s": s["total"], "inference_s": s["inference"], "decode_s": s["decode"],
            "qc_features_s": s.get("qc_features"), "qc_judge_s": s.get("qc_judge"),
            "qc_share_of_total": round(qc / s["total"], 4) if s["total"] else None,
            "tiles": summary["tiles_scored"]}


def score(backend, path: Path, out: Path, qc: bool, stride: int | None, thresholds: QCThresholds,
          resume: bool = False):
    began = time.perf_counter()
    result = score_slide(path, backend, out, RunSettings(progress=False, qc=qc, stride=stride, batch_size=16,
                                                       qc_thresholds=thresholds if qc else None, resume=resume))
    if result.status == "failed":
        raise SystemExit(f"{path}: {result.error}")
    return result, time.perf_counter() - began


def tile_auroc(run: Path, slides) -> float:
    """AUROC of the tile scores of `slides` (a cohort's) in `run` (flagged tiles count as the lowest score: QC
    never calls them)."""
    labels, scores = [], []
    for slide in slides:
        xy, s, kind = _tiles(run / slide.path.stem)
        s = np.where(kind == "ok", s, -np.inf)
        summary = json.loads((run / slide.path.stem / "summary.json").read_text())
        tile0 = summary["tile_level0"]
        if slide.xml is not None:
            ds = 16
            with open_slide(slide.path) as handle:
                w, h = handle.dimensions
            mask = rasterize(load_asap_xml(slide.xml), (int(np.ceil(h / ds)), int(np.ceil(w / ds))), ds)
            k = tile0 // ds
            lab = np.array([mask[y // ds:y // ds + k, x // ds:x // ds + k].mean() >= 0.5 for x, y in xy])
        else:
            lab = np.zeros(len(xy), bool)
        labels.append(lab)
        scores.append(np.where(np.isfinite(s), s, np.finfo(np.float32).min))
    return roc_auc(np.concatenate(labels), np.concatenate(scores))


def froc(run: Path, cohort, out: Path) -> float | str:
    cmd = [str(Path(sys.executable).parent / "fwrd-eval"), "froc", "--detections", str(run), "--masks", str(cohort.masks_dir),
           "--reference", str(cohort.reference_csv), "--review", "include", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:  # e.g. a cohort too small to hold a lesion bigger than an ITC
        return done.stderr.strip().splitlines()[-1]
    return round(float(json.loads((out / "froc.json").read_text())["froc"]), 4)


def calls(folder: Path) -> dict:
    """Tiles scored, tiles called (>= threshold, not flagged), tiles flagged, detections and the max score."""
    summary = json.loads((folder / "summary.json").read_text())
    _, score_, kind = _tiles(folder)
    ok = kind == "ok"
    return {"tiles": int(len(score_)), "called": int(((score_ >= summary["threshold"]) & ok).sum()),
            "flagged": int((~ok).sum()), "max_score": round(float(score_[ok].max()), 4) if ok.any() else None,
            "detections": len((folder / "detections.csv").read_text().splitlines())}


def stain_change(before: Path, after: Path, threshold: float) -> dict:
    """Tile by tile (the tiles both runs scored): how far the raw scores moved and how many calls flipped."""
    xy0, s0, _ = _tiles(before)
    xy1, s1, _ = _tiles(after)
    index = {(int(x), int(y)): i for i, (x, y) in enumerate(xy1)}
    pairs = [(i, index[(int(x), int(y))]) for i, (x, y) in enumerate(xy0) if (int(x), int(y)) in index]
    a, b = s0[[i for i, _ in pairs]], s1[[j for _, j in pairs]]
    delta = np.abs(b - a)
    return {"tiles_compared": len(pairs), "mean_abs_delta": round(float(delta.mean()), 4),
            "max_abs_delta": round(float(delta.max()), 4), "mean_before": round(float(a.mean()), 4),
            "mean_after": round(float(b.mean()), 4),
            "called_before": int((a >= threshold).sum()), "called_after": int((b >= threshold).sum()),
            "flipped": int(((a >= threshold) != (b >= threshold)).sum())}


def hed_shift(rgb: np.ndarray, h_gain: float = 1.35, e_gain: float = 0.7) -> np.ndarray:
    """Tissue pixels (the tissue mask's, at 1/16) with haematoxylin x h_gain and eosin x e_gain."""
    from fwrd.slide.tissue import tissue_mask_from_rgb

    small = np.asarray(Image.fromarray(rgb).reduce(16))
    tissue = np.kron(tissue_mask_from_rgb(small), np.ones((16, 16), bool))[:rgb.shape[0], :rgb.shape[1]]
    return paint.stain_shift(rgb, h_gain, e_gain, where=tissue)


def score_own(rgb: np.ndarray, mpp: float, recipe: OwnRecipe, path: Path, truth: dict, args,
              thresholds: QCThresholds) -> dict:
    """The painted slide at `path` scored, QC on and off, by a normal model of its unpainted pixels `rgb`."""
    graph, made = own_model(rgb, mpp, recipe, args.out / "own_models")
    with open_backend(graph, threads=args.threads) as own:
        result, wall = score(own, path, args.out / "own" / "on", True, args.stride, thresholds)
    s = result.summary
    off = qc_off_view(result.out_dir, args.out / "own" / "off" / path.stem)
    return {"model": made, "threshold": s["threshold"], "cost": cost(s, wall),
            "on": count(result.out_dir, truth, s["tile_level0"], s["threshold"]),
            "off": count(off, truth, s["tile_level0"], s["threshold"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real-extra", type=Path, default=None)
    parser.add_argument("--real-image", type=Path, action="append", default=[],
                        help="a real RGB image (PNG, JPEG) to paint the card on as well; repeatable")
    parser.add_argument("--only-real-images", action="store_true",
                        help="paint only the --real-image images (not the synthetic slide or the CMU regions)")
    parser.add_argument("--min-side", type=int, default=0,
                        help="mirror each --real-image out to at least this many pixels a side (a small image)")
    parser.add_argument("--bubbles", type=int, default=0,
                        help="paint this many more air bubbles on each image (varied radius and place, from the "
                             "seed; the card stays as it is): a sample of dozens of bubble tiles, not one or two")
    parser.add_argument("--glass-margin", type=float, default=0.0,
                        help="lay each --real-image, once painted, on bare glass this share of its side wide on "
                             "every side (a whole-slide image shows glass; an image all tissue has none)")
    parser.add_argument("--cohort", type=int, default=0, help="tumour slides of a synthetic test cohort (0: none)")
    parser.add_argument("--cohort-size", type=int, default=3072)
    parser.add_argument("--stain", action="store_true")
    parser.add_argument("--stain-gains", nargs="+", default=["1.35,0.7"], metavar="H,E",
                        help="haematoxylin,eosin gains of the stain shifts (default: the issue's 1.35,0.7)")
    parser.add_argument("--resume", action="store_true", help="reuse complete outputs of an earlier run")
    parser.add_argument("--skip-paint", action="store_true")
    parser.add_argument("--own-model", action="store_true",
                        help="also score each real image with a normal model trained on its own unpainted pixels")
    parser.add_argument("--own-patches", type=int, default=OwnRecipe.normal_patches,
                        help="--own-model: normal patches per image")
    parser.add_argument("--own-epochs", type=int, default=OwnRecipe.epochs, help="--own-model: training epochs")
    args = parser.parse_args()
    for image in args.real_image:  # one line, before minutes of scoring
        try:
            with Image.open(image) as opened:
                opened.verify()
        except OSError as exc:
            parser.error(f"--real-image {image}: not a readable image ({' '.join(str(exc).split())[:120]})")
    if args.min_side < 0:
        parser.error("--min-side must be >= 0")
    if args.bubbles < 0:
        parser.error("--bubbles must be >= 0")
    if not 0 <= args.glass_margin <= 2:
        parser.error("--glass-margin must be between 0 and 2")
    if args.own_model and (args.own_patches < 10 or args.own_epochs < 1):
        parser.error("--own-patches must be >= 10 and --own-epochs >= 1")
    recipe = OwnRecipe(normal_patches=args.own_patches, epochs=args.own_epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    thresholds = QCThresholds()  # this fwrd's defaults, whatever the model's config holds
    record: dict = {"thresholds": thresholds.to_dict(), "seed": args.seed, "bubbles": args.bubbles,
                    "glass_margin": args.glass_margin}
    with open_backend(args.model, threads=args.threads) as backend:
        if not args.skip_paint:
            mpp = backend.config.mpp or 0.243
            clean: dict = {}
            slides = painted_slides(args.out / "slides", args.size, args.seed, args.real_extra,
                                    mpp, tuple(args.real_image), args.only_real_images,
                                    args.min_side, args.bubbles, args.glass_margin, clean)
            for name, (path, truth) in slides.items():
                result, wall = score(backend, path, args.out / "on", True, args.stride, thresholds)
                s = result.summary
                off = qc_off_view(result.out_dir, args.out / "off" / path.stem)
                runs = {"on": {"status": result.status, "reason": result.error, "cost": cost(s, wall),
                               "excluded": s.get("tiles_excluded"),
                               "counts": count(result.out_dir, truth, s["tile_level0"], s["threshold"])},
                        "off": {"counts": count(off, truth, s["tile_level0"], s["threshold"])}}
                if args.own_model and name != "synthetic":
                    runs["own_model"] = score_own(clean[name], mpp, recipe, path, truth, args, thresholds)
                record[name] = runs
                print(json.dumps({name: runs}, indent=1), flush=True)
        if args.cohort:
            cohort = make_cohort(args.out / "cohort", n_tumor=args.cohort, n_normal=1, width=args.cohort_size,
                                 height=args.cohort_size, seed=1000 + args.seed, tumor_scale=1.8)
            record["cohort"] = {}
            costs = []
            for slide in cohort.slides:
                result, wall = score(backend, slide.path, args.out / "cohort_on", True, args.stride, thresholds,
                                     args.resume)
                costs.append(cost(result.summary, wall) | {"slide": slide.path.stem, "status": result.status,
                                                           "excluded": result.summary.get("tiles_excluded")})
                qc_off_view(result.out_dir, args.out / "cohort_off" / slide.path.stem)
            for qc in ("off", "on"):
                run = args.out / f"cohort_{qc}"
                record["cohort"][qc] = {"tile_auroc": round(tile_auroc(run, cohort.slides), 4),
                                        "froc": froc(run, cohort, args.out / f"eval_{qc}")}
            record["cohort"]["slides"] = costs
            print(json.dumps({"cohort": record["cohort"]}, indent=1), flush=True)
            if args.stain:
                record["stain"] = {}
                for gains in args.stain_gains:
                    h_gain, e_gain = (float(v) for v in gains.split(","))
                    tag = f"h{h_gain:g}_e{e_gain:g}"
                    stained = args.out / f"stained_{tag}"
                    entry: dict = {}
                    for slide in (cohort.normal_slides[0], cohort.tumor_slides[0]):
                        with open_slide(slide.path) as handle:
                            rgb = handle.read_region((0, 0), 0, handle.dimensions)
                        path = write_rgb_slide(stained / "slides" / f"{slide.path.stem}.svs",
                                               hed_shift(rgb, h_gain, e_gain), mpp=0.243)
                        result, _ = score(backend, path, stained / "on", True, args.stride, thresholds, args.resume)
                        off = qc_off_view(result.out_dir, stained / "off" / path.stem)
                        threshold = result.summary["threshold"]
                        for qc, after in (("on", result.out_dir), ("off", off)):
                            before = args.out / f"cohort_{qc}" / slide.path.stem
                            entry[f"{slide.path.stem}_qc_{qc}"] = {"before": calls(before), "after": calls(after)}
                        entry[f"{slide.path.stem}_tiles"] = stain_change(args.out / "cohort_off" / slide.path.stem,
                                                                          off, threshold)
                    pair = (cohort.normal_slides[0], cohort.tumor_slides[0])
                    entry["pair_tile_auroc"] = {"before": round(tile_auroc(args.out / "cohort_on", pair), 4),
                                                "after": round(tile_auroc(stained / "on", pair), 4)}
                    record["stain"][tag] = entry
                print(json.dumps({"stain": record["stain"]}, indent=1), flush=True)
    (args.out / "qc_artifacts.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
