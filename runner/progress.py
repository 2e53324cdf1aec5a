"""The ETA of a run's progress lines: from the cells that already ran, how long the rest will
take. Pure logic (the clock is the caller's): cells kept from an earlier attempt or skipped
before running cost no time and do not pull the estimate down; parallel slots (a pool) divide
the remaining time."""

from __future__ import annotations

import statistics


class Eta:
    """`ran(seconds)` for each cell that ran, `done()` for one that took no run; `text()`."""

    def __init__(self, total: int, slots: int = 1) -> None:
        self.total, self.slots = total, max(slots, 1)
        self.finished = 0
        self.durations: list[float] = []

    def ran(self, seconds: float) -> None:
        self.finished += 1
        self.durations.append(seconds)

    def done(self) -> None:
        self.finished += 1

    def remaining_s(self) -> float | None:
        """Seconds left: the median cell's time, times the cells left, over the slots (None
        before any cell ran)."""
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        if not self.durations:
            return None
        return statistics.median(self.durations) * left / self.slots

    def text(self) -> str:
        seconds = self.remaining_s()
        if seconds is None:
            return "ETA unknown until a cell has run"
        if seconds == 0:
            return "last cell"
        minutes, secs = divmod(round(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        if hours:
            return f"ETA {hours} h {minutes:02d} min"
        if minutes:
            return f"ETA {minutes} min {secs:02d} s"
        return f"ETA {secs} s"
