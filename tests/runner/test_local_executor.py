"""The orchestrator with the local executor: isolation of failing cells, resume, the table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import assert_valid_result_file, run_locally, seed_running_first

from bench.backends.cuda import cuda_unavailable_reason
from runner.report.tables import terminal


def _run(matrix_path, small_artifact, tmp_path, run_id="r", cell_env=None, resume=False):
    return run_locally(
        matrix_path,
        small_artifact,
        tmp_path / "results",
        run_id,
        resume=resume,
        cell_env=cell_env or {},
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("crash", "crashed with SIGSEGV"),
        ("hang", "timed out after 20 s and was killed"),
        ("oom", "ran out of memory (limit 1g)"),
    ],
)
def test_a_failing_cell_is_recorded_and_the_matrix_goes_on(
    small_matrix_file, small_artifact, tmp_path, fault, reason
):
    path = small_matrix_file(frameworks=("onnxruntime", "openvino"), memory="1g", timeout=20)
    bad = "mobilenet_v3_small-onnxruntime-cpu-fp32-b1"
    summary = _run(path, small_artifact, tmp_path, cell_env={bad: {"DEPLOYBENCH_FAULT": fault}})
    by_framework = {r.cell["framework"]: r for r in summary.results}
    failed, ok = by_framework["onnxruntime"], by_framework["openvino"]
    assert failed.status == "failed" and reason in failed.reason
    assert ok.status == "ok" and ok.parity_passed
    assert summary.any_failed
    for cell_id in (bad, "mobilenet_v3_small-openvino-cpu-fp32-b1"):
        doc = assert_valid_result_file(summary.run_dir / "cells" / f"{cell_id}.json")
        assert (summary.run_dir / "logs" / f"{cell_id}.log").is_file()
    assert doc["run_id"] == "r"
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert manifest["cells"][bad]["status"] == "failed"
    assert "FAILED" not in terminal(summary.results)  # the table shows statuses, not shouting
    assert reason[:20] in terminal(summary.results)


def test_a_version_other_than_the_installed_one_is_unsupported_locally(
    small_matrix_file, small_artifact, tmp_path
):
    """The local environment has one version of each framework: a cell asking for another is
    refused by the cell itself (the installed version read back), never measured."""
    from importlib import metadata

    installed = metadata.version("onnxruntime")
    path = small_matrix_file(frameworks=("onnxruntime",))
    path.write_text(path.read_text() + f"versions: {{onnxruntime: [{installed}, 1.22.1]}}\n")
    summary = _run(path, small_artifact, tmp_path)
    by_version = {r.cell["version"]: r for r in summary.results}
    assert by_version[installed].status == "ok"
    assert by_version[installed].runtime["framework_version"] == installed
    other = by_version["1.22.1"]
    assert other.status == "unsupported" and other.timing is None
    assert f"asks for onnxruntime 1.22.1; this environment has {installed}" in other.reason
    assert "onnxruntime 1.22.1" in terminal(summary.results)  # its own row, named
    cell_file = summary.run_dir / "cells" / "mobilenet_v3_small-onnxruntime@1.22.1-cpu-fp32-b1.json"
    assert_valid_result_file(cell_file)


def test_gpu_cells_are_skipped_without_a_gpu(small_matrix_file, small_artifact, tmp_path):
    reason = cuda_unavailable_reason()
    if reason is None:
        pytest.skip("this host has an NVIDIA GPU")
    summary = _run(small_matrix_file(devices=("cpu", "cuda")), small_artifact, tmp_path)
    statuses = {r.cell["device"]: r for r in summary.results}
    assert statuses["cuda"].status == "skipped" and statuses["cuda"].reason == reason
    assert statuses["cpu"].status == "ok"
    assert not summary.any_failed and summary.gpu_cells_skipped == 1


def test_an_existing_run_is_not_overwritten(small_matrix_file, small_artifact, tmp_path):
    path = small_matrix_file()
    _run(path, small_artifact, tmp_path)
    with pytest.raises(Exception, match="already exists.*--resume"):
        _run(path, small_artifact, tmp_path)


def test_ctrl_c_then_resume_keeps_finished_cells(small_matrix_file, small_artifact, tmp_path):
    """Interrupt a real `python -m runner run` while a cell hangs, then resume it."""
    path = small_matrix_file(frameworks=("onnxruntime", "openvino"), timeout=300)
    results = tmp_path / "results"
    # Cells compared with each other run in a seeded random order: a seed that runs
    # onnxruntime first, from the planner itself.
    seed = seed_running_first(path.read_text(), "onnxruntime")
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "run",
        "--matrix",
        str(path),
        "--executor",
        "local",
        "--no-export",
        "--artifacts",
        str(small_artifact.path.parent),
        "--results",
        str(results),
        "--run-id",
        "int",
        "--order-seed",
        str(seed),
    ]
    # openvino's cell hangs: the first cell (onnxruntime) finishes, then Ctrl-C.
    env = {**os.environ, "DEPLOYBENCH_FAULT": "hang:openvino"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = results / "int" / "logs" / "mobilenet_v3_small-openvino-cpu-fp32-b1.log"
    deadline = time.monotonic() + 120
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    manifest = json.loads((results / "int" / "manifest.json").read_text())
    assert manifest["state"] == "interrupted" and manifest["rounds"]["order_seed"] == seed
    first = results / "int" / "cells" / "mobilenet_v3_small-onnxruntime-cpu-fp32-b1.json"
    before = first.read_text()
    assert not (results / "int" / "cells" / "mobilenet_v3_small-openvino-cpu-fp32-b1.json").exists()

    proc = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "kept from the earlier attempt" in proc.stderr
    assert first.read_text() == before  # nothing already written was lost or rewritten
    manifest = json.loads((results / "int" / "manifest.json").read_text())
    assert manifest["state"] == "complete" and len(manifest["resumed_at"]) == 1
    assert {c["status"] for c in manifest["cells"].values()} == {"ok"}
