"""Every way a run is told to stop ends the same way: SIGINT (Ctrl-C), SIGTERM (kill, a CI
timeout, `docker stop`) and SIGHUP (a closed terminal) stop the running cell, remove its
container or process group, mark the manifest `interrupted`, and exit with 128 + the signal's
number (130, 143, 129), so that `--resume` continues the run.

`Interrupted` is a KeyboardInterrupt, so that everything that cleans up after Ctrl-C cleans up
after the other two as well. Only the first signal interrupts: later ones, while the run
removes its container and writes its manifest, are noted and otherwise ignored, so that a
second Ctrl-C cannot cut that cleanup short.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The run was told to stop by `signum`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: KeyboardInterrupt) -> int:
    """The exit status for an interruption: 128 + its signal (a bare KeyboardInterrupt: SIGINT)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


@contextlib.contextmanager
def interruptible() -> Iterator[list[int]]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise `Interrupted` once; yields the list
    of signals received."""
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
