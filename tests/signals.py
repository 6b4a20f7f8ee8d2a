"""For tests that interrupt a real child process."""

import signal


def default_sigint() -> None:
    """preexec_fn: SIGINT back to its default, so that Python in the child turns it into KeyboardInterrupt.

    A shell without job control starts background jobs (`pytest &`) with SIGINT ignored, and children
    inherit that: a Ctrl-C test would then meet a run that cannot be interrupted.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
