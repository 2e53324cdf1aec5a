"""TVM on real models: untuned, tuned with a tiny budget, the database reused, refusals.

Tuning runs on a tiny convolutional network (exported here as a user ONNX file) so that a few
MetaSchedule trials cover its few tasks in seconds rather than minutes.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_valid_result_file

from bench.cell import Cell
from bench.export import ExportSpec, export
from bench.measure.timing import TimingConfig
from bench.result import write_result
from bench.run import run_cell

QUICK = TimingConfig(warmup_min_iters=2, warmup_min_s=0.0, min_iters=5, min_s=0.0)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()
    path = tmp / "tiny.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 224, 224),),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    artifact, _ = export(ExportSpec(model=f"onnx:{path}"), tmp / "artifacts")
    return artifact


def _run(artifact, tmp_path, **cell):
    result = run_cell(
        Cell(model=artifact.model, framework="tvm", threads=2, **cell), artifact, QUICK
    )
    return assert_valid_result_file(write_result(result, tmp_path / "r.json"))


def test_untuned_cell_passes_parity_and_says_untuned(small_artifact, tmp_path):
    doc = _run(small_artifact, tmp_path)
    assert doc["status"] == "ok", doc["log_tail"]
    runtime = doc["runtime"]
    assert runtime["tuned"] is False and runtime["tuning_trials"] == 0
    assert runtime["threads"] == 2
    assert runtime["target"]["kind"] == "llvm" and runtime["target"]["mcpu"]
    assert runtime["precision_run"] == "fp32"
    assert doc["parity"]["verdict"] == "pass"


def test_tuning_then_reusing_the_database(tiny_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "cache"))
    options = (("trials", "4"), ("trials_per_task", "2"))
    first = _run(tiny_artifact, tmp_path, options=options)
    assert first["status"] == "ok", first["log_tail"]
    runtime = first["runtime"]
    assert runtime["tuned"] is True and runtime["weight_prepack"] is True
    assert runtime["tuning_s"] > 0 and runtime["tuning_reused"] is False
    database = runtime["tuning_database"]
    assert database.startswith(str(tmp_path / "cache" / "tvm"))
    records = (tmp_path / "cache" / "tvm").glob("*/database_tuning_record.json")
    assert any(p.stat().st_size > 0 for p in records)
    assert first["parity"]["verdict"] == "pass"

    second = _run(tiny_artifact, tmp_path, options=options)
    assert second["runtime"]["tuning_reused"] is True and second["runtime"]["tuning_s"] == 0.0
    assert second["runtime"]["tuning_database"] == database
    assert second["parity"]["verdict"] == "pass"


@pytest.mark.parametrize(
    ("cell", "message"),
    [({"precision": "bf16"}, "not bf16"), ({"options": (("trials", "many"),)}, "integers")],
)
def test_refused_requests_are_unsupported(tiny_artifact, tmp_path, cell, message):
    doc = _run(tiny_artifact, tmp_path, **cell)
    assert doc["status"] == "unsupported" and message in doc["reason"]
