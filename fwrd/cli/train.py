"""`fwrd-train`: train FW-RD on a folder of normal/ and tumor/ patches."""

from __future__ import annotations

from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand


@click.command(cls=FwrdCommand, name="train", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("train_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("model.pt"), show_default=True,
              help="Best checkpoint (by validation accuracy); the per-epoch log goes to <name>.history.jsonl, "
                   "the last epoch with the optimizer to <name>.last.pt while training (see --keep-last).")
@click.option("--val", "val_dir", type=click.Path(path_type=Path), default=None,
              help="Validation patches (normal/ + tumor/). Default: hold out a stratified --val-fraction.")
@click.option("--val-fraction", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=50, show_default=True, help="Paper: 50 (reference code: 10).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=float, default=1e-5, show_default=True, help="Adam learning rate (paper: 1e-5; reference code: 1e-6).")
@click.option("--alpha", type=float, default=0.1, show_default=True, help="Focal weight of normal patches (tumor: 1 - alpha).")
@click.option("--gamma", type=float, default=2.0, show_default=True, help="Focal exponent (0 with alpha 0.5 = unweighted).")
@click.option("--teacher-weights", default="imagenet", show_default=True,
              help="imagenet (torchvision's IMAGENET1K_V1, downloaded once), random (tests/demo only) or a .pth path.")
@click.option("--architecture", type=click.Choice(["fwrd", "rd4ad"]), default="fwrd", show_default=True,
              help="Bottleneck shortcut: FW-RD's 3x3 or RD4AD's 1x1.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from <name>.last.pt up to --epochs, with its random states: "
                   "the result equals an uninterrupted run.")
@click.option("--keep-last", is_flag=True,
              help="Keep <name>.last.pt (about 3x model.pt: the optimizer state) after the run finishes, to "
                   "--resume later with more --epochs. Default: removed once training has finished.")
@click.option("--amp", is_flag=True,
              help="bf16 autocast for the training steps' forward pass: much faster and lighter on a GPU with "
                   "bf16 units; the loss, the weights and validation stay fp32.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="DataLoader worker processes.")
def command(train_dir: Path, out: Path, val_dir: Path | None, val_fraction: float, epochs: int, batch_size: int,
            lr: float, alpha: float, gamma: float, teacher_weights: str, architecture: str, device: str,
            resume: bool, keep_last: bool, amp: bool, seed: int, workers: int) -> None:
    """Train FW-RD on TRAIN_DIR (normal/ and tumor/ patch folders; tumor/ may be empty).

    The tile size is read from the patches, the level and resolution from fwrd-patches' patches.json or
    patches.csv; all of it travels inside the checkpoint with the threshold that was best on validation.
    """
    from fwrd.training.trainer import TrainSettings, train

    settings = TrainSettings(
        train_dir=train_dir, out=out, val_dir=val_dir, epochs=epochs, batch_size=batch_size, lr=lr, alpha=alpha,
        gamma=gamma, teacher_weights=teacher_weights, architecture=architecture, device=device, resume=resume,
        seed=seed, val_fraction=val_fraction, workers=workers, keep_last=keep_last, amp=amp,
    )
    records = train(settings, log=lambda line: click.echo(line, err=True))
    bests = [r for r in records if r.best]
    if not records:
        click.echo(f"nothing to do: {out} already trained for {epochs} epochs", err=True)
    elif bests:
        b = bests[-1]
        auroc = "n/a" if b.val_auroc is None else f"{b.val_auroc:.4f}"
        click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB): epoch {b.epoch} of {records[-1].epoch}, "
                   f"val AUROC {auroc}, accuracy {b.val_accuracy:.4f} at threshold {b.val_threshold:.4f}; "
                   f"{records[-1].selection}")
    else:
        click.echo(f"no epoch beat the resumed best; {out} unchanged: {records[-1].selection}")


main = command
