"""TVM on real models: untuned, tuned with a tiny budget, the database reused, refusals.

Tuning runs on a tiny convolutional network (exported here as a user ONNX file): 8
MetaSchedule trials reach all its tasks, the convolution included, in about a minute, most of
which is MetaSchedule importing TVM's tensor intrinsics once per process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import onnx_artifact_of, run_cell_to_file

from bench.errors import UsageError

BUDGET = (("trials", "8"), ("trials_per_task", "2"))


def _tiny_artifact(tmp, activation: torch.nn.Module):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=4),
        activation,
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    return onnx_artifact_of(net, tmp)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    return _tiny_artifact(tmp_path_factory.mktemp("tiny"), torch.nn.ReLU())


def _run(artifact, tmp_path, **cell):
    return run_cell_to_file(artifact, tmp_path, "tvm", **cell)


def test_untuned_cell_passes_parity_and_says_untuned(small_artifact, tmp_path):
    doc = _run(small_artifact, tmp_path)
    assert doc["status"] == "ok", doc["log_tail"]
    runtime = doc["runtime"]
    assert runtime["tuned"] is False and runtime["tuning_trials"] == 0
    assert runtime["tuning_trials_run"] == 0 and runtime["tuning_database"] is None
    assert runtime["threads"] == 2
    assert runtime["target"]["kind"] == "llvm" and runtime["target"]["mcpu"]
    assert runtime["target"]["num-cores"] == 2
    assert runtime["precision_run"] == "fp32"
    assert runtime["compile_s"] > 0
    assert doc["parity"]["verdict"] == "pass"


def test_tuning_then_reusing_the_database(tiny_artifact, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(cache))
    first = _run(tiny_artifact, tmp_path, options=BUDGET)
    assert first["status"] == "ok", first["log_tail"]
    runtime = first["runtime"]
    assert runtime["tuned"] is True and runtime["weight_prepack"] is True
    # 8 trials at 2 a task cannot cover the tiny net's 6 tasks: lightly tuned, and it says so.
    tasks, tuned = runtime["tuning_tasks"], runtime["tuning_tasks_tuned"]
    assert tasks == 6 and 1 <= tuned < tasks
    assert runtime["tuning"] == (
        f"LIGHTLY TUNED ({tuned} of 6 tasks tuned; 8 trials of 6 tasks x 2)"
    )
    assert runtime["tuning_s"] > 0 and runtime["tuning_reused"] is False
    # Trials that built and ran: a broken builder records every candidate as an error (0 run);
    # MetaSchedule may still reject a candidate of its own (seen once: 7 of 8 on CI).
    assert runtime["tuning_trials_run"] >= 6
    assert runtime["tuning_records"] >= runtime["tuning_trials_run"]
    assert runtime["threads"] == 2
    database = runtime["tuning_database"]
    assert database.startswith(str(cache / "tvm" / tiny_artifact.key[:16]))
    assert (Path(database) / "database_tuning_record.json").stat().st_size > 0
    assert first["parity"]["verdict"] == "pass"

    # The same budget, and a smaller one, are covered by the database: no tuning.
    for options in (BUDGET, (("trials", "4"), ("trials_per_task", "1"))):
        again = _run(tiny_artifact, tmp_path, options=options)
        assert again["status"] == "ok", again["log_tail"]
        assert again["runtime"]["tuning_reused"] is True and again["runtime"]["tuning_s"] == 0.0
        assert again["runtime"]["tuning_trials_run"] == 0
        assert again["runtime"]["tuning_database"] == database
        assert again["runtime"]["tuning_records"] == runtime["tuning_records"]
        assert again["parity"]["verdict"] == "pass"


def test_a_precision_below_fp32_is_unsupported(tiny_artifact, tmp_path):
    doc = _run(tiny_artifact, tmp_path, precision="bf16")
    assert doc["status"] == "unsupported" and "not bf16" in doc["reason"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((("trials", "many"),), "must be an integer >= 0"),
        ((("trials", "-1"),), "must be an integer >= 0"),
        ((("tune", "1"),), "tvm has no option 'tune'; valid: trials, trials_per_task"),
    ],
)
def test_bad_options_are_refused_before_any_work(tiny_artifact, tmp_path, options, message):
    with pytest.raises(UsageError, match=message):
        _run(tiny_artifact, tmp_path, options=options)


def test_an_operator_the_frontend_lacks_is_unsupported_in_its_words(tmp_path):
    artifact = _tiny_artifact(tmp_path, torch.nn.CELU())  # ONNX Celu: ONNX Runtime has it
    doc = _run(artifact, tmp_path)
    assert doc["status"] == "unsupported"
    assert "not supported for frontend ONNX: Celu" in doc["reason"]


@pytest.mark.parametrize(
    ("trials", "tasks", "tuned", "label"),
    [
        (0, None, None, "UNTUNED"),
        (64, 65, 30, "LIGHTLY TUNED (30 of 65 tasks tuned; 64 trials of 65 tasks x 64)"),
        (5000, 65, 65, "TUNED (5000 trials of 65 tasks x 64)"),
    ],
)
def test_tuning_labels(trials, tasks, tuned, label):
    from bench.backends.tvm_database import tuning_label

    assert tuning_label(trials, tasks, tuned, 64) == label
