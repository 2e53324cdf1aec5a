"""Rounds through the real runner: each round of each cell a fresh process, in the recorded
seeded order, parity once, resume keeping finished rounds, target_ci stopping the run; the
round plan's orders and the matrix keys (pure logic)."""

from __future__ import annotations

import json

import pytest
from helpers import assert_valid_result_file, result_with_rounds, run_locally

from bench.cell import Cell
from bench.errors import UsageError
from runner.matrix import parse_matrix
from runner.rounds import RoundPlan, group_key, stop_reason

ROUNDS = "\nrounds: {rounds}\norder_seed: 11\n{extra}"


def _matrix(small_matrix_file, rounds=3, extra=""):
    path = small_matrix_file(frameworks=("onnxruntime", "openvino"))
    path.write_text(path.read_text() + ROUNDS.format(rounds=rounds, extra=extra))
    return path


def test_every_round_runs_each_cell_in_a_fresh_process_in_the_recorded_order(
    small_matrix_file, small_artifact, tmp_path
):
    summary = run_locally(_matrix(small_matrix_file), small_artifact, tmp_path / "r", "a")
    run = summary.run_dir
    manifest = json.loads((run / "manifest.json").read_text())
    orders = manifest["rounds"]["orders"]
    assert manifest["rounds"]["completed"] == 3 and len(orders) == 3
    assert manifest["rounds"]["stopped_by"] == "3 rounds, as asked"
    assert manifest["rounds"]["order_seed"] == 11
    cells = sorted(manifest["cells"])
    for index, order in orders.items():
        assert sorted(order) == cells
        for position, cell_id in enumerate(order):
            own = json.loads((run / "rounds" / cell_id / f"r{index}.json").read_text())
            record = own["timing"]["rounds"][0]
            # Each round's own process: its own load, its own log, its place in the order.
            assert record["round"] == int(index) and record["position"] == position
            assert record["load_ms"] > 0 and record["noise"]["cpus"]
            log = f"{cell_id}.log" if index == "1" else f"{cell_id}.r{index}.log"
            assert (run / "logs" / log).stat().st_size > 0
            assert (own["parity"] is None) == (index != "1")  # parity once, in round 1
    for cell_id in cells:
        doc = assert_valid_result_file(run / "cells" / f"{cell_id}.json")
        assert [r["round"] for r in doc["timing"]["rounds"]] == [1, 2, 3]
        assert doc["timing"]["estimate"]["rounds"] == 3 and doc["parity"]["verdict"] == "pass"
    # Runs of the same seed run the same orders.
    again = run_locally(_matrix(small_matrix_file), small_artifact, tmp_path / "r", "b")
    assert json.loads((again.run_dir / "manifest.json").read_text())["rounds"]["orders"] == orders


def test_resume_keeps_finished_rounds(small_matrix_file, small_artifact, tmp_path):
    path = _matrix(small_matrix_file)
    first = run_locally(path, small_artifact, tmp_path / "r", "a")
    lost = next((first.run_dir / "rounds").iterdir()) / "r3.json"
    lost.unlink()  # as if the run had stopped before this cell's third round
    again = run_locally(path, small_artifact, tmp_path / "r", "a", resume=True)
    assert again.reused == 5 and lost.is_file()
    assert all(len(r.timing["rounds"]) == 3 for r in again.results)


def test_target_ci_adds_rounds_until_max_rounds_when_the_target_is_out_of_reach(
    small_matrix_file, small_artifact, tmp_path
):
    strict = _matrix(small_matrix_file, rounds=2, extra="target_ci: 0.0001\nmax_rounds: 3\n")
    summary = run_locally(strict, small_artifact, tmp_path / "r", "strict")
    rounds = json.loads((summary.run_dir / "manifest.json").read_text())["rounds"]
    assert rounds["completed"] == 3 and rounds["stopped_by"] == "max_rounds (3) reached"


def test_orders_are_seeded_shuffles_within_each_group():
    cells = [
        Cell(model=m, framework=f, threads=1)
        for m in ("resnet50", "mobilenet_v3_large")
        for f in ("torch", "onnxruntime", "openvino", "tvm")
    ]
    plan = RoundPlan(rounds=5, seed=3)
    orders = [plan.order(cells, k) for k in range(1, 6)]
    assert orders == [RoundPlan(rounds=5, seed=3).order(cells, k) for k in range(1, 6)]
    for order in orders:
        assert sorted(c.id for c, _ in order) == sorted(c.id for c in cells)
        # groups stay together, in matrix order; positions count within each group
        assert [group_key(c)[0] for c, _ in order] == ["resnet50"] * 4 + ["mobilenet_v3_large"] * 4
        assert [p for _, p in order] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert len({tuple(c.id for c, _ in o) for o in orders}) > 1  # rounds differ
    assert plan.order(cells, 1) != RoundPlan(rounds=5, seed=4).order(cells, 1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("rounds: 0", "rounds (line"),
        ("rounds: 2\nmax_rounds: 1", "max_rounds (line"),
        ("max_rounds: 5", "apply with target_ci only"),
        ("target_ci: 2", "target_ci (line"),
        ("equivalence_band: -0.1", "equivalence_band (line"),
        ("rounds: yes", "must be an integer"),
    ],
)
def test_round_settings_are_validated(extra, message):
    text = (
        "models: [resnet50]\nframeworks: [torch]\ndevices: [cpu]\nbatch_sizes: [1]\n"
        f"precisions: [fp32]\n{extra}\n"
    )
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_matrix(text, "m.yaml")


def test_stop_reason_from_hand_made_rounds():
    plan = RoundPlan(rounds=2, target_ci=0.02, max_rounds=6, time_budget_s=600)
    steady = [
        result_with_rounds("torch", "fp32", [10.0, 20.0, 40.0], "pass"),
        result_with_rounds("onnxruntime", "fp32", [5.0, 10.0, 20.0], "pass"),  # 0.5 each round
    ]
    assert stop_reason(plan, 3, steady, 10.0).startswith("target_ci reached")
    noisy = [
        result_with_rounds("torch", "fp32", [10.0, 10.0, 10.0], "pass"),
        result_with_rounds("onnxruntime", "fp32", [5.0, 7.0, 4.0], "pass"),
    ]
    assert stop_reason(plan, 3, noisy, 10.0) is None  # not yet: another round
    assert stop_reason(plan, 3, noisy, 601.0) == "time budget (600 s) spent"
    assert stop_reason(plan, 6, noisy, 10.0) == "max_rounds (6) reached"
    assert stop_reason(RoundPlan(rounds=3), 3, noisy, 0.0) == "3 rounds, as asked"
    assert stop_reason(RoundPlan(rounds=3), 2, noisy, 0.0) is None
