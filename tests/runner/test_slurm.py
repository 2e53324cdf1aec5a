"""The slurm executor against a real Slurm cluster of one machine (tests/runner/slurm_cluster.py:
munged, slurmctld and slurmd started for the session) whose node runs cells in this machine's
real Docker engine: a matrix through `python -m runner run --executor slurm`, a cell that times
out, and Ctrl-C while a cell's job runs, then --resume. Nothing of Slurm is mocked.

Needs Slurm's daemons and commands (Debian: slurm-wlm munge; CI installs them) and root (slurmd
starts jobs as their user); skipped with the reason when they are absent. Needs a Docker engine
as the Docker tests do (DEPLOYBENCH_REQUIRE_DOCKER=1: fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import QUICK, assert_valid_result_file, docker_or_skip, start_runner
from slurm_cluster import PARTITION, slurm_missing, start_cluster

from runner.images import IMAGES, BuildSettings, ensure_images
from runner.matrix import load_matrix
from runner.orchestrate import MatrixRun, RunOptions

pytestmark = pytest.mark.docker
CELL = "overhead_probe-onnxruntime-cpu-fp32-b1"
MATRIX = """
name: slurm
models: [overhead_probe]
frameworks: [onnxruntime]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
threads: 1
memory_limit: 2g
cell_timeout_s: {timeout}
timing: {{warmup_iters: 1, warmup_seconds: 0, iters: 5, seconds: 0}}
"""


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-machine cluster; SLURM_CONF points at it for the session (the executor
    passes this process's environment to sbatch, squeue and scancel)."""
    if why := slurm_missing():
        pytest.skip(f"no Slurm here: {why}")
    cluster = start_cluster()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="module")
def settings(slurm_cluster) -> BuildSettings:
    """The build settings of the Docker tests, with ort-cpu built (or up to date) here."""
    client, base = docker_or_skip()
    settings = BuildSettings(base_image=base)
    ensure_images(client, [IMAGES.get("ort-cpu")], settings, log=print)
    return settings


@pytest.fixture(scope="module")
def probe_artifact(tmp_path_factory):
    """overhead_probe's artifact: a near-empty model, so a cell takes a second or two."""
    from bench.export import ExportSpec, export
    from bench.models import OVERHEAD_PROBE

    artifact, _ = export(ExportSpec(model=OVERHEAD_PROBE), tmp_path_factory.mktemp("probe"))
    return artifact


def _matrix(tmp_path: Path, timeout: int = 120) -> Path:
    path = tmp_path / "slurm.yaml"
    path.write_text(MATRIX.format(timeout=timeout))
    return path


def _runner(tmp_path: Path, settings, artifact, run_id: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "runner", "run", "--matrix", str(_matrix(tmp_path))]
    cmd += ["--executor", "slurm", "--no-export", "--artifacts", str(artifact.path.parent)]
    cmd += ["--results", str(tmp_path / "results"), "--run-id", run_id]
    cmd += ["--cache", str(tmp_path / "cache"), "--base-image", settings.base_image, *extra]
    return cmd


def _env(cluster, tmp_path: Path, fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in cluster.env.items() if k != "DEPLOYBENCH_FAULT"}
    env["DEPLOYBENCH_LOCK"] = str(tmp_path / "host.lock")
    if fault:
        env["DEPLOYBENCH_FAULT"] = fault
    return env


def _containers(run_id: str) -> list:
    import docker

    client = docker.from_env()
    return client.containers.list(all=True, filters={"label": f"ai.deploybench.run={run_id}"})


