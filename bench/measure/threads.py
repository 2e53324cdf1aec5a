"""How many threads did the work: counted by the OS, not taken from the framework's word.

A framework's own thread setting says how many threads it may use; whether they worked is the
kernel's to say. Around the measurement (outside the timed region) the CPU time of every thread
of this process is read from /proc/self/task/<tid>/stat; a thread is busy when it ran for at
least a quarter of the measurement's wall time. Untuned TVM, which "effectively runs on one
core whatever its thread pool holds", shows as 1 busy thread of 2 asked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# A thread counts as busy above this share of the interval's wall time.
BUSY_SHARE = 0.25
TASKS = Path("/proc/self/task")


def parse_task_stat(text: str) -> int:
    """utime + stime (clock ticks) from a /proc/<pid>/task/<tid>/stat line. The command name
    (field 2) is in parentheses and may contain spaces: fields are counted after its ')'."""
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of the whole line


def thread_ticks() -> dict[int, int]:
    """Every thread of this process: tid -> CPU clock ticks so far."""
    out = {}
    try:
        tids = [int(p.name) for p in TASKS.iterdir()]
    except OSError:
        return out
    for tid in tids:
        try:
            out[tid] = parse_task_stat((TASKS / str(tid) / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return out


def busy_between(
    before: dict[int, int], after: dict[int, int], interval_s: float, hz: int
) -> list[float]:
    """CPU seconds of each busy thread over the interval, largest first."""
    spent = [(after[t] - before.get(t, 0)) / hz for t in after]
    return sorted((s for s in spent if s >= BUSY_SHARE * interval_s), reverse=True)


class ThreadProbe:
    """Start before the measurement; `report(asked)` after it."""

    def __init__(self) -> None:
        self.start, self.t0 = thread_ticks(), time.monotonic()

    def report(self, asked: int) -> dict[str, object]:
        interval = time.monotonic() - self.t0
        busy = busy_between(self.start, thread_ticks(), interval, os.sysconf("SC_CLK_TCK"))
        return {
            "busy": len(busy),
            "asked": asked,
            "cpu_s": [round(s, 3) for s in busy],
            "interval_s": round(interval, 3),
        }
