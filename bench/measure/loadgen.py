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

The rules (percentiles, MLPerf's VALID, the sweeps' stop rules, the rate search) are pure
functions of what was measured, tested with hand-computed values and fake measurements.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Clock = Callable[[], float]  # seconds, monotonic
Infer = Callable[[dict[str, np.ndarray]], object]
OnDone = Callable[[BaseException | None], None]

# A percentile of fewer samples than this many is the maximum (or near it), not the tail it
# names: p99.9 is reported from 1000 latencies on, p99 from 100.
MIN_SAMPLES = {0.99: 100, 0.999: 1000}


# -- pure rules --------------------------------------------------------------------------------
def percentile(values: list[float] | np.ndarray, q: float) -> float:
    """The nearest-rank percentile (MLPerf's): the smallest value with at least a fraction q
    of the values at or below it."""
    ordered = np.sort(np.asarray(values, dtype=float))
    if ordered.size == 0:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q * ordered.size - 1e-9))
    return float(ordered[rank - 1])


def latency_summary(latencies_ms: list[float]) -> dict[str, float | int | None]:
    """p50, p99 and p99.9 (None where too few latencies make it the maximum), mean, count."""
    n = len(latencies_ms)
    summary: dict[str, float | int | None] = {
        "queries": n,
        "p50_ms": percentile(latencies_ms, 0.5),
        "mean_ms": float(np.mean(latencies_ms)),
        "max_ms": float(np.max(latencies_ms)),
    }
    for q, key in ((0.99, "p99_ms"), (0.999, "p999_ms")):
        summary[key] = percentile(latencies_ms, q) if n >= MIN_SAMPLES[q] else None
    return summary


def server_constraints(
    latencies_ms: list[float],
    duration_s: float,
    bound_ms: float,
    min_queries: int,
    min_duration_s: float,
) -> list[str]:
    """Which of MLPerf's server constraints a run broke (empty: VALID): its p99 under the
    bound, at least the minimum queries, at least the minimum duration."""
    failed = []
    n = len(latencies_ms)
    if n < min_queries:
        failed.append(f"{n} queries < the minimum {min_queries}")
    if duration_s < min_duration_s:
        failed.append(f"ran {duration_s:.1f} s < the minimum {min_duration_s:g} s")
    if n and (p99 := percentile(latencies_ms, 0.99)) > bound_ms:
        failed.append(f"p99 {p99:.1f} ms > the bound {bound_ms:g} ms")
    return failed


def over_bound_allowance(planned_queries: int) -> int:
    """How many of a run's latencies may exceed the bound with its p99 still under it: once
    more do, the run is INVALID whatever the rest measure, and it stops early."""
    return planned_queries - max(1, math.ceil(0.99 * planned_queries - 1e-9))


def poisson_arrivals(rate_per_s: float, count: int, seed: int) -> np.ndarray:
    """Arrival times in seconds from 0 of `count` requests of a Poisson process (exponential
    gaps of mean 1/rate), the same for the same seed on every framework."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_per_s, count)
    return np.cumsum(gaps) - gaps[0]  # the first arrives at 0


class OutOfMemory(Exception):
    """A sweep's point ran out of memory: the sweep stops there (the framework's message)."""


_OOM = re.compile(r"out of memory|bad_alloc|cannot allocate|failed to allocate|OOM", re.I)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError | OutOfMemory) or bool(_OOM.search(str(exc)))


@dataclass(frozen=True)
class SweepPoint:
    value: int  # the batch size or number of streams
    samples_per_s: float
    extra: dict = field(default_factory=dict)


def doubling_sweep(
    measure: Callable[[int], SweepPoint], start: int, cap: int, gain_threshold: float
) -> tuple[list[SweepPoint], str]:
    """Measure at start, 2*start, ... up to `cap`; stop after the first doubling that gains
    less than `gain_threshold` in samples/s, at the cap, or when a point runs out of memory.
    Returns the points and why it stopped."""
    points: list[SweepPoint] = []
    value = start
    while True:
        try:
            point = measure(value)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return points, f"out of memory at {value}: {str(exc).strip()[:200]}"
        points.append(point)
        if len(points) > 1:
            gain = point.samples_per_s / points[-2].samples_per_s - 1
            if gain < gain_threshold:
                return points, (
                    f"{points[-2].value} -> {value} gained {gain:+.1%} < {gain_threshold:.0%}"
                )
        if value * 2 > cap:
            return points, f"reached the cap {cap}"
        value *= 2


def best_point(points: list[SweepPoint]) -> SweepPoint:
    return max(points, key=lambda p: p.samples_per_s)


@dataclass(frozen=True)
class RatePoint:
    rate_per_s: float
    valid: bool
    result: dict


def search_rate(
    measure: Callable[[float], RatePoint], start: float, bisections: int, max_brackets: int = 8
) -> tuple[list[RatePoint], RatePoint | None]:
    """The highest rate whose run is VALID: bracket it by doubling (from a valid start) or
    halving (from an invalid one), then bisect the bracket `bisections` times. Returns every
    point measured, by rate, and the best valid one (None: not even the lowest tried held)."""
    points: list[RatePoint] = []
    first = measure(start)
    points.append(first)
    low = first if first.valid else None
    high = None if first.valid else first
    for _ in range(max_brackets):
        if low is not None and high is not None:
            break
        rate = high.rate_per_s / 2 if low is None else low.rate_per_s * 2  # type: ignore[union-attr]
        point = measure(rate)
        points.append(point)
        if point.valid:
            low = point
        else:
            high = point
    if low is not None and high is not None:
        for _ in range(bisections):
            point = measure((low.rate_per_s + high.rate_per_s) / 2)
            points.append(point)
            if point.valid:
                low = point
            else:
                high = point
    return sorted(points, key=lambda p: p.rate_per_s), low


# -- the engine ----------------------------------------------------------------------------------
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
