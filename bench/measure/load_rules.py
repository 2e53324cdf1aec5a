"""The load scenarios' rules, as pure functions of what was measured: nearest-rank
percentiles, MLPerf's server constraints (VALID or which failed), the early-stop allowance, the
seeded Poisson schedule, the doubling sweep's stop rule and the rate search. Tested with
hand-computed values and fake measurements; bench/measure/loadgen.py is the engine that
measures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# A percentile of fewer samples than this many is the maximum (or near it), not the tail it
# names: p99.9 is reported from 1000 latencies on, p99 from 100.
MIN_SAMPLES = {0.99: 100, 0.999: 1000}


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
    measure: Callable[[float], RatePoint],
    start: float,
    bisections: int,
    max_brackets: int = 8,
    min_rate: float = 0.0,
) -> tuple[list[RatePoint], RatePoint | None]:
    """The highest rate whose run is VALID: bracket it by doubling (from a valid start) or
    halving (from an invalid one, never below `min_rate`: a load so light that requests no
    longer queue, where a lower rate cannot help), then bisect the bracket `bisections` times.
    Returns every point measured, by rate, and the best valid one (None: none held)."""
    points: list[RatePoint] = []
    first = measure(start)
    points.append(first)
    low = first if first.valid else None
    high = None if first.valid else first
    for _ in range(max_brackets):
        if low is not None and high is not None:
            break
        rate = high.rate_per_s / 2 if low is None else low.rate_per_s * 2  # type: ignore[union-attr]
        if rate < min_rate:
            break
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
