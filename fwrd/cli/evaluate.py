"""`fwrd-eval`: score detections, slide scores and patches exactly as Camelyon16 (and the paper) did.

    fwrd-eval froc --detections DIR --masks DIR [--slides reference.csv] [--slide-dir DIR] [--out DIR]
    fwrd-eval slides --scores slides.csv --reference reference.csv [--out DIR]
    fwrd-eval patches PATCH_DIR --model rd.onnx [--out DIR]
    fwrd-eval RUN_DIR --reference reference.csv --masks DIR [--patches DIR --model rd.onnx]

Each writes a JSON of the figures and PNG plots and prints a short table. Parsing only: the work is in
`fwrd.evaluation`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from fwrd.cli.common import FiniteFloat, FwrdGroup, machine_bound
from fwrd.errors import InputNotFound

DEFAULT_OUT = "fwrd-eval"


class _EvalGroup(FwrdGroup):
    """Subcommands, plus `fwrd-eval RUN_DIR ...` as a shorthand for `fwrd-eval run RUN_DIR ...`."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


def _exclusions(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _progress(index: int, total: int, name: str) -> None:
    if sys.stderr.isatty():
        click.echo(f"\r[{index}/{total}] {name}\x1b[K", err=True, nl=index == total)


@dataclass
class _Report:
    """Results computed first, then written and printed together: a bad input (a wrong mask) stops the
    evaluation before any figure is shown."""

    out: Path
    parts: list[tuple[str, Callable[[Path], list[Path]]]] = field(default_factory=list)

    def add(self, table: str, write: Callable[[Path], list[Path]]) -> None:
        self.parts.append((table, write))

    def finish(self) -> None:
        written: list[Path] = []
        for table, write in self.parts:
            written += write(self.out)
            click.echo(table)
        if written:
            click.echo(f"wrote {', '.join(str(p) for p in written)}")


def _run_folder(folder: Path) -> dict[str, dict] | None:
    """{slide: summary} of a fwrd-run output folder (after checking slides.csv against it, and that one
    model, one set of settings and one threshold made it), else None."""
    from fwrd.evaluation.slide_status import check_run
    from fwrd.runtime.outputs.slides_table import TABLE

    return check_run(folder) if (folder / TABLE).is_file() else None


def _froc(report: _Report, detections_dir: Path, mask_dirs: tuple[Path, ...], reference: Path | None,
          slide_dir: Path | None, exclude: list[str], organisers: bool, run: dict[str, dict] | None = None,
          review: str | None = None) -> None:
    from fwrd.evaluation.detections import find_detection_files, read_reference, slide_key
    from fwrd.evaluation.froc import evaluate_lesions
    from fwrd.evaluation.masks import find_masks, size_lookup
    from fwrd.evaluation.plots import froc_figure
    from fwrd.evaluation.report import froc_table, save_png, write_json

    if run is None and detections_dir.is_dir():
        run = _run_folder(detections_dir)
    ref = read_reference(reference) if reference is not None else None
    if run is None:
        files, recorded = find_detection_files(detections_dir), {}
    else:  # only complete slide folders, and the slide sizes the run recorded (to check the masks); a slide
        # the run failed or never scored is refused as `fwrd-eval RUN_DIR` refuses it, never "no detections"
        from fwrd.evaluation.detections import read_slide_scores
        from fwrd.evaluation.review import review_exclusions
        from fwrd.evaluation.slide_status import usable_slides
        from fwrd.runtime.outputs.slides_table import TABLE

        usable_slides(read_slide_scores(detections_dir / TABLE), ref, exclude, review)
        exclude = exclude + review_exclusions({name: str(s.get("status") or "ok") for name, s in run.items()},
                                              review)
        files = {slide_key(name): (name, detections_dir / name / "detections.csv") for name in run}
        recorded = {name: tuple(s["slide_dimensions"]) for name, s in run.items() if s.get("slide_dimensions")}
    masks = find_masks(mask_dirs)
    result = evaluate_lesions(files, masks, ref, exclude, size_lookup(recorded, slide_dir), _progress, organisers)

    def write(out: Path) -> list[Path]:
        return [write_json(out / "froc.json", result.to_dict()),
                save_png(froc_figure(result.curve.fps_per_slide, result.curve.sensitivity, result.rates,
                                     result.sensitivities, result.score), out / "froc.png")]

    report.add(froc_table(result), write)


def _slides(report: _Report, scores: Path, reference: Path, exclude: list[str], review: str | None = None,
            run_checked: bool = False) -> None:
    from fwrd.evaluation.detections import read_reference, read_slide_scores
    from fwrd.evaluation.plots import roc_figure
    from fwrd.evaluation.report import save_png, slides_table, write_json
    from fwrd.evaluation.roc import evaluate_slides
    from fwrd.evaluation.slide_status import check_scores_file

    rows = read_slide_scores(scores)
    result = evaluate_slides(rows, read_reference(reference), exclude, review)
    if not run_checked:
        check_scores_file(scores, rows)

    def write(out: Path) -> list[Path]:
        return [write_json(out / "slides.json", result.to_dict()),
                save_png(roc_figure(result.fpr, result.tpr, result.auc, "Slide-level ROC (Camelyon16 task 1)"),
                         out / "slides_roc.png")]

    report.add(slides_table(result), write)


def _patches(report: _Report, patch_dir: Path, model: Path, backend: str, batch_size: int, threads: int | None,
             threshold: float | None) -> None:
    from fwrd.evaluation.patches import list_patches, patch_metrics, score_patch_folder
    from fwrd.evaluation.plots import roc_figure
    from fwrd.evaluation.report import patches_table, save_png, write_json
    from fwrd.runtime.backends import open_backend

    from fwrd.config import check_threshold

    if threshold is not None:
        check_threshold(threshold, "--threshold")
    list_patches(patch_dir)  # refuse a bad folder before loading the model
    if not Path(model).is_file():
        raise InputNotFound(f"model not found: {model}")
    threads = machine_bound(threads, "--threads")
    with open_backend(model, backend=backend, batch_size=batch_size, threads=threads) as engine:
        labels, scores, _ = score_patch_folder(engine, patch_dir, batch_size)
        cut = engine.config.threshold if threshold is None else threshold
        described = engine.describe()
    metrics = patch_metrics(labels, scores, cut)

    def write(out: Path) -> list[Path]:
        return [write_json(out / "patches.json", {**metrics.to_dict(), "model": str(model), **described}),
                save_png(roc_figure(metrics.fpr, metrics.tpr, metrics.auc, "Patch-level ROC"), out / "patches_roc.png")]

    report.add(patches_table(metrics), write)


_exclude_option = click.option(
    "--exclude", multiple=True, metavar="SLIDE[,SLIDE]",
    help="Leave slides out (repeatable or comma-separated), e.g. --exclude test_049,test_114.",
)
_masks_option = click.option(
    "--masks", "mask_dirs", multiple=True, type=click.Path(path_type=Path),
    help="Folder of <slide>_Mask.tif (tumor 255 or 1) and/or <slide>.xml (ASAP); repeatable.",
)
_slide_dir_option = click.option(
    "--slide-dir", type=click.Path(path_type=Path),
    help="Folder of the slides, for their size (needed for XML masks; checks mask TIFF sizes).",
)
_backend_options = [
    click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto",
                 show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True),
    click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads."),
    click.option("--threshold", type=FiniteFloat(), default=None,
                 help="Patch threshold (default: the one stored in the model)."),
]
_review_option = click.option(
    "--review", type=click.Choice(["include", "exclude"]), default=None,
    help="What to do with slides fwrd-run marked review (QC could not vouch for their calls): count them as "
         "scored, or leave them out. Required when the run has any (fwrd-eval refuses such a run without it).",
)
_organisers_option = click.option(
    "--organisers-froc", "organisers", is_flag=True,
    help="Drop the lowest FROC threshold always, as Evaluation_FROC.py does (a detector that misses no "
         "lesion then loses its lowest-scored one); for comparing with leaderboard figures.",
)


