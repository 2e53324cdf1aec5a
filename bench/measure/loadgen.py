"""The load generator of the offline, multi-stream and server scenarios (MLPerf LoadGen's).

Two drivers, one engine for every framework, in the cell's own process:

- `closed_loop`: N clients, each issuing its next request the moment its last one completes
  (multi-stream; offline at one batch with N=1). A request waits in a FIFO until the
  framework has a free slot, so with fewer slots than clients its latency includes queueing.
- `open_loop`: requests arrive on a seeded Poisson schedule (server); latency is measured from
  the *scheduled* arrival, so queueing behind a busy framework counts, as MLPerf's does.

`Slots` is how a framework runs requests concurrently: at most `n` in flight, `acquire`
blocks until one is free, `launch` starts one and calls back when it is done. `ThreadSlots`
calls a thread-safe `infer` from n threads (ONNX Runtime, torch eager); n=1 serialises a
framework whose runtime may not be entered twice (TVM's VM). OpenVINO brings its own
(async infer requests, bench/backends/openvino.py).

The rules (percentiles, MLPerf's VALID, the sweeps' stop rules, the rate search) are in
bench/measure/load_rules.py.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bench.measure.load_rules import over_bound_allowance, percentile

Clock = Callable[[], float]  # seconds, monotonic
Infer = Callable[[dict[str, np.ndarray]], object]
OnDone = Callable[[BaseException | None], None]


class Slots:
    """At most `n` requests in flight on a framework; subclasses start one in `_launch` and
    call `finish(on_done, error)` when it is done."""

    mechanism = "abstract"

    def __init__(self, n: int) -> None:
        self.n = n
        self._free = threading.Semaphore(n)

    def acquire(self) -> None:
        """Block until a request slot is free (then `launch` must follow)."""
        self._free.acquire()

    def launch(self, feed: dict[str, np.ndarray], on_done: OnDone) -> None:
        self._launch(feed, on_done)

    def finish(self, on_done: OnDone, error: BaseException | None) -> None:
        try:
            on_done(error)
        finally:
            self._free.release()

    def drain(self) -> None:
        """Wait until every launched request has completed."""
        for _ in range(self.n):
            self._free.acquire()
        for _ in range(self.n):
            self._free.release()

    def _launch(self, feed: dict[str, np.ndarray], on_done: OnDone) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.drain()


class ThreadSlots(Slots):
    """`infer` called from n threads at once (n=1: one request at a time)."""

    def __init__(self, infer: Infer, n: int, mechanism: str) -> None:
        super().__init__(n)
        self.infer = infer
        self.mechanism = mechanism
        self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="loadgen")

    def _launch(self, feed: dict[str, np.ndarray], on_done: OnDone) -> None:
        def run() -> None:
            error = None
            try:
                self.infer(feed)
            except BaseException as exc:  # recorded, re-raised by the driver
                error = exc
            self.finish(on_done, error)

        self._pool.submit(run)

    def close(self) -> None:
        super().close()
        self._pool.shutdown(wait=True)


class LaneSlots(Slots):
    """One request at a time on each of several lanes (a framework's execution contexts, each
    with its own stream and buffers): a request takes a free lane, runs, gives it back."""

    def __init__(
        self, lanes: list[Infer], mechanism: str, on_close: Callable[[], None] | None = None
    ) -> None:
        super().__init__(len(lanes))
        self.mechanism = mechanism
        self._lanes: queue.SimpleQueue[Infer] = queue.SimpleQueue()
        for lane in lanes:
            self._lanes.put(lane)
        self._on_close = on_close
        self._pool = ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="lane")

    def _launch(self, feed: dict[str, np.ndarray], on_done: OnDone) -> None:
        def run() -> None:
            lane, error = self._lanes.get(), None  # a slot is held: a lane is free
            try:
                lane(feed)
            except BaseException as exc:  # recorded, re-raised by the driver
                error = exc
            finally:
                self._lanes.put(lane)
            self.finish(on_done, error)

        self._pool.submit(run)

    def close(self) -> None:
        super().close()
        self._pool.shutdown(wait=True)
        if self._on_close is not None:
            self._on_close()


@dataclass
class _Record:
    """Latencies of one run, written from completion callbacks (any thread)."""

    clock: Clock
    bound_ms: float | None = None
    allowance: int | None = None
    latencies_ms: list[float] = field(default_factory=list)
    first_s: float | None = None
    last_done_s: float = 0.0
    error: BaseException | None = None
    over_bound: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, issued_s: float, error: BaseException | None) -> float:
        now = self.clock()
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            ms = (now - issued_s) * 1e3
            self.latencies_ms.append(ms)
            self.last_done_s = max(self.last_done_s, now)
            if self.bound_ms is not None and ms > self.bound_ms:
                self.over_bound += 1
        return now

    @property
    def hopeless(self) -> bool:
        """More latencies over the bound than the run's p99 allows: INVALID already."""
        return self.allowance is not None and self.over_bound > self.allowance


