"""What a cell is doing now, for the runner's live progress line: one line in a file.

The executor names the file (`DEPLOYBENCH_PHASE_FILE`: beside the result for a local cell,
in the container's /out for a Docker one) and the runner reads it while the cell runs. Without
the variable nothing is written. Progress is never worth a cell: a write that fails is dropped.
"""

from __future__ import annotations

import contextlib
import os

from bench.fsutil import atomic_write_text

PHASE_ENV = "DEPLOYBENCH_PHASE_FILE"


def report_phase(text: str) -> None:
    """Say what the cell is doing now ("timing", "offline: batch 8", "tuning: 40/64 trials")."""
    path = os.environ.get(PHASE_ENV)
    if not path:
        return
    with contextlib.suppress(OSError):
        atomic_write_text(path, text.replace("\n", " ")[:200] + "\n")


def read_phase(path: os.PathLike | str | None) -> str | None:
    """The phase a cell last reported (None: none yet, or no file)."""
    if path is None:
        return None
    try:
        return open(path, encoding="utf-8", errors="replace").read().strip() or None
    except OSError:
        return None