def _with(options):
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


@click.group(cls=_EvalGroup, context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True)
def command() -> None:
    """Evaluate as Camelyon16 scored it: lesion FROC, slide AUC, patch accuracy.

    Run `fwrd-eval RUN_DIR --reference reference.csv --masks DIR` on a `fwrd-run` output folder to do
    everything at once, or one of the subcommands.
    """


@command.command("froc")
@click.option("--detections", "detections_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of <slide>.csv (Confidence,X,Y, no header) or a fwrd-run output folder.")
@_masks_option
@click.option("--slides", "--reference", "reference", type=click.Path(path_type=Path),
              help="reference.csv: the slides to evaluate (a slide without detections counts with none).")
@_slide_dir_option
@_exclude_option
@_review_option
@_organisers_option
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
def froc_command(detections_dir: Path, mask_dirs: tuple[Path, ...], reference: Path | None,
                 slide_dir: Path | None, exclude: tuple[str, ...], review: str | None, organisers: bool,
                 out: Path) -> None:
    """Lesion-level FROC (Camelyon16 task 2), the organisers' algorithm (froc.py says where it differs)."""
    if not mask_dirs:
        raise click.UsageError("give the tumor masks with --masks DIR")
    report = _Report(out)
    _froc(report, detections_dir, mask_dirs, reference, slide_dir, _exclusions(exclude), organisers, review=review)
    report.finish()