@dataclass(frozen=True)
class LoadRun:
    """What one driver run measured."""

    latencies_ms: list[float]
    duration_s: float  # first issue to last completion
    stopped_early: bool = False

    @property
    def queries_per_s(self) -> float:
        return len(self.latencies_ms) / self.duration_s if self.duration_s > 0 else 0.0


def _finish(slots: Slots, record: _Record, started_s: float, early: bool = False) -> LoadRun:
    slots.drain()
    if record.error is not None:
        raise record.error
    return LoadRun(list(record.latencies_ms), record.last_done_s - started_s, early)


def closed_loop(
    slots: Slots,
    feed: dict[str, np.ndarray],
    clients: int,
    min_queries: int,
    min_s: float,
    max_s: float,
    clock: Clock = time.perf_counter,
) -> LoadRun:
    """`clients` clients each keeping one request outstanding, until at least `min_queries`
    completed and `min_s` passed (or `max_s` passed)."""
    record = _Record(clock)
    ready: deque[float] = deque()
    wake = threading.Condition()
    started = clock()
    ready.extend([started] * clients)

    def completed(issued: float, error: BaseException | None) -> None:
        now = record.done(issued, error)
        with wake:
            ready.append(now)  # the client issues its next request at once
            wake.notify()

    while True:
        elapsed = clock() - started
        with record.lock:
            count, failed = len(record.latencies_ms), record.error is not None
        if failed or elapsed >= max_s or (count >= min_queries and elapsed >= min_s):
            break
        with wake:
            while not ready:
                wake.wait(timeout=0.05)
                if clock() - started >= max_s:
                    break
            if not ready:
                continue
            issue_time = ready.popleft()
        slots.acquire()
        slots.launch(feed, lambda error, t=issue_time: completed(t, error))
    return _finish(slots, record, started)


def open_loop(
    slots: Slots,
    feed: dict[str, np.ndarray],
    arrivals_s: np.ndarray,
    max_s: float,
    bound_ms: float | None = None,
    clock: Clock = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadRun:
    """Requests at the scheduled `arrivals_s` (from now), each timed from its scheduled
    arrival. With a bound, the run stops early once it cannot be VALID."""
    record = _Record(clock, bound_ms, over_bound_allowance(len(arrivals_s)) if bound_ms else None)
    started = clock()
    early = False
    for offset in arrivals_s:
        due = started + float(offset)
        if (wait := due - clock()) > 0:
            sleep(wait)
        if record.error is not None or clock() - started >= max_s:
            break
        if record.hopeless:
            early = True
            break
        slots.acquire()  # a busy framework: the request waits here, and its latency grows
        slots.launch(feed, lambda error, t=due: record.done(t, error))
    return _finish(slots, record, started, early)


def harness_overhead(feed: dict[str, np.ndarray], clock: Clock = time.perf_counter) -> dict:
    """The load generator's own cost, on a model that does nothing: a closed-loop request's
    latency and an open-loop request's lateness at 1000/s. What a scenario's latencies
    include of the harness, so a framework is not blamed for it."""

    def noop(_feed: dict[str, np.ndarray]) -> None:
        return None

    slots = ThreadSlots(noop, 1, "no-op")
    try:
        closed = closed_loop(slots, feed, 1, min_queries=200, min_s=0.2, max_s=2.0, clock=clock)
        arrivals = np.arange(300) / 1000.0
        opened = open_loop(slots, feed, arrivals, max_s=2.0, clock=clock)
    finally:
        slots.close()
    return {
        "closed_loop_p50_us": percentile(closed.latencies_ms, 0.5) * 1e3,
        "closed_loop_p99_us": percentile(closed.latencies_ms, 0.99) * 1e3,
        "open_loop_p50_us": percentile(opened.latencies_ms, 0.5) * 1e3,
        "open_loop_p99_us": percentile(opened.latencies_ms, 0.99) * 1e3,
        "method": "the same drivers and a thread slot around a model that returns at once",
    }
