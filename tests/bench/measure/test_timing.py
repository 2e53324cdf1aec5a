"""The timing loop's bounds, driven by a deterministic fake clock."""

from __future__ import annotations

import pytest

from bench.errors import UsageError
from bench.measure.timing import TimingConfig, time_calls

STEP_NS = 2_000_000  # every timed call takes exactly 2 ms


class FakeClock:
    """Integer nanoseconds that advance only when the timed function runs."""

    def __init__(self):
        self.now = 0
        self.calls = 0

    def __call__(self):
        return self.now

    def fn(self):
        self.calls += 1
        self.now += STEP_NS


def run(**bounds):
    clock = FakeClock()
    result = time_calls(clock.fn, TimingConfig(**bounds), clock=clock)
    return result, clock


def test_count_minimum_dominates():
    # 5 warm-up calls take 10 ms >= 1 ms; 20 measured calls take 40 ms >= 10 ms
    r, clock = run(warmup_min_iters=5, warmup_min_s=0.001, min_iters=20, min_s=0.01)
    assert r.warmup_iters == 5
    assert r.warmup_s == pytest.approx(0.010)
    assert r.samples_ms == [2.0] * 20
    assert r.measure_s == pytest.approx(0.040)
    assert clock.calls == 25


def test_duration_minimum_dominates():
    # warm-up: 2 ms * n >= 15 ms -> n = 8; measure: 2 ms * n >= 51 ms -> n = 26
    r, _ = run(warmup_min_iters=1, warmup_min_s=0.015, min_iters=3, min_s=0.051)
    assert r.warmup_iters == 8
    assert r.warmup_s == pytest.approx(0.016)
    assert len(r.samples_ms) == 26
    assert r.measure_s == pytest.approx(0.052)


def test_no_warmup():
    r, clock = run(warmup_min_iters=0, warmup_min_s=0.0, min_iters=3, min_s=0.0)
    assert r.warmup_iters == 0
    assert r.warmup_s == 0.0
    assert r.samples_ms == [2.0, 2.0, 2.0]
    assert clock.calls == 3


def test_max_iters_caps_measurement():
    # the 1 s minimum would need 500 calls; max_iters stops at 7
    r, _ = run(warmup_min_iters=0, warmup_min_s=0.0, min_iters=5, min_s=1.0, max_iters=7)
    assert r.samples_ms == [2.0] * 7


def test_max_iters_caps_warmup_too():
    r, _ = run(warmup_min_iters=50, warmup_min_s=0.0, min_iters=5, min_s=0.0, max_iters=7)
    assert r.warmup_iters == 7
    assert len(r.samples_ms) == 5


def test_max_s_caps_measurement():
    # 2 ms * n >= 10.1 ms -> n = 6, far below min_iters=1000
    r, _ = run(warmup_min_iters=0, warmup_min_s=0.0, min_iters=1000, min_s=0.0, max_s=0.0101)
    assert r.samples_ms == [2.0] * 6
    assert r.measure_s == pytest.approx(0.012)


def test_max_s_zero_still_takes_one_sample():
    r, _ = run(warmup_min_iters=0, warmup_min_s=0.0, min_iters=5, min_s=0.0, max_s=0.0)
    assert r.samples_ms == [2.0]


def test_default_config_is_valid():
    assert TimingConfig().to_dict()["min_iters"] == 30


def test_invalid_config_lists_every_problem():
    with pytest.raises(UsageError) as exc:
        TimingConfig(warmup_min_iters=-1, min_iters=0, warmup_min_s=-0.5, max_s=-1.0)
    msg = str(exc.value)
    for problem in (
        "warmup_min_iters must not be negative",
        "min_iters must be at least 1",
        "warmup_min_s must not be negative",
        "max_s must not be negative",
        "max_s must be at least min_s",  # -1 < default 3.0
    ):
        assert problem in msg
    assert "max_iters" not in msg  # 10000 >= 0 is fine


@pytest.mark.parametrize(
    ("bounds", "problem"),
    [
        ({"min_iters": 50, "max_iters": 10}, "max_iters must be at least min_iters"),
        ({"min_s": 5.0, "max_s": 4.0}, "max_s must be at least min_s"),
        ({"min_s": -1.0}, "min_s must not be negative"),
    ],
)
def test_invalid_config_single_problem(bounds, problem):
    with pytest.raises(UsageError, match=problem):
        TimingConfig(**bounds)


def test_on_measure_marks_the_measurement_not_the_warmup():
    """'start' after the 5 warm-up calls, before the first measured one; 'end' after the last:
    the GPU monitor's clock readings bracket exactly the measured calls."""
    clock = FakeClock()
    marks = []
    time_calls(
        clock.fn,
        TimingConfig(warmup_min_iters=5, warmup_min_s=0.0, min_iters=3, min_s=0.0),
        clock=clock,
        on_measure=lambda phase: marks.append((phase, clock.calls)),
    )
    assert marks == [("start", 5), ("end", 8)]
