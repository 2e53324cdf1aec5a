"""The timing loop: bounded warm-up, bounded measurement, every iteration's latency kept.

Only the call under test is inside the timed region; the loop's own bookkeeping is outside it.
Both phases stop when *both* a minimum count and a minimum duration are reached (a fast model
gets many samples, a slow one at least the minimum count), and measurement also stops at a
maximum count or duration so a slow cell cannot run forever.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bench.errors import UsageError


@dataclass(frozen=True)
class TimingConfig:
    """Bounds of the warm-up and measurement phases."""

    warmup_min_iters: int = 10
    warmup_min_s: float = 1.0
    min_iters: int = 30
    min_s: float = 3.0
    max_iters: int = 10_000
    max_s: float = 60.0

    def __post_init__(self) -> None:
        problems = []
        if self.warmup_min_iters < 0:
            problems.append("warmup_min_iters must not be negative")
        if self.min_iters < 1:
            problems.append("min_iters must be at least 1")
        for name in ("warmup_min_s", "min_s", "max_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if self.max_iters < self.min_iters:
            problems.append("max_iters must be at least min_iters")
        if self.max_s < self.min_s:
            problems.append("max_s must be at least min_s")
        if problems:
            raise UsageError("invalid timing bounds: " + "; ".join(problems))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class TimingRun:
    """What the loop measured: the warm-up it did and every measured latency."""

    warmup_iters: int
    warmup_s: float
    samples_ms: list[float]
    measure_s: float


def _run_until(
    fn: Callable[[], object],
    min_iters: int,
    min_s: float,
    max_iters: int,
    max_s: float,
    clock: Callable[[], int],
) -> tuple[list[float], float]:
    """Call `fn` until both minimums are met, or a maximum is reached; time each call."""
    samples: list[float] = []
    start = clock()
    while True:
        n = len(samples)
        elapsed_s = (clock() - start) / 1e9
        if n >= max_iters or (n >= 1 and elapsed_s >= max_s):
            return samples, elapsed_s
        if n >= min_iters and elapsed_s >= min_s:
            return samples, elapsed_s
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)


def time_calls(
    fn: Callable[[], object],
    config: TimingConfig,
    clock: Callable[[], int] = time.perf_counter_ns,
    on_measure: Callable[[str], None] | None = None,
) -> TimingRun:
    """Warm up, then measure `fn`, returning every measured latency in milliseconds.

    `clock` returns nanoseconds; it is a parameter so the loop's bounds can be tested with a
    deterministic clock. `on_measure` is called with "start" after the warm-up, just before
    the first measured call, and with "end" just after the last (the GPU monitor reads the
    clocks there and pauses its sampling in between).
    """
    # The warm-up shares the measurement's caps so that a very slow cell cannot hang in it.
    warm, warm_s = _run_until(
        fn, config.warmup_min_iters, config.warmup_min_s, config.max_iters, config.max_s, clock
    )
    # Python's collector never runs inside a timed call, for any framework: it runs once now.
    gc.collect()
    if on_measure:
        on_measure("start")
    gc.disable()
    try:
        samples, measure_s = _run_until(
            fn, config.min_iters, config.min_s, config.max_iters, config.max_s, clock
        )
    finally:
        gc.enable()
        if on_measure:
            on_measure("end")
    return TimingRun(
        warmup_iters=len(warm), warmup_s=warm_s, samples_ms=samples, measure_s=measure_s
    )
