"""The load generator: its rules by hand, its drivers on a model of known cost (a sleep)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.measure import loadgen
from bench.measure.loadgen import RatePoint, SweepPoint, ThreadSlots

FEED = {"x": np.zeros((1, 3), np.float32)}


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert loadgen.percentile(values, 0.5) == 50
    assert loadgen.percentile(values, 0.99) == 99
    assert loadgen.percentile(values, 1.0) == 100
    assert loadgen.percentile([5.0, 1.0, 3.0], 0.5) == 3.0  # rank ceil(1.5) = 2 of 1, 3, 5
    assert loadgen.percentile([7.0], 0.999) == 7.0


def test_a_tail_percentile_of_too_few_latencies_is_not_reported():
    summary = loadgen.latency_summary([float(v) for v in range(1, 101)])
    assert summary["queries"] == 100 and summary["p50_ms"] == 50 and summary["p99_ms"] == 99
    assert summary["p999_ms"] is None  # 100 latencies: p99.9 would be the maximum
    assert summary["mean_ms"] == 50.5 and summary["max_ms"] == 100
    assert loadgen.latency_summary([1.0] * 99)["p99_ms"] is None
    thousand = loadgen.latency_summary([float(v) for v in range(1, 1001)])
    assert thousand["p999_ms"] == 999


def test_server_constraints_name_every_one_that_failed():
    fine = [10.0] * 300
    assert loadgen.server_constraints(fine, 6.0, 100, 256, 5.0) == []
    slow = [10.0] * 296 + [150.0] * 4  # 4 of 300 over: p99 (rank 297) = 150
    assert loadgen.server_constraints(slow, 6.0, 100, 256, 5.0) == [
        "p99 150.0 ms > the bound 100 ms"
    ]
    assert loadgen.server_constraints([10.0] * 297 + [150.0] * 3, 6, 100, 256, 5) == []
    short = loadgen.server_constraints([10.0] * 200, 2.5, 100, 256, 5.0)
    assert short == ["200 queries < the minimum 256", "ran 2.5 s < the minimum 5 s"]


def test_the_over_bound_allowance_is_what_p99_tolerates():
    assert loadgen.over_bound_allowance(300) == 3  # p99 is rank 297: three may be over
    assert loadgen.over_bound_allowance(256) == 2  # rank ceil(253.44) = 254
    assert loadgen.over_bound_allowance(100) == 1
    assert loadgen.over_bound_allowance(50) == 0


def test_poisson_arrivals_are_seeded_and_at_the_rate():
    a = loadgen.poisson_arrivals(50.0, 20_000, seed=3)
    assert a[0] == 0 and np.all(np.diff(a) >= 0)
    np.testing.assert_array_equal(a, loadgen.poisson_arrivals(50.0, 20_000, seed=3))
    assert not np.array_equal(a, loadgen.poisson_arrivals(50.0, 20_000, seed=4))
    gaps = np.diff(a)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.03)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.05)  # exponential: std = mean


def _throughputs(table: dict[int, float]):
    seen = []

    def measure(value: int) -> SweepPoint:
        seen.append(value)
        return SweepPoint(value, table[value])

    return measure, seen


def test_the_doubling_sweep_stops_when_a_doubling_gains_under_the_threshold():
    measure, seen = _throughputs({1: 100.0, 2: 180.0, 4: 250.0, 8: 260.0, 16: 300.0})
    points, why = loadgen.doubling_sweep(measure, 1, 64, 0.05)
    assert seen == [1, 2, 4, 8]  # 4 -> 8 gained 4% < 5%: 16 is never tried
    assert why == "4 -> 8 gained +4.0% < 5%"
    assert loadgen.best_point(points).value == 8


def test_the_doubling_sweep_stops_at_its_cap_and_when_memory_runs_out():
    measure, seen = _throughputs({1: 1.0, 2: 2.0, 4: 4.0, 8: 8.0})
    assert loadgen.doubling_sweep(measure, 1, 4, 0.05)[1] == "reached the cap 4"
    assert seen == [1, 2, 4]

    def oom_at_4(value: int) -> SweepPoint:
        if value == 4:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad_alloc")
        return SweepPoint(value, float(value))

    points, why = loadgen.doubling_sweep(oom_at_4, 1, 64, 0.05)
    assert [p.value for p in points] == [1, 2] and why.startswith("out of memory at 4: [ONNX")

    def broken(value: int) -> SweepPoint:
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        loadgen.doubling_sweep(broken, 1, 64, 0.05)


def test_the_rate_search_finds_the_highest_valid_rate():
    tried = []

    def valid_up_to_37(rate: float) -> RatePoint:
        tried.append(rate)
        return RatePoint(rate, rate <= 37, {})

    points, best = loadgen.search_rate(valid_up_to_37, 10.0, bisections=3)
    # 10, 20 valid; 40 not; then 30 (valid), 35 (valid), 37.5 (not).
    assert tried == [10.0, 20.0, 40.0, 30.0, 35.0, 37.5]
    assert best is not None and best.rate_per_s == 35.0
    assert [p.rate_per_s for p in points] == sorted(tried)


def test_the_rate_search_halves_from_an_invalid_start_and_may_find_none():
    points, best = loadgen.search_rate(lambda r: RatePoint(r, r <= 3, {}), 10.0, bisections=1)
    assert [p.rate_per_s for p in points] == [2.5, 3.75, 5.0, 10.0] and best.rate_per_s == 2.5
    points, best = loadgen.search_rate(lambda r: RatePoint(r, False, {}), 8.0, 2, max_brackets=3)
    assert best is None and [p.rate_per_s for p in points] == [1.0, 2.0, 4.0, 8.0]


def _sleeper(seconds: float):
    def infer(_feed):
        time.sleep(seconds)

    return infer


def test_closed_loop_with_fewer_slots_than_clients_queues():
    # 10 ms a request. Two slots: about 200/s; four clients on them wait for one another.
    slots = ThreadSlots(_sleeper(0.010), 2, "test")
    try:
        two = loadgen.closed_loop(slots, FEED, 2, min_queries=40, min_s=0.2, max_s=10)
        four = loadgen.closed_loop(slots, FEED, 4, min_queries=40, min_s=0.2, max_s=10)
    finally:
        slots.close()
    assert len(two.latencies_ms) >= 40
    assert min(two.latencies_ms) >= 10.0  # a sleep is at least its length
    assert two.queries_per_s <= 2 / 0.010 * 1.05  # never faster than two slots can serve
    assert two.queries_per_s > 2 / 0.010 / 3  # and clearly more than one slot's worth of it
    # Four clients, two slots: each request waits for another one to finish first.
    assert loadgen.percentile(four.latencies_ms, 0.5) >= 19.0


def test_one_slot_serialises_however_many_clients():
    slots = ThreadSlots(_sleeper(0.010), 1, "serial")
    try:
        run = loadgen.closed_loop(slots, FEED, 3, min_queries=30, min_s=0.1, max_s=10)
    finally:
        slots.close()
    assert run.queries_per_s <= 1 / 0.010 * 1.05
    assert loadgen.percentile(run.latencies_ms, 0.5) >= 29.0  # two ahead of each request


def test_open_loop_latency_counts_queueing_from_the_scheduled_arrival():
    # Ten requests all due at once on one 10 ms slot: the last waits for the nine before it.
    slots = ThreadSlots(_sleeper(0.010), 1, "serial")
    try:
        run = loadgen.open_loop(slots, FEED, np.zeros(10), max_s=10)
    finally:
        slots.close()
    latencies = sorted(run.latencies_ms)
    assert len(latencies) == 10
    assert latencies[0] >= 10.0 and latencies[-1] >= 100.0


def test_open_loop_stops_early_once_the_bound_cannot_hold():
    slots = ThreadSlots(_sleeper(0.020), 1, "serial")
    try:
        # 100 due at once: each waits for the ones before it; a 50 ms bound breaks at the 3rd.
        run = loadgen.open_loop(slots, FEED, np.zeros(100), max_s=30, bound_ms=50)
    finally:
        slots.close()
    assert run.stopped_early and len(run.latencies_ms) < 100


def test_a_failing_request_fails_the_run_with_its_error():
    def broken(_feed):
        raise RuntimeError("the framework said no")

    slots = ThreadSlots(broken, 2, "test")
    with pytest.raises(RuntimeError, match="the framework said no"):
        loadgen.closed_loop(slots, FEED, 2, min_queries=10, min_s=0, max_s=5)
    slots.close()


def test_the_harness_overhead_is_measured_on_a_no_op_model():
    overhead = loadgen.harness_overhead(FEED)
    for key in ("closed_loop_p50_us", "closed_loop_p99_us", "open_loop_p50_us"):
        assert 0 < overhead[key] < 1_000_000  # something, and under a second
    assert overhead["closed_loop_p99_us"] >= overhead["closed_loop_p50_us"]


def test_lane_slots_never_run_two_requests_on_one_lane():
    busy: set[int] = set()
    overlaps: list[int] = []

    def lane(number: int):
        def infer(_feed):
            if number in busy:
                overlaps.append(number)
            busy.add(number)
            time.sleep(0.005)
            busy.discard(number)

        return infer

    closed = []
    slots = loadgen.LaneSlots([lane(0), lane(1), lane(2)], "3 lanes", lambda: closed.append(1))
    run = loadgen.closed_loop(slots, FEED, 6, min_queries=60, min_s=0.1, max_s=10)
    slots.close()
    assert overlaps == [] and closed == [1] and slots.n == 3
    assert run.queries_per_s <= 3 / 0.005 * 1.05  # three lanes at most
    assert loadgen.percentile(run.latencies_ms, 0.5) >= 9.0  # six clients queue for three
