"""How much of a device-compute run the GPU actually worked: the LAUNCH-BOUND check.

`device_compute_only` is timed by the host clock around run + synchronise. That is the
device's time only when the host issues work faster than the device runs it. Eager PyTorch
at batch 1 launches 150-200 small kernels from Python per run; the GPU finishes each before
the next arrives and idles in between, so the host clock measures Python's launch time. A
profiler's device timeline says which it is: the union of the intervals in which a kernel,
copy or memset ran, per run, against the host-timed run. Below half of it the cell is
LAUNCH-BOUND: its number is the host's, and a faster GPU would not make it faster.

Pure functions here; the profiling itself is the backend's (only torch has one wired in, its
own profiler's CUDA activity through CUPTI).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

LAUNCH_BOUND_BELOW = 0.5  # the GPU busy for less than half of the host-timed run
PROFILED_RUNS = 20
# Chrome-trace categories of work on the device (torch.profiler / Kineto names).
DEVICE_CATEGORIES = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})


def device_intervals(trace: dict[str, Any]) -> list[tuple[float, float]]:
    """(start, end) in microseconds of every device activity in a Chrome trace."""
    events = trace.get("traceEvents", []) if isinstance(trace, dict) else []
    spans = []
    for event in events:
        if event.get("ph") != "X" or event.get("cat") not in DEVICE_CATEGORIES:
            continue
        start, length = event.get("ts"), event.get("dur")
        if isinstance(start, int | float) and isinstance(length, int | float) and length >= 0:
            spans.append((float(start), float(start) + float(length)))
    return spans


def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    """The length covered by the intervals: overlapping ones (kernels on two streams at once)
    count once."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


def verdict(host_samples_ms: list[float], busy_per_run_ms: float) -> dict[str, Any]:
    """The device's busy time per run against the host-timed run's median."""
    host_ms = statistics.median(host_samples_ms)
    fraction = busy_per_run_ms / host_ms if host_ms > 0 else None
    return {
        "busy_ms_per_run": round(busy_per_run_ms, 4),
        "host_ms_median": round(host_ms, 4),
        "busy_fraction": None if fraction is None else round(fraction, 3),
        "launch_bound": fraction is not None and fraction < LAUNCH_BOUND_BELOW,
        "launch_bound_below": LAUNCH_BOUND_BELOW,
    }


def section(
    host_samples_ms: list[float],
    profile: Callable[[int], tuple[str, float | None]] | None,
    why_none: str,
) -> dict[str, Any]:
    """The `device_busy` part of a compute-timing section.

    `profile(runs)` runs the staged model `runs` times under the framework's profiler and
    returns (method, busy ms per run), or a None busy time when the profiler saw no device
    work. Profiling happens after the timed loop, never inside it. A profiler that fails
    leaves the reason, not a failed cell."""
    if profile is None or not host_samples_ms:
        return {"method": None, "reason": why_none, "launch_bound": None}
    try:
        method, busy = profile(PROFILED_RUNS)
    except Exception as exc:  # the timing stands without this figure
        return {
            "method": None,
            "reason": f"the profiler failed: {type(exc).__name__}: {exc}"[:300],
            "launch_bound": None,
        }
    if busy is None:
        return {"method": method, "reason": "the profiler saw no device work", "launch_bound": None}
    return {"method": method, "runs": PROFILED_RUNS, **verdict(host_samples_ms, busy)}
