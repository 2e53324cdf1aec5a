"""Each load scenario through real frameworks on a tiny model: the sweeps, the rate search,
MLPerf's VALID rule, each framework's own way of running requests at once."""

from __future__ import annotations

import pytest
import torch
from helpers import onnx_artifact_of, run_cell_to_file

from bench.cell import Cell
from bench.errors import UsageError

OFFLINE = {"max_batch": "4", "point_queries": "4", "point_seconds": "0.2"}
MULTI = {"max_streams": "4", "point_queries": "8", "point_seconds": "0.2", "gain_threshold": "0.5"}
SERVER = {"p99_ms": "50", "queries": "100", "seconds": "0.3", "bisections": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    return onnx_artifact_of(net, tmp_path_factory.mktemp("scen"))


def _run(tiny, tmp_path, framework, scenario, options, **cell):
    doc = run_cell_to_file(
        tiny, tmp_path, framework, scenario=scenario, scenario_options=options, **cell
    )
    assert doc["status"] == "ok", (doc["reason"], doc["log_tail"])
    assert doc["parity"]["verdict"] == "pass" and doc["timing"]["stats"]["median_ms"] > 0
    section = doc["scenario"]
    assert section["name"] == scenario and section["loadgen_overhead"]["closed_loop_p50_us"] > 0
    return section


@pytest.mark.parametrize("framework", ["onnxruntime", "openvino", "tvm"])
def test_offline_sweeps_the_batch_until_its_cap(tiny, tmp_path, framework):
    s = _run(tiny, tmp_path, framework, "offline", OFFLINE)
    batches = [p["batch_size"] for p in s["sweep"]]
    assert batches[0] == 1 and batches == [2**i for i in range(len(batches))]
    # It stops at the cap (4) or earlier, where a doubling gained under 5%, and says which.
    assert batches[-1] <= 4
    assert s["stopped"] == "reached the cap 4" or "< 5%" in s["stopped"]
    assert s["samples_per_s"] == max(p["samples_per_s"] for p in s["sweep"])
    assert s["best_batch_size"] in batches
    assert all(p["in_flight"] == 1 and p["queries"] >= 4 for p in s["sweep"])


def test_multi_stream_runs_requests_at_once_the_frameworks_own_way(tiny, tmp_path):
    ort = _run(tiny, tmp_path, "onnxruntime", "multi_stream", MULTI)
    assert ort["sweep"][0]["streams"] == 1 and ort["serial_reason"] is None
    two = ort["sweep"][1]  # the gain threshold of 50% may stop it after 2
    assert two["in_flight"] == 2 and "2 thread(s) calling onnxruntime's infer" in two["mechanism"]

    ov = _run(tiny, tmp_path, "openvino", "multi_stream", MULTI)
    assert "OpenVINO async infer requests on 1 stream(s)" in ov["sweep"][1]["mechanism"]

    # TVM's VM runs one call at a time: N clients share one slot, and their requests queue.
    tvm = _run(tiny, tmp_path, "tvm", "multi_stream", MULTI)
    assert tvm["serial_reason"] == "a TVM Relax VirtualMachine runs one call at a time"
    assert all(p["in_flight"] == 1 for p in tvm["sweep"])
    assert tvm["sweep"][1]["p50_ms"] > tvm["sweep"][0]["p50_ms"]


@pytest.mark.parametrize("framework", ["onnxruntime", "openvino"])
def test_server_finds_the_highest_valid_rate(tiny, tmp_path, framework):
    s = _run(tiny, tmp_path, framework, "server", SERVER)
    assert s["verdict"] == "VALID" and s["p99_bound_ms"] == 50 and s["seed"] == 0
    best = s["at_max_valid_rate"]
    assert best["valid"] and best["failed"] == [] and best["p99_ms"] <= 50
    assert best["rate_per_s"] == s["max_valid_rate_per_s"]
    assert best["queries"] >= 100 and best["duration_s"] >= 0.3
    rates = [p["rate_per_s"] for p in s["rates"]]
    assert rates == sorted(rates) and len(rates) >= 2
    # Every rate above the best one tried broke a constraint and says which.
    assert all(p["failed"] for p in s["rates"] if p["rate_per_s"] > best["rate_per_s"])


def test_a_bound_no_rate_keeps_is_invalid_with_the_constraint_that_failed(tiny, tmp_path):
    options = {**SERVER, "p99_ms": "0.001"}  # 1 microsecond: no run keeps it
    s = _run(tiny, tmp_path, "onnxruntime", "server", options)
    assert s["verdict"] == "INVALID" and s["max_valid_rate_per_s"] is None
    assert any("> the bound 0.001 ms" in why for why in s["why_invalid"])


def test_scenario_settings_are_validated_before_any_work():
    with pytest.raises(UsageError, match="unknown scenario 'batch'; valid choices: single_str"):
        Cell(model="resnet50", framework="onnxruntime", threads=1, scenario="batch")
    with pytest.raises(UsageError, match="scenario server has no setting 'p95_ms'; valid: p99_ms"):
        Cell(
            model="resnet50",
            framework="onnxruntime",
            threads=1,
            scenario="server",
            scenario_options={"p95_ms": "1"},
        )
    with pytest.raises(UsageError, match="setting max_batch='many' is not int"):
        Cell(
            model="resnet50",
            framework="onnxruntime",
            threads=1,
            scenario="offline",
            scenario_options={"max_batch": "many"},
        )


def test_a_scenario_is_part_of_the_cells_identity_and_round_trips():
    cell = Cell(
        model="resnet50",
        framework="onnxruntime",
        threads=1,
        scenario="server",
        scenario_options={"p99_ms": 50},
    )
    assert cell.id == "resnet50-onnxruntime-cpu-fp32-b1-server-p99_ms=50.0"
    assert cell.scenario_options == (("p99_ms", "50.0"),)
    assert Cell(**cell.to_dict()) == cell
    plain = Cell(model="resnet50", framework="onnxruntime", threads=1)
    assert "scenario" not in plain.to_dict() and plain.id == "resnet50-onnxruntime-cpu-fp32-b1"
