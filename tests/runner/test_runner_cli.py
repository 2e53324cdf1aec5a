"""`python -m runner` as a user meets it: plain messages and exit codes for what is missing."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import assert_all_gpu_cells_skipped, run_gpu_matrix


def runner(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_without_a_docker_engine_it_says_so_and_how_to_fix_it(tmp_path):
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    for args in (["doctor"], ["run", "--matrix", "quick", "--results", str(tmp_path)]):
        proc = runner(*args, env=env)
        assert proc.returncode == 2, proc.stderr
        assert "no reachable Docker engine" in proc.stderr
        assert "--executor local" in proc.stderr and "Traceback" not in proc.stderr


def test_plan_lists_cells_with_their_images():
    proc = runner("plan", "--matrix", "quick")
    assert proc.returncode == 0
    assert "resnet50-openvino-cpu-fp32-b1  [ov-cpu, " in proc.stdout
    assert "8 cells in matrix quick" in proc.stderr


def test_an_invalid_matrix_is_refused_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models: [resnet50]\nframeworks: [pytorch]\ndevices: [cpu]\n"
        "batch_sizes: [1]\nprecisions: [fp32]\n"
    )
    proc = runner(
        "run", "--matrix", str(bad), "--executor", "local", "--results", str(tmp_path / "results")
    )
    assert proc.returncode == 2
    assert "frameworks[0] (line 2): unknown framework 'pytorch'" in proc.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_report_and_compare_of_missing_runs_are_usage_errors(tmp_path):
    proc = runner("report", str(tmp_path))
    assert proc.returncode == 2 and "not a run folder" in proc.stderr
    proc = runner("compare", str(tmp_path), str(tmp_path))
    assert proc.returncode == 2


def test_gpu_matrix_on_a_host_without_a_gpu_skips_every_cell_up_front(tmp_path):
    proc, run_dir, artifacts = run_gpu_matrix(tmp_path, "local")
    assert_all_gpu_cells_skipped(proc, run_dir, artifacts, "NVIDIA driver")