def _show_job(cluster, job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (Slurm keeps a finished job for MinJobAge seconds)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def _job_id(slurm_log: Path) -> str:
    """The job id the node printed first: `[slurm] job <id> (<name>) on <host>: <job file>`."""
    first = slurm_log.read_text().splitlines()[0]
    assert first.startswith("[slurm] job "), first
    return first.split()[2]


def test_a_matrix_runs_as_slurm_jobs_in_the_nodes_engine(
    slurm_cluster, settings, probe_artifact, tmp_path
):
    cmd = _runner(tmp_path, settings, probe_artifact, "sl1")
    cmd += ["--slurm-partition", PARTITION, "--slurm-arg=--comment=deploybench-test"]
    proc = subprocess.run(
        cmd, env=_env(slurm_cluster, tmp_path), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "results" / "sl1"
    result = assert_valid_result_file(run / "cells" / f"{CELL}.json")
    assert result["status"] == "ok", result
    assert result["parity"]["verdict"] == "pass"
    container = result["environment"]["container"]
    assert container["in_container"] is True
    assert container["image"] == "deploybench/ort-cpu:latest"
    assert json.loads((run / "manifest.json").read_text())["executor"] == "slurm"
    # The job carried the run's and the cell's ids, on the partition asked for, with the extra
    # sbatch argument, and had the whole node (--exclusive: every CPU, shared with no job).
    job_id = _job_id(run / "logs" / f"{CELL}.log.slurm")
    job = _show_job(slurm_cluster, job_id)
    assert job["JobName"] == f"deploybench-sl1-{CELL}"
    assert (job["JobState"], job["Partition"], job["Comment"]) == (
        "COMPLETED",
        PARTITION,
        "deploybench-test",
    )
    assert job["OverSubscribe"] == "NO"
    assert job["TimeLimit"] == "00:33:00"  # 120 s + the node's image allowance + a grace
    node_cpus = subprocess.run(["slurmd", "-C"], capture_output=True, text=True).stdout
    assert f"CPUs={job['NumCPUs']} " in node_cpus
    assert not slurm_cluster.jobs() and not _containers("sl1")


def test_a_cell_that_outlives_its_timeout_is_failed_and_leaves_nothing(
    slurm_cluster, settings, probe_artifact, tmp_path
):
    from runner.executors.slurm import SlurmExecutor

    executor = SlurmExecutor(settings=settings, cache_dir=tmp_path / "cache", poll_s=1.0)
    opts = RunOptions(
        run_id="sl2",
        results_root=tmp_path / "results",
        artifacts_dir=probe_artifact.path.parent,
        export=False,
        cell_env={CELL: {"DEPLOYBENCH_FAULT": "hang"}},
    )
    matrix = load_matrix(str(_matrix(tmp_path, timeout=8)))
    started = time.monotonic()
    summary = MatrixRun(matrix, executor, executor, opts, log=print).run()
    (result,) = summary.results
    assert result.status == "failed"
    assert "timed out after 8 s" in result.reason, result.reason
    assert time.monotonic() - started < 90
    assert executor.submitted and executor.submitted[0][1] == f"deploybench-sl2-{CELL}"
    assert not slurm_cluster.jobs(), "the job is over"
    assert not _containers("sl2"), "the cell's container is removed"


def test_ctrl_c_cancels_the_cells_job_and_resume_completes_it(
    slurm_cluster, settings, probe_artifact, tmp_path
):
    cmd = _runner(tmp_path, settings, probe_artifact, "sl3")
    proc = start_runner(cmd, _env(slurm_cluster, tmp_path, fault="hang"))
    deadline = time.monotonic() + 120
    while not [c for c in _containers("sl3") if c.status == "running"]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the cell's container did not start"
        time.sleep(0.3)
    (job,) = [j for j in slurm_cluster.jobs() if f"deploybench-sl3-{CELL}" in j]
    assert job.endswith(" RUNNING")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=150)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted (SIGINT)" in err and "--resume" in err and "Traceback" not in err
    assert not slurm_cluster.jobs(), "the cell's job is cancelled"
    assert _show_job(slurm_cluster, job.split()[0])["JobState"] == "CANCELLED"
    assert not _containers("sl3"), "the cell's container is removed"
    # ... by the job itself, as its SIGTERM from scancel stopped it (as on a node of its own)
    slurm_log = tmp_path / "results" / "sl3" / "logs" / f"{CELL}.log.slurm"
    assert "[slurm] stopped (SIGTERM); no cell container is left" in slurm_log.read_text()
    manifest = tmp_path / "results" / "sl3" / "manifest.json"
    assert json.loads(manifest.read_text())["state"] == "interrupted"

    done = subprocess.run(
        [*cmd, "--resume"],
        env=_env(slurm_cluster, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(manifest.read_text())["state"] == "complete"
    result = assert_valid_result_file(tmp_path / "results" / "sl3" / "cells" / f"{CELL}.json")
    assert result["status"] == "ok"
    assert not slurm_cluster.jobs() and not _containers("sl3")


def test_a_gpu_cell_asks_slurm_for_one_gpu(slurm_cluster, settings, tmp_path):
    """This cluster has no GPU GRES: the executor says so (its GPU cells are skipped), and a GPU
    cell's job, asking for `--gres=gpu:1`, is refused by sbatch with Slurm's reason."""
    from bench.cell import Cell
    from runner.executors.base import CellJob
    from runner.executors.slurm import SlurmExecutor

    executor = SlurmExecutor(settings=settings, partition=PARTITION, poll_s=1.0)
    assert executor.gpu_reason.startswith(f"partition {PARTITION} has no node with GPU GRES")
    cell = Cell(model="overhead_probe", framework="onnxruntime", device="cuda", threads=1)
    run = tmp_path / "results" / "sl4"
    job = CellJob(
        cell=cell,
        timing=QUICK,
        run_id="sl4",
        artifact_dir=tmp_path / "artifact",
        result_path=run / "cells" / f"{cell.id}.json",
        log_path=run / "logs" / f"{cell.id}.log",
        timeout_s=60,
        memory_limit="2g",
        cpus=(0,),
    )
    outcome = executor.run(job)
    assert outcome.start_error and "sbatch refused the job" in outcome.start_error
    assert "gres" in outcome.start_error.lower(), outcome.start_error
    assert not executor.submitted and not slurm_cluster.jobs()
