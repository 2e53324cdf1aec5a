"""A cell's load scenario, after its single-stream measurement: offline, multi-stream, server.

The same load generator (bench/measure/loadgen.py) for every framework, in the cell's own
process, on the model it loaded (offline also loads it at the other batch sizes of its sweep),
with the framework's own way of running requests at once (`Backend.request_slots`). What it
measured goes into the result's `scenario` section, with the harness's own overhead beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from bench.artifact import Artifact
from bench.backends.base import Backend
from bench.cell import Cell
from bench.errors import Unsupported
from bench.measure import load_rules as rules
from bench.measure import loadgen
from bench.phase import report_phase
from bench.scenario_spec import SCENARIOS, scenario_settings

BackendFactory = Callable[[Cell], Backend]


class SweepEnd(Exception):
    """A sweep's next point cannot be run here (a graph of one batch size): it ends there."""


def batch_feed(artifact: Artifact, batch_size: int) -> dict[str, np.ndarray]:
    """The first batch, as bench/run.py's timing loop feeds it (wrapping around the inputs)."""
    from bench.run import batch_indices  # bench.run imports this module lazily

    take = batch_indices(len(artifact.inputs), batch_size)
    return {artifact.input_name: np.ascontiguousarray(artifact.inputs[take])}


def _closed(backend: Backend, feed: dict, clients: int, in_flight: int, s: dict) -> dict:
    """One closed-loop point (after a short unrecorded warm-up of the slots)."""
    slots = backend.request_slots(in_flight)
    try:
        loadgen.closed_loop(slots, feed, clients, min_queries=2 * clients, min_s=0.2, max_s=5)
        run = loadgen.closed_loop(
            slots,
            feed,
            clients,
            min_queries=int(s["point_queries"]),
            min_s=s["point_seconds"],
            max_s=max(4 * s["point_seconds"], 30.0),
        )
    finally:
        slots.close()
    batch = len(next(iter(feed.values())))
    return {
        "in_flight": slots.n,
        "mechanism": slots.mechanism,
        "samples_per_s": run.queries_per_s * batch,
        "duration_s": run.duration_s,
        **rules.latency_summary(run.latencies_ms),
    }


def _offline(backend: Backend, artifact: Artifact, cell: Cell, make: BackendFactory) -> dict:
    s = scenario_settings("offline", cell.scenario_options)

    def at_batch(batch: int) -> rules.SweepPoint:
        report_phase(f"offline: batch {batch}")
        if batch == cell.batch_size:
            point = _closed(backend, batch_feed(artifact, batch), 1, 1, s)
        else:
            try:
                with make(replace(cell, batch_size=batch)) as other:
                    other.load()
                    point = _closed(other, batch_feed(artifact, batch), 1, 1, s)
            except Unsupported as exc:
                raise SweepEnd(f"batch {batch}: {exc}") from exc
        return rules.SweepPoint(batch, point["samples_per_s"], point)

    points, stop = _sweep(at_batch, cell.batch_size, int(s["max_batch"]), s["gain_threshold"])
    best = rules.best_point(points)
    return {
        "sweep": [{"batch_size": p.value, **p.extra} for p in points],
        "stopped": stop,
        "best_batch_size": best.value,
        "samples_per_s": best.samples_per_s,
        "note": "one batch in flight at a time; each batch size is loaded (and compiled) anew; "
        "parity was checked at the cell's own batch size",
    }


def _sweep(
    measure: Callable[[int], rules.SweepPoint], start: int, cap: int, threshold: float
) -> tuple[list[rules.SweepPoint], str]:
    points: list[rules.SweepPoint] = []

    def guarded(value: int) -> rules.SweepPoint:
        point = measure(value)
        points.append(point)
        return point

    try:
        _, stop = rules.doubling_sweep(guarded, start, cap, threshold)
    except SweepEnd as exc:
        stop = str(exc)
    if not points:
        raise Unsupported(f"no point of the sweep could run: {stop}")
    return points, stop


def _multi_stream(backend: Backend, artifact: Artifact, cell: Cell) -> dict:
    s = scenario_settings("multi_stream", cell.scenario_options)
    feed = batch_feed(artifact, cell.batch_size)

    def at_streams(n: int) -> rules.SweepPoint:
        report_phase(f"multi_stream: {n} in flight")
        point = _closed(backend, feed, n, n, s)
        return rules.SweepPoint(n, point["samples_per_s"], point)

    points, stop = _sweep(at_streams, 1, int(s["max_streams"]), s["gain_threshold"])
    best = rules.best_point(points)
    return {
        "sweep": [{"streams": p.value, **p.extra} for p in points],
        "stopped": stop,
        "best_streams": best.value,
        "samples_per_s": best.samples_per_s,
        "serial_reason": backend.concurrency_serial_reason(),
    }


