"""The LAUNCH-BOUND check's arithmetic with hand-computed intervals, and torch's profiler
trace read for real (on a CPU it records no device work)."""

from __future__ import annotations

import pytest

from bench.measure import device_busy
from bench.measure.device_busy import device_intervals, union_length, verdict


def test_union_counts_overlaps_once():
    # [0,4] and [2,6] overlap -> [0,6] = 6; [10,11] = 1; [11,13] touches it -> [10,13] = 3
    assert union_length([(2, 6), (0, 4), (10, 11), (11, 13)]) == 9
    assert union_length([]) == 0
    assert union_length([(5, 5)]) == 0


def test_device_intervals_keep_kernels_copies_and_memsets_only():
    trace = {
        "traceEvents": [
            {"ph": "X", "cat": "kernel", "ts": 100, "dur": 20},
            {"ph": "X", "cat": "gpu_memcpy", "ts": 130, "dur": 5},
            {"ph": "X", "cat": "gpu_memset", "ts": 140, "dur": 1.5},
            {"ph": "X", "cat": "cpu_op", "ts": 90, "dur": 100},  # host side
            {"ph": "X", "cat": "cuda_runtime", "ts": 95, "dur": 3},  # a launch, on the host
            {"ph": "i", "cat": "kernel", "ts": 0},  # not a duration event
            {"ph": "X", "cat": "kernel", "ts": 200},  # no duration
        ]
    }
    assert device_intervals(trace) == [(100.0, 120.0), (130.0, 135.0), (140.0, 141.5)]
    assert device_intervals({}) == [] and device_intervals([]) == []


def test_a_gpu_busy_for_a_third_of_the_run_is_launch_bound():
    v = verdict([3.0, 2.9, 3.1], busy_per_run_ms=1.0)  # median 3.0 ms, busy 1.0 ms
    assert v["busy_fraction"] == pytest.approx(0.333)
    assert v["launch_bound"] is True and v["launch_bound_below"] == 0.5
    busy = verdict([3.0, 2.9, 3.1], busy_per_run_ms=2.7)  # 90% busy: the device's time
    assert busy["busy_fraction"] == pytest.approx(0.9) and busy["launch_bound"] is False


def test_section_without_a_profiler_or_with_a_failing_one_gives_the_reason():
    none = device_busy.section([1.0], None, "no profiler for tvm")
    assert none == {"method": None, "reason": "no profiler for tvm", "launch_bound": None}

    def broken(runs):
        raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED")

    failed = device_busy.section([1.0], broken, "unused")
    assert failed["method"] is None and failed["launch_bound"] is None
    assert failed["reason"] == "the profiler failed: RuntimeError: CUPTI_ERROR_NOT_INITIALIZED"


def test_section_with_a_profile_divides_by_the_runs_profiled():
    calls = []

    def profile(runs):
        calls.append(runs)
        return "fake", 0.4

    s = device_busy.section([2.0, 2.0], profile, "unused")
    assert calls == [device_busy.PROFILED_RUNS]
    assert s["runs"] == device_busy.PROFILED_RUNS and s["busy_ms_per_run"] == 0.4
    assert s["busy_fraction"] == 0.2 and s["launch_bound"] is True


def test_torch_profiler_trace_is_read_and_a_cpu_run_has_no_device_work():
    """The real profiler, its Chrome trace exported and parsed: on a CPU no kernel ran."""
    torch = pytest.importorskip("torch")
    from bench.backends.pytorch import PROFILER_METHOD, profile_device_busy

    if torch.cuda.is_available():
        pytest.skip("a GPU here: tests/gpu covers the device side")
    x = torch.randn(64, 64)
    method, busy = profile_device_busy(lambda: x @ x, runs=3)
    assert method == PROFILER_METHOD and busy is None
