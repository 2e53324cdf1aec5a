"""report.json: the report's answers and every cell's headline numbers, for CI dashboards and
scripts, in a versioned document with its JSON Schema (report.schema.json beside this file).

Everything in it is what report.md prints, from the same functions: the answers
(runner/report/answer.py), each cell's latency estimate with its interval, its speed-up over the
run's PyTorch reference with the verdict, its parity verdict and what it cost to get there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.result import CellResult
from runner.report import answer, costs, estimates, scenarios, tables

# 2: `scenarios`, the load scenarios' headline figures.
REPORT_VERSION = 2
SCHEMA_PATH = Path(__file__).parent / "report.schema.json"


def _cell(r: CellResult, results: list[CellResult], band: float) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "cell": r.cell,
        "label": tables.label(r.cell),
        "status": r.status,
        "reason": r.reason,
        "latency_ms": None,
        "compute_ms": None,
        "throughput_sps": None,
        "speedup_vs_torch": None,
        "parity": None,
        "costs": costs.figures(r),
    }
    if r.status != "ok" or not r.timing:
        return doc
    e = estimates.latency(r)
    doc["latency_ms"] = {"value": e.value, "low": e.low, "high": e.high, "rounds": e.rounds}
    if r.compute_timing:
        c = r.compute_timing["estimate"]
        doc["compute_ms"] = {"value": c["value"], "low": c["low"], "high": c["high"]}
    doc["throughput_sps"] = r.timing.get("throughput_sps")
    if (up := tables.speedup(r, results, band)) is not None:
        doc["speedup_vs_torch"] = {
            "value": up.value, "low": up.low, "high": up.high, "verdict": up.verdict.word,
            "one_slot": up.one_slot,
        }  # fmt: skip
    doc["parity"] = (r.parity or {}).get("verdict")
    return doc


def report_json(
    results: list[CellResult],
    runs: list[dict[str, Any]],
    band: float,
    every_result: list[CellResult] | None = None,
) -> dict:
    """The document: `runs` is one line per run (run id, host, CPU, state) as the report's
    environment lists it; `results` the single-stream view the answers read, `every_result`
    all of them (the scenario cells' figures; default: `results`)."""
    return {
        "report_version": REPORT_VERSION,
        "equivalence_band": band,
        "runs": runs,
        "answers": [a.to_dict() for a in answer.answers(results, band)],
        "cells": [_cell(r, results, band) for r in results],
        "scenarios": scenarios.headlines(every_result if every_result is not None else results),
    }


def validate(doc: dict) -> None:
    """Raise jsonschema's ValidationError when `doc` is not a report.json of this version."""
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
