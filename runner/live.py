"""The run's progress: plain lines in logs and CI, and on a terminal a live line (rich) with
the running cell(s), each one's phase as the cell reports it (bench/phase.py), the cells
done and the ETA from their times (runner/progress.py).

The orchestrator talks to one `Progress`: `log` (a line that stays: a cell's outcome, an
image build's step, an export), `started`/`ended` around each cell's executor call and
`advance` after each cell. `PlainProgress` prints the lines and nothing else, so a log or a
CI transcript reads as before; `LiveProgress` prints the same lines above a live line that a
thread refreshes from the phase files of the running cells.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from bench.phase import read_phase
from runner.executors.base import CellJob


class PlainProgress:
    """Lines only: what a log file or a CI transcript gets."""

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self._log = log

    def log(self, line: str) -> None:
        self._log(line)

    def started(self, job: CellJob) -> None:
        pass

    def ended(self, job: CellJob) -> None:
        pass

    def advance(self, done: int, total: int, eta: str) -> None:
        pass

    def close(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """A live line under the log lines, on a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None, refresh_s: float = 0.5) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stdout)
        super().__init__(self.console.print)
        self.total, self.done, self.eta = total, 0, "ETA unknown until a cell has run"
        self.last_line = "starting"
        self._running: dict[int, CellJob] = {}
        self._lock = threading.Lock()
        self._live = Live(self._render(), console=self.console, auto_refresh=False)
        self._live.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, args=(refresh_s,), daemon=True)
        self._thread.start()

    def log(self, line: str) -> None:
        with self._lock:
            self.last_line = line.strip().splitlines()[-1] if line.strip() else self.last_line
        self.console.print(line, markup=False, highlight=False)

    def started(self, job: CellJob) -> None:
        with self._lock:
            self._running[id(job)] = job

    def ended(self, job: CellJob) -> None:
        with self._lock:
            self._running.pop(id(job), None)

    def advance(self, done: int, total: int, eta: str) -> None:
        with self._lock:
            self.done, self.total, self.eta = done, total, eta

    def status_lines(self) -> list[str]:
        """What the live line shows now: each running cell and its phase, else the last
        line logged (an image build's step, an export), then the count and the ETA."""
        with self._lock:
            running = list(self._running.values())
            head = f"[{self.done}/{self.total} cells] {self.eta}"
            last = self.last_line
        if not running:
            return [head, f"  {last}"]
        lines = [head]
        for job in running:
            phase = read_phase(job.phase.path) or "starting"
            lines.append(f"  {job.cell.id}: {phase}")
        return lines

    def _render(self) -> object:
        from rich.text import Text

        return Text("\n".join(self.status_lines()), style="bold")

    def _refresh(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self._live.update(self._render(), refresh=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._live.update(self._render(), refresh=True)
        self._live.stop()


def progress_for(total: int, log: Callable[[str], None], live: bool | None = None) -> PlainProgress:
    """A live line where stdout is a terminal (or `live` says so), else plain lines."""
    if live is None:
        # rich is a host-side package: in an image (`docker compose run`, a TTY) it may be
        # absent, and the plain lines are then what the terminal gets.
        live = sys.stdout.isatty() and importlib.util.find_spec("rich") is not None
    return LiveProgress(total) if live else PlainProgress(log)
