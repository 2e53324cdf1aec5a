"""Cells on slots in parallel: one worker thread per slot, one cell at a time on each.

A worker takes the first queued item its slot can run (the queue is in the round's order), runs
it, and may put new items back (a lost host's cells, placed again elsewhere). It stops when no
queued item fits it and no other worker is running (who could still queue one). The caller's
thread only waits, so Ctrl-C (a KeyboardInterrupt there) reaches it at once: it sets `stop`,
which ends every worker after its current cell, whose container the caller removes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
SlotT = TypeVar("SlotT")


@dataclass
class Dispatch(Generic[Item, SlotT]):
    """Run `work(item, slot)` for every item on a slot that `fits` it."""

    slots: list[SlotT]
    fits: Callable[[Item, SlotT], bool]
    work: Callable[[Item, SlotT], list[Item]]  # returns items to queue (may be empty)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)

    def run(self, items: list[Item], poll_s: float = 0.5) -> list[Item]:
        """Run them all; returns the items no slot could take (their host is gone)."""
        self._queue = list(items)
        self._busy = 0
        self._cond = threading.Condition()
        threads = self._threads = [
            threading.Thread(target=self._worker, args=(s,), daemon=True, name=f"slot-{i}")
            for i, s in enumerate(self.slots)
        ]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(poll_s)  # short waits: the caller's KeyboardInterrupt gets through
        except BaseException:
            self.stop.set()
            raise
        if self.errors:
            raise self.errors[0]
        return self._queue

    def take(self, which: Callable[[Item], bool]) -> list[Item]:
        """Remove and return the queued items `which` picks (a lost host's)."""
        with self._cond:
            taken = [item for item in self._queue if which(item)]
            self._queue = [item for item in self._queue if not which(item)]
            return taken

    def join(self, timeout_s: float) -> None:
        """After `stop`: wait (bounded) for the workers to end their current cells."""
        for t in getattr(self, "_threads", []):
            t.join(timeout_s)

    def _take(self, slot: SlotT) -> Item | None:
        with self._cond:
            while not self.stop.is_set():
                for i, item in enumerate(self._queue):
                    if self.fits(item, slot):
                        self._busy += 1
                        return self._queue.pop(i)
                if self._busy == 0:
                    return None  # nothing for this slot, and nobody can queue more
                self._cond.wait(0.5)
            return None

    def _worker(self, slot: SlotT) -> None:
        while (item := self._take(slot)) is not None:
            try:
                more = self.work(item, slot)
            except BaseException as exc:  # a bug must not hang the run: it ends it, loudly
                self.errors.append(exc)
                self.stop.set()
                more = []
            with self._cond:
                self._busy -= 1
                if not self.stop.is_set():
                    self._queue.extend(more)
                self._cond.notify_all()
