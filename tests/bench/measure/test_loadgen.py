"""The load generator's drivers on a model of known cost (a sleep): queueing, serial slots,
lanes, early stops, errors, and its own overhead."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.measure import loadgen
from bench.measure.load_rules import percentile
from bench.measure.loadgen import ThreadSlots

FEED = {"x": np.zeros((1, 3), np.float32)}


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
    assert percentile(four.latencies_ms, 0.5) >= 19.0


def test_one_slot_serialises_however_many_clients():
    slots = ThreadSlots(_sleeper(0.010), 1, "serial")
    try:
        run = loadgen.closed_loop(slots, FEED, 3, min_queries=30, min_s=0.1, max_s=10)
    finally:
        slots.close()
    assert run.queries_per_s <= 1 / 0.010 * 1.05
    assert percentile(run.latencies_ms, 0.5) >= 29.0  # two ahead of each request


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
    assert percentile(run.latencies_ms, 0.5) >= 9.0  # six clients queue for three