def _server(backend: Backend, artifact: Artifact, cell: Cell, single_ms: float) -> dict:
    s = scenario_settings("server", cell.scenario_options)
    feed = batch_feed(artifact, cell.batch_size)
    in_flight = int(s["in_flight"]) or backend.preferred_in_flight()
    bound = s["p99_ms"]
    slots = backend.request_slots(in_flight)

    def at_rate(rate: float) -> rules.RatePoint:
        report_phase(f"server: {rate:.3g} requests/s, p99 bound {bound:g} ms")
        count = max(int(s["queries"]), math.ceil(rate * s["seconds"]))
        arrivals = rules.poisson_arrivals(rate, count, int(s["seed"]))
        # max_seconds stops a run that falls behind its schedule; it never cuts a slow rate's
        # schedule short (that would fail its minimum queries for the harness's sake).
        limit = max(s["max_seconds"], 1.2 * float(arrivals[-1]) + 1.0)
        run = loadgen.open_loop(slots, feed, arrivals, limit, bound_ms=bound)
        failed = rules.server_constraints(
            run.latencies_ms, run.duration_s, bound, int(s["queries"]), s["seconds"]
        )
        if run.stopped_early:  # too few queries and too short then, because of the bound
            failed = [f for f in failed if f.startswith("p99")]
            failed.append(
                f"stopped early: more than {rules.over_bound_allowance(count)} of the "
                f"{count} planned queries over the bound"
            )
        record = {
            "rate_per_s": round(rate, 3),
            "valid": not failed,
            "failed": failed,
            "achieved_per_s": run.queries_per_s,
            "duration_s": run.duration_s,
            **rules.latency_summary(run.latencies_ms),
        }
        return rules.RatePoint(round(rate, 3), not failed, record)

    # A start at half of what the framework serves with its requests in flight, one at a time
    # each; doubled or halved, but not below a tenth of it: there requests hardly queue, and a
    # run still over the bound is over it for good (its single requests' tail).
    capacity = in_flight * 1000.0 / single_ms
    start, floor = max(0.5 * capacity, 0.1), 0.1 * capacity
    try:
        if single_ms > bound:
            # No rate can help a request that alone takes longer than the bound; searching
            # ever lower rates would only take hours to say so.
            points, best = [], None
        else:
            points, best = rules.search_rate(
                at_rate, round(start, 3), int(s["bisections"]), min_rate=floor
            )
    finally:
        slots.close()
    if not points:
        why = [f"one request alone takes {single_ms:.1f} ms (median) > the bound {bound:g} ms"]
    elif best is None:
        why = [
            *points[0].result["failed"],
            f"at {points[0].rate_per_s:g}/s the framework is busy about "
            f"{points[0].rate_per_s / capacity:.0%} of the time: a lower rate would not help",
        ]
    else:
        why = None
    return {
        "p99_bound_ms": bound,
        "in_flight": slots.n,
        "mechanism": slots.mechanism,
        "rates": [p.result for p in points],
        "max_valid_rate_per_s": best.rate_per_s if best else None,
        "at_max_valid_rate": best.result if best else None,
        "verdict": "VALID" if best else "INVALID",
        "why_invalid": why,
        "seed": int(s["seed"]),
    }


def run_scenario(
    backend: Backend, artifact: Artifact, cell: Cell, single_ms: float, make: BackendFactory
) -> dict:
    """The cell's scenario on its loaded `backend`: its section of the result."""
    if backend.runs_own_loop:
        raise Unsupported(
            f"{cell.framework} runs its own timing loop in another process: the load "
            "scenarios run in the Python frameworks' processes only"
        )
    overhead = loadgen.harness_overhead(batch_feed(artifact, cell.batch_size))
    if cell.scenario == "offline":
        measured = _offline(backend, artifact, cell, make)
    elif cell.scenario == "multi_stream":
        measured = _multi_stream(backend, artifact, cell)
    else:
        measured = _server(backend, artifact, cell, single_ms)
    return {
        "name": cell.scenario,
        "question": SCENARIOS[cell.scenario].question,
        "settings": scenario_settings(cell.scenario, cell.scenario_options),
        "loadgen_overhead": overhead,
        **measured,
    }
