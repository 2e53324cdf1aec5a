"""Every way a real `python -m runner run` can end (local executor): SIGTERM and SIGHUP as
Ctrl-C, SIGKILL without a cell left running, and the host lock between two real runners."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import seed_running_first, start_runner

from runner.hostlock import HOST_BUSY_EXIT_CODE

MATRIX = """
name: sig
models: [mobilenet_v3_small]
frameworks: [onnxruntime, openvino]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
threads: 1
cell_timeout_s: 300
timing: {warmup_iters: 1, warmup_seconds: 0, iters: 3, seconds: 0}
"""
HANGING_CELL = "mobilenet_v3_small-openvino-cpu-fp32-b1"


def _start(tmp_path: Path, artifact, run_id: str, fault: str | None = "hang:openvino", *extra):
    matrix = tmp_path / "m.yaml"
    # onnxruntime's cell first: it finishes before openvino's hangs, and is kept on resume.
    matrix.write_text(MATRIX + f"order_seed: {seed_running_first(MATRIX, 'onnxruntime')}\n")
    cmd = [sys.executable, "-m", "runner", "run", "--matrix", str(matrix), "--executor", "local"]
    cmd += ["--no-export", "--artifacts", str(artifact.path.parent)]
    cmd += ["--results", str(tmp_path / "results"), "--run-id", run_id, *extra]
    env = {k: v for k, v in os.environ.items() if k != "DEPLOYBENCH_FAULT"}
    env["DEPLOYBENCH_LOCK"] = str(tmp_path / "host.lock")
    if fault:
        env["DEPLOYBENCH_FAULT"] = fault
    return start_runner(cmd, env), cmd, env


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _hanging_cell(proc, tmp_path: Path, run_id: str) -> int:
    """The pid of the hanging cell, once it runs (its log exists)."""
    log = tmp_path / "results" / run_id / "logs" / f"{HANGING_CELL}.log"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if log.exists() and (children := _children(proc.pid)):
            return children[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the hanging cell did not start")


def _gone(pid: int, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True  # dead, waiting for its new parent to reap it
        time.sleep(0.2)
    return False


def _manifest(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / "results" / run_id / "manifest.json").read_text())


def _resume(cmd, env) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if k != "DEPLOYBENCH_FAULT"}
    return subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_cell_and_leave_a_resumable_run(
    tmp_path, small_artifact, signum, code
):
    proc, cmd, env = _start(tmp_path, small_artifact, "s")
    cell = _hanging_cell(proc, tmp_path, "s")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"interrupted ({signal.Signals(signum).name})" in err and "--resume" in err
    assert "Traceback" not in err
    assert _gone(cell), "the cell's process outlived its runner"
    assert _manifest(tmp_path, "s")["state"] == "interrupted"
    done = _resume(cmd, env)
    assert done.returncode == 0, done.stderr
    assert "kept from the earlier attempt" in done.stderr
    assert _manifest(tmp_path, "s")["state"] == "complete"


def test_a_sigkilled_runner_takes_its_cell_with_it(tmp_path, small_artifact):
    proc, cmd, env = _start(tmp_path, small_artifact, "k")
    cell = _hanging_cell(proc, tmp_path, "k")
    proc.kill()
    proc.communicate(timeout=60)
    assert _gone(cell), "the cell's process outlived its SIGKILLed runner"
    assert _manifest(tmp_path, "k")["state"] == "running"  # nobody could say otherwise
    done = _resume(cmd, env)
    assert done.returncode == 0, done.stderr
    assert _manifest(tmp_path, "k")["state"] == "complete"


def test_two_runners_never_measure_at_once_and_a_dead_ones_lock_is_taken_over(
    tmp_path, small_artifact
):
    first, _, _ = _start(tmp_path, small_artifact, "first")
    _hanging_cell(first, tmp_path, "first")
    refused, _, _ = _start(tmp_path, small_artifact, "second", None, "--no-wait")
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == HOST_BUSY_EXIT_CODE, err
    assert f"run 'first' (pid {first.pid}, since " in err and "is measuring on this host" in err
    assert not (tmp_path / "results" / "second").exists()  # it did not start at all
    waiting, _, _ = _start(tmp_path, small_artifact, "third", None)
    line = ""
    deadline = time.monotonic() + 120
    while "waiting for run 'first'" not in line and time.monotonic() < deadline:
        line = waiting.stderr.readline()
    assert "one run measures on a host at a time" in line
    time.sleep(2)
    assert not (tmp_path / "results" / "third" / "cells").exists() or not any(
        (tmp_path / "results" / "third" / "cells").iterdir()
    )  # nothing measured while it waits
    first.kill()
    first.communicate(timeout=60)
    err = waiting.stderr.read()  # the rest, through the reader that read the first lines
    assert waiting.wait(timeout=600) == 0, err
    assert f"took over the host lock of run 'first' (pid {first.pid}" in err
    assert _manifest(tmp_path, "third")["state"] == "complete"
