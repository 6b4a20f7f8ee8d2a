"""`fwrd demo`: the whole job end to end on embedded synthetic slides, CPU backend."""

from __future__ import annotations

import time
from pathlib import Path

import click

from fwrd.cli.common import FwrdCommand


@click.command(cls=FwrdCommand, name="demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(path_type=Path), default=Path("fwrd-demo"))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="int8", show_default=True,
              help="Graph the run step uses (int8 is the fastest on a CPU).")
@click.option("--seed", type=int, default=0, show_default=True)
def command(out: Path, precision: str, seed: int) -> None:
    """Synthesize slides, extract patches, train, export, run and evaluate, all under OUT.

    Each step prints the command that does it, so the demo is also a walk-through. The teacher is
    random: the figures show that the pipeline works, not how FW-RD does on real slides.
    """
    from fwrd.demo import DemoPlan, run_demo

    started = time.perf_counter()
    run_demo(out, DemoPlan(precision=precision, seed=seed), echo=lambda line: click.secho(line, fg="cyan", err=True))
    click.echo(f"demo finished in {time.perf_counter() - started:.0f} s; results under {out}/ "
               f"(heatmaps: {out}/run/<slide>/overlay.png, evaluation: {out}/run/eval/)")


main = command
