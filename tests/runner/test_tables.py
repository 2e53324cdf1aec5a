"""Report table rows from hand-made results: the GPU columns and notes (pure logic)."""

from __future__ import annotations

import copy
from pathlib import Path

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
        r.compute_timing["stats"].update(
            median_ms=compute_median, median_ci95_low_ms=1.0, median_ci95_high_ms=2.5
        )
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
    s = r.timing["stats"]
    assert cells["end-to-end ms [95% CI]"] == (
        f"{s['median_ms']:.3f} [{s['median_ci95_low_ms']:.3f}, {s['median_ci95_high_ms']:.3f}]"
    )
    assert cells["compute ms [95% CI]"] == "1.250 [1.000, 2.500]"
    assert cells["peak GPU MiB"] == "812"
    assert "CLOCKS" not in cells["notes"]


def test_gpu_row_without_compute_scope_and_with_a_clock_drop():
    r = _gpu_result(None, None, "SM clock fell from 1980 to 1700 MHz")
    cells = dict(zip(tables.headers("cuda"), tables.main_row(r, [r]), strict=True))
    assert cells["compute ms [95% CI]"] == "-" and cells["peak GPU MiB"] == "-"
    assert cells["notes"].endswith("CLOCKS DROPPED (SM clock fell from 1980 to 1700 MHz)")


def _cpu_result(framework: str, precision: str, median: float, verdict: str):
    r = load_result(next(FIXTURES.glob("ok*.json")))
    r.cell = {**r.cell, "framework": framework, "precision": precision, "batch_size": 1}
    r.timing = copy.deepcopy(r.timing)
    r.timing["stats"]["median_ms"] = median
    r.timing["throughput_sps"] = 1000.0 / median
    r.parity = {**r.parity, "verdict": verdict, "top1_agreement": 1.0 if verdict == "pass" else 0.5}
    return r


def test_best_configuration_is_the_fastest_cell_that_passes_parity():
    results = [
        _cpu_result("torch", "fp32", 10.0, "pass"),
        _cpu_result("torch", "bf16", 6.0, "pass"),
        _cpu_result("onnxruntime", "fp32", 8.0, "pass"),
        _cpu_result("onnxruntime", "int8", 3.0, "fail"),  # fastest, but changes answers
    ]
    rows = tables.best_rows(results)
    assert [(r[1], r[2], r[3], r[6]) for r in rows] == [
        ("torch", "torch bf16", "6.000", "fastest"),
        ("onnxruntime", "onnxruntime fp32", "8.000", ""),
    ]