@command.command("slides")
@click.option("--scores", required=True, type=click.Path(path_type=Path),
              help="fwrd-run's slides.csv, or headerless name,probability rows.")
@click.option("--reference", required=True, type=click.Path(path_type=Path), help="reference.csv")
@_exclude_option
@_review_option
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
def slides_command(scores: Path, reference: Path, exclude: tuple[str, ...], review: str | None, out: Path) -> None:
    """Slide-level ROC AUC (Camelyon16 task 1)."""
    report = _Report(out)
    _slides(report, scores, reference, _exclusions(exclude), review)
    report.finish()


@command.command("patches")
@click.argument("patch_dir", type=click.Path(path_type=Path))
@click.option("--model", required=True, type=click.Path(path_type=Path), help="rd.onnx or an engine .plan")
@_with(_backend_options)
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
def patches_command(patch_dir: Path, model: Path, backend: str, batch_size: int, threads: int | None,
                    threshold: float | None, out: Path) -> None:
    """Patch accuracy at the model's threshold and at the best one, and AUROC, on normal/ + tumor/."""
    report = _Report(out)
    _patches(report, patch_dir, model, backend, batch_size, threads, threshold)
    report.finish()


@command.command("run")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--reference", required=True, type=click.Path(path_type=Path), help="reference.csv")
@_masks_option
@_slide_dir_option
@_exclude_option
@_review_option
@_organisers_option
@click.option("--patches", "patch_dir", type=click.Path(path_type=Path),
              help="Also evaluate a normal/ + tumor/ patch folder (needs --model).")
@click.option("--model", type=click.Path(path_type=Path), help="Model for --patches.")
@_with(_backend_options)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: RUN_DIR/eval].")
def run_command(run_dir: Path, reference: Path, mask_dirs: tuple[Path, ...], slide_dir: Path | None,
                exclude: tuple[str, ...], review: str | None, organisers: bool, patch_dir: Path | None,
                model: Path | None,
                backend: str, batch_size: int, threads: int | None, threshold: float | None,
                out: Path | None) -> None:
    """Everything for a fwrd-run output folder: slide AUC, lesion FROC (with --masks), patches.

    slides.csv must agree with the slide folders (complete outputs, one model and settings); masks are
    checked against the slide sizes the run recorded (and the slides in --slide-dir) before any result
    is shown.
    """
    if (patch_dir is None) != (model is None):
        raise click.UsageError("--patches and --model go together")
    scores = run_dir / "slides.csv"
    if not scores.is_file():
        raise InputNotFound(f"{scores} not found: is {run_dir} a fwrd-run output folder?")
    report = _Report(run_dir / "eval" if out is None else out)
    names = _exclusions(exclude)
    run = _run_folder(run_dir)  # the table agrees with the folder, or one line says how not
    _slides(report, scores, reference, names, review, run_checked=True)
    if mask_dirs:
        _froc(report, run_dir, mask_dirs, reference, slide_dir, names, organisers, run, review)
    if patch_dir is not None and model is not None:
        _patches(report, patch_dir, model, backend, batch_size, threads, threshold)
    report.finish()
    if not mask_dirs:
        click.echo("Lesion FROC skipped: give the tumor masks with --masks DIR")


main = command
