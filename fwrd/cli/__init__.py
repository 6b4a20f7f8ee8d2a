"""The `fwrd` command group. Each subcommand lives in its own module and only parses and delegates."""

from __future__ import annotations

import importlib

import click

from fwrd import __version__
from fwrd.cli.common import FwrdGroup

# subcommand name -> module in fwrd.cli holding a click command called `command`
SUBCOMMANDS = {
    "synth": "synth",
    "patches": "patches",
    "train": "train",
    "export": "export",
    "run": "run",
    "eval": "evaluate",
    "bench": "bench",
    "demo": "demo",
    "import-reference": "import_reference",
}


class _LazyGroup(FwrdGroup):
    """Imports a subcommand's module only when it runs, so `fwrd run` never pays for torch."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = SUBCOMMANDS.get(name)
        if module is None:
            return None
        return importlib.import_module(f"fwrd.cli.{module}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fwrd")
def main() -> None:
    """FW-RD metastasis detection: make synthetic slides, extract patches, train, export, run, evaluate."""
