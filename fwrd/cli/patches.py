"""`fwrd patches` / `fwrd-patches`: training patches from annotated slides (parses, then delegates)."""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FiniteFloat, FwrdCommand, machine_bound
from fwrd.errors import FwrdError


@click.command(
    "patches", cls=FwrdCommand, context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="SLIDE_OR_DIR...")
@click.option("--annotations", "annotations_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of ASAP XML files named after the slides (<slide>.xml, any case). "
                   "Slides without one give only normal patches. Needed for --tumor.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output folder: normal/, tumor/, patches.csv, patches.json. Must be empty or absent.")
@click.option("--normal", "n_normal", required=True, type=click.IntRange(min=0),
              help="Normal patches in total, spread evenly over the slides that can give them.")
@click.option("--tumor", "n_tumor", default=0, show_default=True, type=click.IntRange(min=0),
              help="Tumor patches in total (tile centre inside a tumor annotation).")
@click.option("--tile", default=256, show_default=True, type=int,
              help="Patch side in pixels at --level; a multiple of 32.")
@click.option("--context", default=0, show_default=True, type=int,
              help="Also save this many pixels of the tile's real surroundings on every side (a multiple of 32), "
                   "so fwrd-train learns tiles both alone and in context: a model for --dense scoring.")
@click.option("--level", default=None, type=click.IntRange(min=0),
              help="Pyramid level to read patches at (0 = full resolution).  [default: 0]")
@click.option("--mpp", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Read patches at this many microns per pixel instead of a level (0.25: 40x, 0.5: 20x), on any "
                   "pyramid: a level within 10% as it is, else the finest finer level shrunk (the resampling "
                   "fwrd-run uses). The model then reads every slide at this resolution.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the patch sampling.")
@click.option("--overwrite", is_flag=True, help="Replace an existing patch folder at --out.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Threads encoding PNGs (at most the CPUs this process may use).  [default: CPU cores, at most 4]")
@click.option("--qc", "qc", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Skip patches that QC flags (pen ink, dirt, bubbles, folds, blur; docs/qc.md) and say how many.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def command(
    inputs: tuple[Path, ...], annotations_dir: Path | None, out: Path, n_normal: int, n_tumor: int,
    tile: int, context: int, level: int | None, mpp: float | None, seed: int, overwrite: bool, workers: int | None,
    qc: str, progress: bool,
) -> None:
    """Extract normal and tumor training patches from slides (files or folders of them).

    Tissue comes from the NCRF/FW-RD saturation rule on a coarse level; tumor patches have their
    centre inside a tumor polygon (groups _0, _1, Tumor; _2 and Exclusion are holes), normal patches
    are at least half tissue with no tumor under them. Candidates lie on a tile/4 lattice and no two
    patches of one class on a slide are closer than tile/2. Deterministic for a seed.
    """
    from fwrd.config import QCThresholds
    from fwrd.training.patches import DEFAULT_WORKERS, extract_patches

    if n_tumor > 0 and annotations_dir is None:
        raise FwrdError("--tumor needs --annotations (the folder of the slides' ASAP XML files)")
    if level is not None and mpp is not None:
        raise FwrdError("give --level (a pyramid level) or --mpp (a resolution), not both")
    result = extract_patches(
        inputs, out, annotations_dir=annotations_dir, n_normal=n_normal, n_tumor=n_tumor,
        tile=tile, level=level or 0, seed=seed, overwrite=overwrite, progress=progress,
        workers=machine_bound(workers, "--workers") or DEFAULT_WORKERS, context=context, mpp=mpp,
        qc=QCThresholds() if qc == "on" else None,
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"wrote {result.counts['normal']} normal + {result.counts['tumor']} tumor patches "
        f"({tile} px{f' + {context} px context' if context else ''}, "
        f"{f'{mpp:g} um/px' if mpp is not None else f'level {level or 0}'}) from {len(result.per_slide)} slides to {result.out} "
        f"in {result.seconds:.1f} s ({result.patches_per_s:.0f} patches/s)"
    )


main = command
