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
