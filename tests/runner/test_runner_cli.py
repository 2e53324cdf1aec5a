"""`python -m runner` as a user meets it: plain messages and exit codes for what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import assert_all_gpu_cells_skipped, run_gpu_matrix

REPO = Path(__file__).parents[2]


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
    run = ["run", "--matrix", "quick", "--executor", "docker", "--results", str(tmp_path)]
    for args in (["doctor"], run):
        proc = runner(*args, env=env)
        assert proc.returncode == 2, proc.stderr
        assert "no reachable Docker engine" in proc.stderr and "make engine" in proc.stderr
        assert "--executor local" in proc.stderr and "Traceback" not in proc.stderr


def test_plan_lists_cells_with_their_images():
    proc = runner("plan", "--matrix", "quick")
    assert proc.returncode == 0
    assert "resnet50-openvino-cpu-fp32-b1  [deploybench/ov-cpu:latest, " in proc.stdout
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


AUTO_MATRIX = """
name: auto
models: [mobilenet_v3_small]
frameworks: [onnxruntime]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
threads: 1
timing: {warmup_iters: 1, warmup_seconds: 0, iters: 3, seconds: 0}
"""


def _no_engine(tmp_path) -> dict[str, str]:
    return {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}


def test_auto_without_an_engine_runs_local_and_says_so_first_and_everywhere(
    tmp_path, small_artifact
):
    matrix = tmp_path / "auto.yaml"
    matrix.write_text(AUTO_MATRIX)
    args = ["--matrix", str(matrix), "--no-export", "--artifacts", str(small_artifact.path.parent)]
    proc = runner(
        "run", *args, "--results", str(tmp_path / "r"), "--run-id", "a", env=_no_engine(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    # Said before any cell runs, and again after the table.
    banner = proc.stderr.index("executor auto chose local: no reachable Docker engine")
    assert banner < proc.stderr.index("[1/1]")
    assert "no container isolation" in proc.stderr.split("[1/1]")[-1]
    assert "onnxruntime" in proc.stdout  # the comparison table
    manifest = json.loads((tmp_path / "r" / "a" / "manifest.json").read_text())
    assert manifest["executor"] == "local"
    assert "no reachable Docker engine" in manifest["executor_note"]
    report = runner("report", str(tmp_path / "r" / "a"))
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "r" / "a" / "report.md").read_text()
    assert "executor local (executor auto chose local: no reachable Docker engine" in md
    assert "no container isolation" in md


def test_make_bench_cpu_runs_on_a_machine_without_an_engine(tmp_path, small_artifact):
    matrix = tmp_path / "auto.yaml"
    matrix.write_text(AUTO_MATRIX)
    run_args = (
        f"--no-export --artifacts {small_artifact.path.parent} --results {tmp_path / 'r'} "
        "--run-id m"
    )
    proc = subprocess.run(
        ["make", "--no-print-directory", "bench-cpu", f"MATRIX={matrix}", f"RUN_ARGS={run_args}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, **_no_engine(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "executor auto chose local" in proc.stderr
    assert "median ms [95% CI]" in proc.stdout
    assert json.loads((tmp_path / "r" / "m" / "manifest.json").read_text())["executor"] == "local"
    # EXECUTOR=docker forces containers: without an engine it stops, saying how to get one.
    forced = subprocess.run(
        ["make", "--no-print-directory", "bench-cpu", "EXECUTOR=docker", f"MATRIX={matrix}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, **_no_engine(tmp_path)},
    )
    assert forced.returncode != 0
    assert "no reachable Docker engine" in forced.stderr and "make engine" in forced.stderr
