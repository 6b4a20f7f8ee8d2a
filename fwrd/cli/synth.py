"""`fwrd synth`: a small Camelyon16-shaped cohort of synthetic slides (parses, then delegates)."""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand
from fwrd.errors import FwrdError


@click.command("synth", cls=FwrdCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--tumor", "n_tumor", default=2, show_default=True, type=click.IntRange(min=0),
              help="Tumor slides (with ASAP XML and a tumor mask).")
@click.option("--normal", "n_normal", default=1, show_default=True, type=click.IntRange(min=0),
              help="Normal slides.")
@click.option("--width", default=4096, show_default=True, type=click.IntRange(min=64), help="Level-0 width.")
@click.option("--height", default=4096, show_default=True, type=click.IntRange(min=64), help="Level-0 height.")
@click.option("--format", "fmt", default="svs", show_default=True, type=click.Choice(["svs", "tif"]),
              help="Aperio .svs (MPP in the description) or generic pyramidal BigTIFF .tif (resolution tags).")
@click.option("--mpp", default=0.243, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Level-0 microns per pixel written into the files.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same files.")
@click.option("--tile", "file_tile", default=256, show_default=True, type=int,
              help="The files' own JPEG tile size (a multiple of 16).")
@click.option("--tumor-scale", default=1.0, show_default=True, type=click.FloatRange(min=0.1, max=4.0),
              help="Size of the tumor regions (radius ~6% of the slide side times this). Camelyon16's FROC "
                   "counts lesions over 275 um (1132 px at 0.243 um/px) and ignores smaller ones as ITCs.")
@click.option("--tissue-scale", default=1.0, show_default=True, type=click.FloatRange(min=0.5, max=4.0),
              help="Size of the tissue (its ellipses' axes times this): 2 makes a large section with some glass; "
                   "3 leaves too little glass for the tissue rule (README).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty OUT, replacing files of the same names.")
def command(
    out: Path, n_tumor: int, n_normal: int, width: int, height: int, fmt: str, mpp: float, seed: int,
    file_tile: int, tumor_scale: float, tissue_scale: float, overwrite: bool,
) -> None:
    """Write synthetic slides to OUT: slides/, annotations/*.xml, masks/<name>_Mask.tif, reference.csv.

    Pyramidal tiled-JPEG slides that OpenSlide opens, with tissue on white glass and tumor regions
    whose texture (crowded, large, dark nuclei) differs from normal tissue. For tests and the demo.
    """
    from fwrd.slide.synthetic import make_cohort

    if out.exists() and not out.is_dir():
        raise FwrdError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FwrdError(f"{out}: folder is not empty (pass --overwrite to write into it)")
    cohort = make_cohort(out, n_tumor=n_tumor, n_normal=n_normal, width=width, height=height, fmt=fmt,
                         seed=seed, mpp=mpp, file_tile=file_tile, tumor_scale=tumor_scale,
                         tissue_scale=tissue_scale)
    click.echo(
        f"wrote {len(cohort.tumor_slides)} tumor + {len(cohort.normal_slides)} normal {width}x{height} "
        f".{fmt} slides to {cohort.slides_dir} (annotations: {cohort.annotations_dir}, "
        f"masks: {cohort.masks_dir}, reference: {cohort.reference_csv})"
    )


main = command
