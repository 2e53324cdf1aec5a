"""The load scenarios' rules, by hand: percentiles, MLPerf's constraints, the sweeps, the rate
search."""

from __future__ import annotations

import numpy as np
import pytest

from bench.measure import load_rules as rules
from bench.measure.load_rules import RatePoint, SweepPoint


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert rules.percentile(values, 0.5) == 50
    assert rules.percentile(values, 0.99) == 99
    assert rules.percentile(values, 1.0) == 100
    assert rules.percentile([5.0, 1.0, 3.0], 0.5) == 3.0  # rank ceil(1.5) = 2 of 1, 3, 5
    assert rules.percentile([7.0], 0.999) == 7.0


def test_a_tail_percentile_of_too_few_latencies_is_not_reported():
    summary = rules.latency_summary([float(v) for v in range(1, 101)])
    assert summary["queries"] == 100 and summary["p50_ms"] == 50 and summary["p99_ms"] == 99
    assert summary["p999_ms"] is None  # 100 latencies: p99.9 would be the maximum
    assert summary["mean_ms"] == 50.5 and summary["max_ms"] == 100
    assert rules.latency_summary([1.0] * 99)["p99_ms"] is None
    thousand = rules.latency_summary([float(v) for v in range(1, 1001)])
    assert thousand["p999_ms"] == 999


def test_server_constraints_name_every_one_that_failed():
    fine = [10.0] * 300
    assert rules.server_constraints(fine, 6.0, 100, 256, 5.0) == []
    slow = [10.0] * 296 + [150.0] * 4  # 4 of 300 over: p99 (rank 297) = 150
    assert rules.server_constraints(slow, 6.0, 100, 256, 5.0) == ["p99 150.0 ms > the bound 100 ms"]
    assert rules.server_constraints([10.0] * 297 + [150.0] * 3, 6, 100, 256, 5) == []
    short = rules.server_constraints([10.0] * 200, 2.5, 100, 256, 5.0)
    assert short == ["200 queries < the minimum 256", "ran 2.5 s < the minimum 5 s"]


def test_the_over_bound_allowance_is_what_p99_tolerates():
    assert rules.over_bound_allowance(300) == 3  # p99 is rank 297: three may be over
    assert rules.over_bound_allowance(256) == 2  # rank ceil(253.44) = 254
    assert rules.over_bound_allowance(100) == 1
    assert rules.over_bound_allowance(50) == 0


def test_poisson_arrivals_are_seeded_and_at_the_rate():
    a = rules.poisson_arrivals(50.0, 20_000, seed=3)
    assert a[0] == 0 and np.all(np.diff(a) >= 0)
    np.testing.assert_array_equal(a, rules.poisson_arrivals(50.0, 20_000, seed=3))
    assert not np.array_equal(a, rules.poisson_arrivals(50.0, 20_000, seed=4))
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
    points, why = rules.doubling_sweep(measure, 1, 64, 0.05)
    assert seen == [1, 2, 4, 8]  # 4 -> 8 gained 4% < 5%: 16 is never tried
    assert why == "4 -> 8 gained +4.0% < 5%"
    assert rules.best_point(points).value == 8


def test_the_doubling_sweep_stops_at_its_cap_and_when_memory_runs_out():
    measure, seen = _throughputs({1: 1.0, 2: 2.0, 4: 4.0, 8: 8.0})
    assert rules.doubling_sweep(measure, 1, 4, 0.05)[1] == "reached the cap 4"
    assert seen == [1, 2, 4]

    def oom_at_4(value: int) -> SweepPoint:
        if value == 4:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad_alloc")
        return SweepPoint(value, float(value))

    points, why = rules.doubling_sweep(oom_at_4, 1, 64, 0.05)
    assert [p.value for p in points] == [1, 2] and why.startswith("out of memory at 4: [ONNX")

    def broken(value: int) -> SweepPoint:
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        rules.doubling_sweep(broken, 1, 64, 0.05)


def test_the_rate_search_finds_the_highest_valid_rate():
    tried = []

    def valid_up_to_37(rate: float) -> RatePoint:
        tried.append(rate)
        return RatePoint(rate, rate <= 37, {})

    points, best = rules.search_rate(valid_up_to_37, 10.0, bisections=3)
    # 10, 20 valid; 40 not; then 30 (valid), 35 (valid), 37.5 (not).
    assert tried == [10.0, 20.0, 40.0, 30.0, 35.0, 37.5]
    assert best is not None and best.rate_per_s == 35.0
    assert [p.rate_per_s for p in points] == sorted(tried)


def test_the_rate_search_halves_from_an_invalid_start_and_may_find_none():
    points, best = rules.search_rate(lambda r: RatePoint(r, r <= 3, {}), 10.0, bisections=1)
    assert [p.rate_per_s for p in points] == [2.5, 3.75, 5.0, 10.0] and best.rate_per_s == 2.5
    points, best = rules.search_rate(lambda r: RatePoint(r, False, {}), 8.0, 2, max_brackets=3)
    assert best is None and [p.rate_per_s for p in points] == [1.0, 2.0, 4.0, 8.0]


def test_the_rate_search_does_not_halve_below_its_floor():
    tried = []

    def never(rate: float) -> RatePoint:
        tried.append(rate)
        return RatePoint(rate, False, {})

    points, best = rules.search_rate(never, 8.0, bisections=2, min_rate=1.5)
    assert [p.rate_per_s for p in points] == [2.0, 4.0, 8.0]
    assert best is None and tried == [8.0, 4.0, 2.0]  # 1.0 is below the floor
