"""Report table rows from hand-made results: the GPU columns and notes (pure logic)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from helpers import result_with_rounds

from bench.result import SCHEMA_VERSION, load_result, validate
from runner.report import tables

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results" / f"v{SCHEMA_VERSION}"


def _gpu_result(compute_median: float | None, peak: float | None, dropped: str | None):
    r = load_result(next(FIXTURES.glob("ok*.json")))
    r.cell = {**r.cell, "device": "cuda"}
    r.runtime = {**r.runtime, "tf32": False}
    if compute_median is not None:
        r.compute_timing = copy.deepcopy(r.timing)
        del r.compute_timing["load_ms"], r.compute_timing["cold_ms"]
        r.compute_timing["scope"] = "device_compute_only"
        r.compute_timing["estimate"].update(value=compute_median, low=1.0, high=2.5)
    r.gpu = {"source": "nvml", "peak_memory_mib": peak, "clocks_dropped": dropped is not None}
    r.gpu["clock_note"] = dropped
    validate(r.to_dict())
    return r


def test_cpu_tables_keep_their_columns():
    assert tables.headers("cpu") == tables.MAIN_HEADERS


def test_gpu_row_has_both_scopes_and_memory():
    r = _gpu_result(1.25, 812.4, None)
    headers, row = tables.headers("cuda"), tables.main_row(r, [r])
    assert len(headers) == len(row)
    cells = dict(zip(headers, row, strict=True))
    e = r.timing["estimate"]  # the fixture has three rounds: no one-slot mark
    assert cells["end-to-end ms [95% CI]"] == f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"
    assert cells["compute ms [95% CI]"] == "1.250 [1.000, 2.500]"
    assert cells["peak GPU MiB"] == "812"
    assert "CLOCKS" not in cells["notes"]


def test_gpu_row_without_compute_scope_and_with_a_clock_drop():
    r = _gpu_result(None, None, "SM clock fell from 1980 to 1700 MHz")
    cells = dict(zip(tables.headers("cuda"), tables.main_row(r, [r]), strict=True))
    assert cells["compute ms [95% CI]"] == "-" and cells["peak GPU MiB"] == "-"
    assert "CLOCKS DROPPED (SM clock fell from 1980 to 1700 MHz)" in cells["notes"]


def test_best_configuration_is_the_fastest_cell_that_passes_parity():
    results = [
        result_with_rounds("torch", "fp32", [10.0, 10.2, 9.9], "pass"),
        result_with_rounds("torch", "bf16", [6.0, 6.1, 5.9], "pass"),
        result_with_rounds("onnxruntime", "fp32", [8.0, 8.1, 7.9], "pass"),
        result_with_rounds(
            "onnxruntime", "int8", [3.0, 3.1, 2.9], "fail"
        ),  # fastest, changes answers
    ]
    rows = tables.best_rows(results)
    assert [(r[1], r[2], r[7]) for r in rows] == [
        ("torch", "torch bf16", "fastest"),
        ("onnxruntime", "onnxruntime fp32", ""),
    ]
    # 8.0/6.0, 8.1/6.1, 7.9/5.9 within each round: about 1.33x, and its interval
    assert rows[1][6].startswith("1.33x [")


def test_a_leader_inside_the_equivalence_band_is_tied_for_fastest():
    results = [
        result_with_rounds("torch", "fp32", [6.0, 6.1, 5.9], "pass"),
        result_with_rounds("onnxruntime", "fp32", [6.01, 6.1, 5.91], "pass"),
        result_with_rounds("openvino", "fp32", [9.0, 9.2, 8.9], "pass"),
    ]
    marks = {r[1]: r[7] for r in tables.best_rows(results)}
    assert marks == {"torch": "tied for fastest", "onnxruntime": "tied for fastest", "openvino": ""}


def test_speedups_are_paired_within_the_run_and_say_tie_inside_the_band():
    ref = result_with_rounds("torch", "fp32", [10.0, 20.0, 40.0], "pass")  # the machine slows down
    faster = result_with_rounds("onnxruntime", "fp32", [5.0, 10.0, 20.0], "pass")
    same = result_with_rounds("openvino", "fp32", [10.05, 20.0, 39.9], "pass")
    results = [ref, faster, same]
    up = tables.speedup(faster, results)
    assert (up.value, up.low, up.high, up.verdict.word) == pytest.approx((2.0, 2.0, 2.0, "faster"))
    assert tables.speedup(same, results).verdict.word == "tie"
    rows = {row[0]: row for row in tables.main_rows(results, results)}
    vs = tables.MAIN_HEADERS.index("vs torch [95% CI]")
    assert rows["torch"][vs] == "1.00x" and rows["onnxruntime"][vs] == "2.00x [2.00, 2.00] faster"
    assert rows["openvino"][vs].endswith(" tie")
    # A reference from another run is no reference: speed-ups are computed within each run.
    faster.run_id = "another run"
    assert tables.speedup(faster, results) is None


def test_tail_percentiles_need_enough_iterations():
    r = result_with_rounds("torch", "fp32", [10.0, 10.2, 9.9], "pass")  # 15 iterations
    row = dict(zip(tables.MAIN_HEADERS, tables.main_row(r, [r]), strict=True))
    assert row["p90 ms"] == "-" and row["p99 ms"] == "-" and row["rounds"] == "3"


def test_tf32_is_noted_on_fp32_cells_only():
    """An fp32 cell that ran TF32 math says so; an fp16 cell whose engine also allows TF32
    layers (TensorRT) is not fp32 lowered, and says nothing of it."""
    r = _gpu_result(None, None, None)
    r.runtime = {**r.runtime, "tf32": True}
    assert "TF32" in tables.notes(r)
    r.cell = {**r.cell, "precision": "fp16"}
    assert "TF32" not in tables.notes(r)


def test_a_launch_bound_cell_and_nodes_on_the_cpu_are_noted():
    """device_busy below half the host-timed run: LAUNCH-BOUND with the fraction; ORT nodes
    that fell back to the CPU EP: counted. Neither where the figures say otherwise."""
    r = _gpu_result(1.25, 812.4, None)
    r.compute_timing["device_busy"] = {
        "method": "torch.profiler", "runs": 20, "busy_ms_per_run": 0.5, "host_ms_median": 1.25,
        "busy_fraction": 0.4, "launch_bound": True, "launch_bound_below": 0.5,
    }  # fmt: skip
    r.runtime = {**r.runtime, "cpu_fallback_nodes": 3}
    validate(r.to_dict())
    note = tables.notes(r)
    assert "LAUNCH-BOUND (device busy 40% of compute time)" in note
    assert "3 NODES ON CPU" in note
    r.compute_timing["device_busy"].update(busy_fraction=0.9, launch_bound=False)
    r.runtime["cpu_fallback_nodes"] = 0
    assert "LAUNCH-BOUND" not in tables.notes(r) and "NODES ON CPU" not in tables.notes(r)
    r.compute_timing["device_busy"] = {"method": None, "reason": "none", "launch_bound": None}
    validate(r.to_dict())
    assert "LAUNCH-BOUND" not in tables.notes(r)
