"""Latency summary statistics, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest

from bench.measure.stats import (
    achieved_gflops_per_s,
    median_ci_ranks,
    summarize,
    throughput_sps,
)


def test_summarize_odd_count():
    # sorted [1, 2, 3, 4, 10]; numpy linear percentile position = (n-1)*p = 4p
    s = summarize([4.0, 10.0, 1.0, 3.0, 2.0])
    assert s.count == 5
    assert s.mean_ms == pytest.approx(4.0)  # 20 / 5
    assert s.median_ms == pytest.approx(3.0)  # position 2
    assert s.p90_ms == pytest.approx(7.6)  # position 3.6: 4 + 0.6*(10-4)
    assert s.p95_ms == pytest.approx(8.8)  # position 3.8: 4 + 0.8*6
    assert s.p99_ms == pytest.approx(9.76)  # position 3.96: 4 + 0.96*6
    assert s.min_ms == 1.0
    assert s.max_ms == 10.0
    # deviations -3,-2,-1,0,6 -> squares sum 50; ddof=1 -> 50/4
    assert s.std_ms == pytest.approx(math.sqrt(12.5))  # 3.5355...
    assert s.iqr_ms == pytest.approx(2.0)  # p75 (pos 3) 4 - p25 (pos 1) 2
    # ranks for n=5: half = 1.96*sqrt(5)/2 = 2.191; floor(0.309) = 0 -> 1; ceil(5.691) = 6 -> 5
    assert (s.median_ci95_low_ms, s.median_ci95_high_ms) == (1.0, 10.0)


def test_summarize_even_count():
    # sorted [1, 2, 3, 4]; position = 3p
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s.mean_ms == pytest.approx(2.5)
    assert s.median_ms == pytest.approx(2.5)  # position 1.5
    assert s.p90_ms == pytest.approx(3.7)  # position 2.7
    assert s.p95_ms == pytest.approx(3.85)  # position 2.85
    assert s.p99_ms == pytest.approx(3.97)  # position 2.97
    assert s.iqr_ms == pytest.approx(1.5)  # 3.25 (pos 2.25) - 1.75 (pos 0.75)
    # squares of deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; ddof=1 -> 5/3
    assert s.std_ms == pytest.approx(1.2909944)
    # n=4: half = 1.96; floor(0.04) = 0 -> 1; ceil(4.96) = 5 -> 4
    assert (s.median_ci95_low_ms, s.median_ci95_high_ms) == (1.0, 4.0)


def test_summarize_single_sample():
    s = summarize([7.5])
    assert s.count == 1
    assert s.std_ms == 0.0  # not NaN
    assert s.iqr_ms == 0.0
    assert s.median_ms == s.p99_ms == s.min_ms == s.max_ms == 7.5
    assert (s.median_ci95_low_ms, s.median_ci95_high_ms) == (7.5, 7.5)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        # half = 1.959964*sqrt(n)/2
        (1, (1, 1)),  # half 0.98: floor(-0.48) -> 1; ceil(2.48) = 3 -> clipped to 1
        (10, (1, 10)),  # half 3.0990: floor(1.901) = 1; ceil(9.099) = 10
        (30, (9, 22)),  # half 5.3676: floor(9.632) = 9; ceil(21.368) = 22
        (100, (40, 61)),  # half 9.7998: floor(40.200) = 40; ceil(60.800) = 61
    ],
)
def test_median_ci_ranks(n, expected):
    assert median_ci_ranks(n) == expected


def test_median_ci_ranks_needs_a_sample():
    with pytest.raises(ValueError):
        median_ci_ranks(0)


def test_ci_bounds_are_order_statistics_n30():
    # squares of 30..1 in descending order; sorted ascending rank r holds r*r
    s = summarize([float(v * v) for v in range(30, 0, -1)])
    assert s.median_ci95_low_ms == 81.0  # rank 9
    assert s.median_ci95_high_ms == 484.0  # rank 22


def test_ci_bounds_are_order_statistics_n100():
    # 0.5, 1.0, ..., 50.0 in descending order; rank r holds 0.5*r
    s = summarize([0.5 * v for v in range(100, 0, -1)])
    assert s.median_ci95_low_ms == 20.0  # rank 40
    assert s.median_ci95_high_ms == 30.5  # rank 61
    assert s.median_ms == pytest.approx(25.25)  # (25.0 + 25.5) / 2


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0], [3.0, 4.0]]])
def test_summarize_rejects_empty_or_2d(bad):
    with pytest.raises(ValueError):
        summarize(bad)


def test_throughput():
    assert throughput_sps(8, 4.0) == pytest.approx(2000.0)  # 8 * 1000 / 4
    assert throughput_sps(1, 0.5) == pytest.approx(2000.0)  # 1 * 1000 / 0.5


@pytest.mark.parametrize("median", [0.0, -1.0])
def test_throughput_rejects_non_positive_median(median):
    with pytest.raises(ValueError):
        throughput_sps(1, median)


def test_achieved_gflops():
    # 0.6e9 FLOPs * 4 samples / 0.002 s = 1.2e12 FLOP/s = 1200 GFLOP/s
    assert achieved_gflops_per_s(0.6e9, 4, 2.0) == pytest.approx(1200.0)


@pytest.mark.parametrize("flops", [None, 0])
def test_achieved_gflops_unknown_flops(flops):
    assert achieved_gflops_per_s(flops, 4, 2.0) is None
