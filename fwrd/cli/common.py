"""What every fwrd command shares: expected failures become one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from fwrd.errors import FwrdError


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return " ".join(text.split())


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


class FwrdCommand(click.Command):
    """A click command whose expected failures print one line (`Error: ...`) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.formatwarning = _warning_line
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except FwrdError as exc:
            raise click.ClickException(_one_line(exc)) from None
        except PermissionError as exc:
            raise click.ClickException(f"permission denied: {exc.filename or _one_line(exc)}") from None
        except OSError as exc:
            if getattr(exc, "filename", None):
                raise click.ClickException(f"{exc.strerror or _one_line(exc)}: {exc.filename}") from None
            raise click.ClickException(_one_line(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


class FwrdGroup(click.Group):
    command_class = FwrdCommand
