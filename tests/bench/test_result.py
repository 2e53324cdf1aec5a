"""The result type: JSON round trip, schema versions, atomic writes, fixtures of each version."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bench.result import (
    SCHEMA_VERSION,
    CellResult,
    ResultError,
    load_result,
    validate,
    write_result,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("v*/*.json")), ids=lambda p: p.name)
def test_fixtures_of_every_version_load_and_validate(path):
    result = load_result(path)
    assert result.schema_version == SCHEMA_VERSION
    validate(result.to_dict())


def test_fixture_per_status_exists():
    statuses = {load_result(p).status for p in FIXTURES.glob(f"v{SCHEMA_VERSION}/*.json")}
    assert {"ok", "unsupported", "failed"} <= statuses


def test_a_version_1_result_upgrades_to_one_without_gpu_sections():
    old = json.loads(next(FIXTURES.glob("v1/ok*.json")).read_text())
    new = load_result(next(FIXTURES.glob("v1/ok*.json"))).to_dict()
    assert (new["schema_version"], new["compute_timing"], new["gpu"]) == (
        SCHEMA_VERSION,
        None,
        None,
    )
    added = ("compute_timing", "gpu", "timing", "memory", "scenario")  # by versions 2, 3, 6, 7
    assert {k: v for k, v in new.items() if k not in added} == {
        **{k: v for k, v in old.items() if k != "timing"},
        "schema_version": SCHEMA_VERSION,
    }
    assert new["memory"] is None and new["scenario"] is None


def test_a_version_6_result_is_a_single_stream_cell():
    new = load_result(next(FIXTURES.glob("v6/ok*.json"))).to_dict()
    assert new["scenario"] is None and "scenario" not in new["cell"]
    validate(new)


def test_the_scenario_fixtures_are_real_runs_of_their_scenario():
    server = load_result(FIXTURES / f"v{SCHEMA_VERSION}" / "scenario-server-openvino.json")
    assert server.cell["scenario"] == "server" and server.scenario["verdict"] == "VALID"
    best = server.scenario["at_max_valid_rate"]
    assert server.scenario["max_valid_rate_per_s"] == best["rate_per_s"]
    offline = load_result(FIXTURES / f"v{SCHEMA_VERSION}" / "scenario-offline-onnxruntime.json")
    sweep = offline.scenario["sweep"]
    assert offline.scenario["best_batch_size"] in [p["batch_size"] for p in sweep]


def test_a_version_2_result_upgrades_to_a_cell_of_one_round():
    old = json.loads(next(FIXTURES.glob("v2/ok*.json")).read_text())
    new = load_result(next(FIXTURES.glob("v2/ok*.json"))).to_dict()
    timing, stats = new["timing"], old["timing"]["stats"]
    assert {k: v for k, v in timing.items() if k not in ("rounds", "estimate")} == old["timing"]
    (only,) = timing["rounds"]
    assert only["round"] == 1 and only["stats"] == stats and only["noise"] is None
    assert only["samples"] == [0, len(old["timing"]["samples_ms"])]
    estimate = timing["estimate"]
    assert (estimate["value"], estimate["low"], estimate["high"], estimate["rounds"]) == (
        stats["median_ms"],
        stats["median_ci95_low_ms"],
        stats["median_ci95_high_ms"],
        1,
    )
    assert "one time slot" in estimate["method"]


def test_the_version_3_fixture_has_three_rounds_in_one_cell():
    doc = json.loads(next(FIXTURES.glob("v3/ok*.json")).read_text())
    rounds = doc["timing"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert rounds[-1]["samples"][1] == len(doc["timing"]["samples_ms"])
    assert doc["timing"]["estimate"]["rounds"] == 3 and doc["parity"]["verdict"] == "pass"


def test_round_trip_is_lossless():
    doc = json.loads(next(FIXTURES.glob(f"v{SCHEMA_VERSION}/ok*.json")).read_text())
    assert CellResult.from_dict(doc).to_dict() == doc


def test_newer_schema_is_refused_and_non_results_too(tmp_path):
    doc = json.loads(next(FIXTURES.glob(f"v{SCHEMA_VERSION}/ok*.json")).read_text())
    doc["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "new.json").write_text(json.dumps(doc))
    with pytest.raises(ResultError, match="newer than this code"):
        load_result(tmp_path / "new.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ResultError, match="schema_version"):
        load_result(tmp_path / "other.json")


def test_schema_rejects_an_ok_result_without_timing():
    doc = json.loads(next(FIXTURES.glob(f"v{SCHEMA_VERSION}/ok*.json")).read_text())
    doc["timing"] = None
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_schema_rejects_a_failed_result_without_reason():
    doc = json.loads(next(FIXTURES.glob(f"v{SCHEMA_VERSION}/failed*.json")).read_text())
    doc["reason"] = None
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_atomic_write_keeps_the_old_file_when_serialisation_fails(tmp_path):
    good = load_result(next(FIXTURES.glob(f"v{SCHEMA_VERSION}/ok*.json")))
    path = write_result(good, tmp_path / "cell.json")
    before = path.read_text()
    bad = load_result(path)
    bad.timing["throughput_sps"] = {1, 2}  # not JSON at all: refused, never half-written
    with pytest.raises(TypeError):
        write_result(bad, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]


def test_a_non_finite_number_is_written_as_null_not_lost(tmp_path):
    result = load_result(next(FIXTURES.glob(f"v{SCHEMA_VERSION}/ok*.json")))
    result.timing["achieved_gflops_per_s"] = float("inf")
    doc = json.loads(write_result(result, tmp_path / "cell.json").read_text())
    assert doc["timing"]["achieved_gflops_per_s"] is None


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        CellResult(cell={}, status="great", environment={})
