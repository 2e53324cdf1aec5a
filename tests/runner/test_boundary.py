"""The Python API vs C++ vs ctypes table from hand-made results (pure logic)."""

from __future__ import annotations

import copy
from pathlib import Path

from bench.result import SCHEMA_VERSION, load_result
from runner.report import boundary
from runner.report.write import sections

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results" / f"v{SCHEMA_VERSION}"


def _result(framework: str, median_ms: float, model: str = "resnet50", **cell: object):
    r = copy.deepcopy(load_result(next(FIXTURES.glob("ok*.json"))))
    r.cell = {**r.cell, "framework": framework, "model": model, "options": {}, **cell}
    r.timing["stats"].update(median_ms=median_ms, p99_ms=median_ms * 2)
    return r


def test_variant_names_split_into_framework_and_variant():
    assert boundary.split_variant("openvino-cpp") == ("openvino", "cpp")
    assert boundary.split_variant("torch-ctypes") == ("torch", "ctypes")
    assert boundary.split_variant("openvino") == ("openvino", "python")
    assert boundary.split_variant("onnxruntime") == ("onnxruntime", "python")


def test_three_variants_side_by_side_with_differences_in_microseconds():
    results = [
        _result("openvino", 40.25),
        _result("openvino-ctypes", 40.125),
        _result("openvino-cpp", 40.0),
        _result("onnxruntime", 30.0),  # no native variant: not in this table
        _result("openvino", 10.0, options={"hint": "throughput"}),  # not what the runners run
    ]
    rows = boundary.boundary_rows(results)
    assert len(rows) == 1
    row = dict(zip(boundary.BOUNDARY_HEADERS, rows[0], strict=True))
    assert row["framework"] == "openvino"
    assert (row["Python API ms"], row["ctypes ms"], row["C++ ms"]) == ("40.250", "40.125", "40.000")
    assert row["Python − C++ µs"] == "+250.0"  # (40.25 - 40.0) ms
    assert row["ctypes − C++ µs"] == "+125.0"
    assert row["parity"] == "pass"


def test_a_missing_variant_shows_a_dash_and_a_failed_parity_shows():
    failing = _result("torch-cpp", 5.0)
    failing.parity = {**failing.parity, "verdict": "fail"}
    rows = boundary.boundary_rows([_result("torch", 6.0), failing])
    row = dict(zip(boundary.BOUNDARY_HEADERS, rows[0], strict=True))
    assert row["ctypes ms"] == "-" and row["ctypes − C++ µs"] == "-"
    assert row["Python − C++ µs"] == "+1000.0"
    assert row["parity"] == "FAIL"


def test_per_call_overhead_comes_from_the_probe_model_at_batch_1():
    probe = "overhead_probe"
    results = [
        _result("torch", 0.022, model=probe),
        _result("torch-ctypes", 0.026, model=probe),
        _result("torch-cpp", 0.007, model=probe),
        _result("torch-cpp", 0.009, model=probe, batch_size=8),  # batch 8: not a per-call cost
        _result("torch-cpp", 61.0),
    ]
    rows = boundary.overhead_rows(results)
    run = results[0].run_id or "-"
    assert rows == [(run, "torch", "22.0", "26.0", "7.0", "44.0 / 52.0 / 14.0")]
    titles = [s.title for s in sections(results)]
    assert "Python API vs C++ vs ctypes" in titles
    assert "Per-call overhead (overhead_probe, batch 1)" in titles


def test_repeated_runs_stay_apart():
    first = [_result("openvino", 44.0), _result("openvino-cpp", 45.0)]
    second = [_result("openvino", 48.0), _result("openvino-cpp", 42.0)]
    for r in first:
        r.run_id = "a"
    for r in second:
        r.run_id = "b"
    rows = boundary.boundary_rows(first + second)
    assert [(row[0], row[8]) for row in rows] == [("a", "-1000.0"), ("b", "+6000.0")]


def test_the_variants_are_compared_round_by_round_with_a_verdict():
    """Time ratios to the C++ runner within each round: Python 22/20 and 22/20 (1.1 in both
    rounds: slower), ctypes 20.1/20 and 19.9/20 (inside the ±2% band: a tie)."""
    medians = {"openvino": (22.0, 22.0), "openvino-ctypes": (20.1, 19.9), "openvino-cpp": (20, 20)}
    results = []
    for framework, (first, second) in medians.items():
        r = _result(framework, first)
        r.run_id = "paired"
        r.timing["rounds"] = [
            {"round": 1, "stats": {"median_ms": first}},
            {"round": 2, "stats": {"median_ms": second}},
        ]
        results.append(r)
    (row,) = [
        dict(zip(boundary.BOUNDARY_HEADERS, r, strict=True))
        for r in boundary.boundary_rows(results)
    ]
    assert row["Python / C++ time [95% CI]"] == "1.100 [1.100, 1.100] slower"
    ratio, verdict = row["ctypes / C++ time [95% CI]"].rsplit(" ", 1)
    assert verdict == "tie" and ratio.startswith("1.000 [")
