"""Cell containers against the real engine: what a running cell may do, and what is left after
its runner is stopped by a signal or killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import QUICK, assert_valid_result_file, start_runner
from test_docker import docker_executor  # noqa: F401  (the module's fixture: images built)

from bench.cell import Cell
from runner.executors.base import CellJob
from runner.executors.docker import RUN_LABEL
from runner.executors.hardening import CELL_UID, LOG_MAX_BYTES, PIDS_LIMIT

pytestmark = pytest.mark.docker
REPO = Path(__file__).parents[2]
# Run inside a cell's container: which folders it can write, its uid and effective capabilities.
PROBE = """
import os
for d in {dirs}:
    try:
        open(os.path.join(d, "probe"), "w").close()
        print(d, "writable")
    except OSError as e:
        print(d, "refused", e.errno)
caps = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
print("uid", os.getuid(), "caps", caps)
# Code compiled into /tmp runs (Inductor loads the libraries it builds there).
import shutil, subprocess
shutil.copy("/bin/true", "/tmp/compiled")
print("tmp exec", subprocess.run(["/tmp/compiled"]).returncode)
"""


def _containers(client, run_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def _wait_for_container(client, run_id: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [c for c in _containers(client, run_id) if c.status == "running"]
        if running:
            return running[0]
        time.sleep(0.3)
    raise AssertionError(f"no running container of run {run_id} within {timeout_s} s")


def _hanging_job(small_artifact, tmp_path: Path, run_id: str) -> CellJob:
    cell = Cell(model=small_artifact.model, framework="onnxruntime", threads=1)
    return CellJob(
        cell=cell,
        timing=QUICK,
        run_id=run_id,
        artifact_dir=small_artifact.path,
        result_path=tmp_path / "run" / "cells" / f"{cell.id}.json",
        log_path=tmp_path / "run" / "logs" / f"{cell.id}.log",
        timeout_s=90,
        memory_limit="2g",
        cpus=(0,),
        env={"DEPLOYBENCH_FAULT": "hang"},
    )


def test_a_running_cell_is_unprivileged_and_sees_only_its_own_files(
    docker_executor,  # noqa: F811
    small_artifact,
    tmp_path,
):
    executor = docker_executor
    executor.cache_dir = tmp_path / "cache"
    executor.prepare({("onnxruntime", "cpu", None)}, print)
    job = _hanging_job(small_artifact, tmp_path, "hardened")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(o=executor.run(job)))
    thread.start()
    container = None
    try:
        container = _wait_for_container(executor.client, "hardened")
        attrs = container.attrs
        host = attrs["HostConfig"]
        assert attrs["Config"]["User"] == f"{CELL_UID}:{CELL_UID}" and CELL_UID != 0
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
        assert host["PidsLimit"] == PIDS_LIMIT and host["NetworkMode"] == "none"
        assert attrs["Config"]["NetworkDisabled"] is True
        assert host["Memory"] == host["MemorySwap"] == 2 << 30
        assert host["LogConfig"]["Config"]["max-size"] == str(LOG_MAX_BYTES)
        mounts = {m["Destination"]: m for m in attrs["Mounts"]}
        artifact = f"/artifacts/{small_artifact.path.name}"
        assert set(mounts) == {artifact, "/out", "/run/cell.json", "/cache", "/cache-new"}
        assert mounts[artifact]["Source"] == str(small_artifact.path)  # its own artifact only
        rw = {d for d, m in mounts.items() if m["RW"]}
        assert rw == {"/out", "/cache-new"}
        # What the cell's process may do: write its own folders and /tmp, nothing else.
        dirs = ["/", "/home/bench", artifact, "/cache", "/out", "/cache-new", "/tmp"]
        probe = PROBE.format(dirs=dirs)
        result = container.exec_run(["python3", "-c", probe])
        lines = result.output.decode().splitlines()
        writable = {line.split()[0] for line in lines if line.endswith("writable")}
        assert writable == {"/out", "/cache-new", "/tmp"}, lines
        assert f"uid {CELL_UID} caps 0000000000000000" in lines
        assert "tmp exec 0" in lines, lines
    finally:
        if container is not None:
            container.kill()  # the hang ends as a crash; the runner's side goes on as usual
        thread.join(timeout=120)
    assert outcome["o"].exit_code is not None
    assert not _containers(executor.client, "hardened")
    assert not (tmp_path / "run" / ".cells").exists() or not any(
        (tmp_path / "run" / ".cells").iterdir()
    )
    assert not any((tmp_path / "cache" / ".staging").iterdir())


def _start_runner(executor, tmp_path: Path, small_artifact, run_id: str, fault: str | None):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: sig\nmodels: [mobilenet_v3_small]\nframeworks: [onnxruntime, openvino]\n"
        "devices: [cpu]\nbatch_sizes: [1]\nprecisions: [fp32]\nthreads: 1\ncell_timeout_s: 300\n"
        "timing: {warmup_iters: 1, warmup_seconds: 0, iters: 3, seconds: 0}\n"
    )
    cmd = [sys.executable, "-m", "runner", "run", "--matrix", str(matrix), "--executor", "docker"]
    cmd += ["--no-export", "--artifacts", str(small_artifact.path.parent)]
    cmd += ["--results", str(tmp_path / "results"), "--run-id", run_id]
    cmd += ["--cache", str(tmp_path / "cache"), "--base-image", executor.settings.base_image]
    env = {k: v for k, v in os.environ.items() if k != "DEPLOYBENCH_FAULT"}
    if fault:
        env["DEPLOYBENCH_FAULT"] = fault
    env["DEPLOYBENCH_LOCK"] = str(tmp_path / "host.lock")
    return start_runner(cmd, env), cmd, env


def _manifest(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / "results" / run_id / "manifest.json").read_text())


def _resume_and_check(cmd, env, tmp_path, run_id, expect_in_log: str | None = None) -> None:
    env = {k: v for k, v in env.items() if k != "DEPLOYBENCH_FAULT"}
    proc = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if expect_in_log:
        assert expect_in_log in proc.stderr
    manifest = _manifest(tmp_path, run_id)
    assert manifest["state"] == "complete"
    assert {c["status"] for c in manifest["cells"].values()} == {"ok"}
    for file in (tmp_path / "results" / run_id / "cells").glob("*.json"):
        assert_valid_result_file(file)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signalled_runner_removes_its_cell_and_can_resume(
    docker_executor,  # noqa: F811
    small_artifact,
    tmp_path,
    signum,
    code,
):
    run_id = f"sig{code}"
    proc, cmd, env = _start_runner(
        docker_executor, tmp_path, small_artifact, run_id, "hang:openvino"
    )
    _wait_for_container(docker_executor.client, run_id, timeout_s=300)
    time.sleep(1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"interrupted ({signal.Signals(signum).name})" in err and "--resume" in err
    assert not _containers(docker_executor.client, run_id)
    assert _manifest(tmp_path, run_id)["state"] == "interrupted"
    _resume_and_check(cmd, env, tmp_path, run_id)


def test_a_killed_runners_container_is_removed_by_the_next_run_and_no_live_one(
    docker_executor,  # noqa: F811
    small_artifact,
    tmp_path,
):
    run_id = "killed"
    proc, cmd, env = _start_runner(
        docker_executor, tmp_path, small_artifact, run_id, "hang:openvino"
    )
    _wait_for_container(docker_executor.client, run_id, timeout_s=300)
    clean = [sys.executable, "-m", "runner", "clean"]
    # While its runner lives, `runner clean` leaves the cell alone.
    out = subprocess.run(clean, capture_output=True, text=True, timeout=120)
    assert "removed 0 orphan containers" in out.stderr, out.stderr
    assert len(_containers(docker_executor.client, run_id)) == 1
    proc.kill()
    proc.communicate(timeout=60)
    assert len(_containers(docker_executor.client, run_id)) == 1  # SIGKILL: nobody cleaned up
    assert _manifest(tmp_path, run_id)["state"] == "running"
    _resume_and_check(
        cmd, env, tmp_path, run_id, "removed 1 containers left behind by runners that are gone"
    )
    assert not _containers(docker_executor.client, run_id)
