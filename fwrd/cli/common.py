"""What every fwrd command shares: expected failures become one line on stderr and a non-zero exit.

Ctrl-C and SIGTERM (what Slurm and Kubernetes send on a timeout or preemption) stop a command the same
way: the exception unwinds through every `finally` (journals flushed and closed, decode threads
stopped, temp files removed), then one line (`interrupted` / `terminated`, with "rerun with --resume
to continue" for the commands that can) and exit 130 / 143, the shells' codes for those signals.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from fwrd.errors import FwrdError
from fwrd.safe_text import for_terminal


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return for_terminal(" ".join(text.split()))


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {for_terminal(' '.join(str(message).split()))}\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so it unwinds like Ctrl-C."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def machine_bound(value: int | None, option: str) -> int | None:
    """A thread count (--threads, --workers) bounded by the CPUs this process may use, with a note when it
    asked for more: thousands of threads only cost memory, and ONNX Runtime's pool can stall on them."""
    from fwrd.runtime.settings import usable_cpus

    cpus = usable_cpus()
    if value is None or value <= cpus:
        return value
    click.echo(f"note: {option} {value} is more than the {cpus} CPUs this process may use; using {cpus}", err=True)
    return cpus


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses nan, inf and -inf (which float() and FloatRange accept)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class FwrdCommand(click.Command):
    """A click command whose expected failures print one line (`Error: ...`) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.formatwarning = _warning_line
        try:
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except FwrdError as exc:
            raise click.ClickException(_one_line(exc)) from None
        except PermissionError as exc:
            where = for_terminal(str(exc.filename or _one_line(exc)))
            raise click.ClickException(f"permission denied: {where}") from None
        except OSError as exc:
            if getattr(exc, "filename", None):
                where = for_terminal(str(exc.filename))
                raise click.ClickException(f"{exc.strerror or _one_line(exc)}: {where}") from None
            raise click.ClickException(_one_line(exc)) from None
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            hint = "; rerun with --resume to continue" if "resume" in ctx.params else ""
            click.echo(f"{'terminated' if terminated else 'interrupted'}{hint}", err=True)
            sys.exit(143 if terminated else 130)


class FwrdGroup(click.Group):
    command_class = FwrdCommand
