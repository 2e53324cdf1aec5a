"""Which single-stream measurement the latency tables read when a configuration ran under
several scenarios, and the scenario rows' medians over rounds (hand-made results)."""

from __future__ import annotations

import copy
from pathlib import Path

from bench.result import SCHEMA_VERSION, load_result
from runner.report import scenarios

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results" / f"v{SCHEMA_VERSION}"


def _as(scenario: str, **options: str):
    r = copy.deepcopy(load_result(FIXTURES / "ok-onnxruntime-3-rounds.json"))
    if scenario != "single_stream":
        r.cell = {**r.cell, "scenario": scenario, "scenario_options": options}
    return r


def test_the_single_stream_cell_stands_for_its_configuration():
    single, offline, server = _as("single_stream"), _as("offline"), _as("server", p99_ms="50")
    assert scenarios.single_stream_view([server, offline, single]) == [single]


def test_without_one_the_first_scenario_in_order_stands_for_it():
    offline, server = _as("offline"), _as("server", p99_ms="50")
    assert scenarios.single_stream_view([server, offline]) == [offline]
    # Two server cells under different bounds: one of them, never both.
    strict, loose = _as("server", p99_ms="50.0"), _as("server", p99_ms="100.0")
    assert scenarios.single_stream_view([loose, strict]) == [loose]


def test_another_configuration_keeps_its_own_row():
    single = _as("single_stream")
    other = _as("offline")
    other.cell = {**other.cell, "batch_size": 8}
    assert scenarios.single_stream_view([single, other]) == [single, other]


def test_a_figure_over_rounds_is_their_median_with_the_range():
    assert scenarios._median_text([]) == "-"
    assert scenarios._median_text([12.34]) == "12.3"
    assert scenarios._median_text([10.0, 30.0, 20.0]) == "20.0 [10.0..30.0] x3"
