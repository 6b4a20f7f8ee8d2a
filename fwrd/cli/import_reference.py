"""`fwrd import-reference`: turn a reference FW-RD / RD4AD checkpoint into an fwrd `model.pt`."""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand


@click.command(cls=FwrdCommand, name="import-reference", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reference", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("model.pt"), show_default=True)
@click.option("--teacher-weights", default="imagenet", show_default=True,
              help="The teacher the reference was trained with: imagenet (torchvision IMAGENET1K_V1) or a .pth path.")
@click.option("--tile", type=int, default=256, show_default=True, help="Tile size the reference model was trained on.")
@click.option("--level", type=click.IntRange(0), default=0, show_default=True)
@click.option("--mpp", type=float, default=0.243, show_default=True, help="Microns per pixel of its patches.")
@click.option("--threshold", type=float, default=2.01, show_default=True,
              help="Patch-score threshold (the reference code compares the mean map with 2.01).")
def command(reference: Path, out: Path, teacher_weights: str, tile: int, level: int, mpp: float,
            threshold: float) -> None:
    """Import REFERENCE, a checkpoint saved by the FW-RD or RD4AD code (a dict with `bn` and `decoder`).

    The bottleneck variant (FW-RD's 3x3 or RD4AD's 1x1 shortcut) is detected from the weights; the
    reference's unused conv4/bn4 are dropped.
    """
    from fwrd.config import FWRDConfig
    from fwrd.model import import_reference, save_checkpoint

    config = FWRDConfig(tile_size=tile, level=level, mpp=mpp, threshold=threshold)
    model, config = import_reference(reference, teacher_weights, config)
    save_checkpoint(out, model, config, imported_from=str(reference))
    click.echo(f"wrote {out} ({config.architecture} bottleneck, teacher {config.teacher_weights})")


main = command
