"""Summary statistics of per-iteration latencies.

Every sample is kept in the result; these functions only summarise them. Percentiles use
numpy's default (linear interpolation between closest ranks) so they can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# Two-sided 95% quantile of the standard normal distribution.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, all in milliseconds."""

    count: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    iqr_ms: float
    median_ci95_low_ms: float
    median_ci95_high_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def median_ci_ranks(n: int, z: float = _Z95) -> tuple[int, int]:
    """1-based ranks (lower, upper) of the order statistics bounding the median's CI.

    Distribution-free: the number of samples below the median is Binomial(n, 1/2), so with the
    normal approximation the interval is [x_(j), x_(k)] with
    j = floor(n/2 - z*sqrt(n)/2) and k = ceil(1 + n/2 + z*sqrt(n)/2), clipped to [1, n].
    It needs no assumption on the latency distribution, which is skewed in practice.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    half_width = z * math.sqrt(n) / 2
    lower = max(1, math.floor(n / 2 - half_width))
    upper = min(n, math.ceil(1 + n / 2 + half_width))
    return lower, upper


def summarize(samples_ms: np.ndarray | list[float]) -> LatencyStats:
    """Statistics of latency samples (milliseconds)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("samples must be a non-empty 1-D sequence")
    ordered = np.sort(x)
    p25, p50, p75, p90, p95, p99 = np.percentile(x, [25, 50, 75, 90, 95, 99])
    lo, hi = median_ci_ranks(x.size)
    return LatencyStats(
        count=int(x.size),
        mean_ms=float(x.mean()),
        median_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        min_ms=float(ordered[0]),
        max_ms=float(ordered[-1]),
        # Sample standard deviation (ddof=1); zero for a single sample rather than NaN.
        std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        iqr_ms=float(p75 - p25),
        median_ci95_low_ms=float(ordered[lo - 1]),
        median_ci95_high_ms=float(ordered[hi - 1]),
    )


def throughput_sps(batch_size: int, median_ms: float) -> float:
    """Steady-state samples per second from the median latency of one batch."""
    if median_ms <= 0:
        raise ValueError("median latency must be positive")
    return batch_size * 1000.0 / median_ms


def achieved_gflops_per_s(
    flops_per_sample: float | None, batch_size: int, median_ms: float
) -> float | None:
    """Arithmetic throughput achieved at the median latency (None when FLOPs are unknown)."""
    if not flops_per_sample:
        return None
    if median_ms <= 0:
        raise ValueError("median latency must be positive")
    return flops_per_sample * batch_size / (median_ms / 1000.0) / 1e9
