"""The live progress line: what it shows from the running cells' phase files (by hand), and
a real run on a pseudo-terminal, where it appears, against plain lines in a pipe."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from bench.cell import Cell
from bench.phase import PHASE_ENV, read_phase, report_phase
from runner.executors.base import CellJob
from runner.live import LiveProgress, PlainProgress, progress_for

MATRIX = """
name: live
models: [mobilenet_v3_small]
frameworks: [onnxruntime]
devices: [cpu]
batch_sizes: [1]
precisions: [fp32]
threads: 1
scenarios: [single_stream, offline]
scenario_options:
  offline: {max_batch: 2, point_queries: 4, point_seconds: 1.5}
timing: {warmup_iters: 1, warmup_seconds: 0, iters: 3, seconds: 1}
"""


def _job(tmp_path: Path) -> CellJob:
    cell = Cell(model="resnet50", framework="onnxruntime", threads=1)
    return CellJob(cell, None, "r", tmp_path, tmp_path / "r.json", tmp_path / "r.log", 60, "1g", ())


def test_a_cell_reports_its_phase_only_where_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(PHASE_ENV, raising=False)
    report_phase("timing")  # no file named: nothing written, nothing raised
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(PHASE_ENV, str(tmp_path / "p"))
    report_phase("offline: batch 8\nsecond line")
    assert read_phase(tmp_path / "p") == "offline: batch 8 second line"
    assert read_phase(tmp_path / "absent") is None and read_phase(None) is None
    monkeypatch.setenv(PHASE_ENV, str(tmp_path / "no" / "such" / "folder" / "p"))
    report_phase("dropped")  # progress is never worth a cell


def test_the_live_line_shows_running_cells_their_phase_and_the_eta(tmp_path):
    live = LiveProgress(2, stream=io.StringIO(), refresh_s=60)
    try:
        live.log("ort-cpu: Step 7/25 : COPY src/ /build/src/")
        assert live.status_lines() == [
            "[0/2 cells] ETA unknown until a cell has run",
            "  ort-cpu: Step 7/25 : COPY src/ /build/src/",
        ]
        job = _job(tmp_path)
        live.started(job)
        assert live.status_lines()[1] == "  resnet50-onnxruntime-cpu-fp32-b1: starting"
        job.phase.path = tmp_path / "phase"
        job.phase.path.write_text("server: 12.5 requests/s, p99 bound 100 ms\n")
        live.advance(1, 2, "ETA 40 s")
        assert live.status_lines() == [
            "[1/2 cells] ETA 40 s",
            "  resnet50-onnxruntime-cpu-fp32-b1: server: 12.5 requests/s, p99 bound 100 ms",
        ]
        live.ended(job)
        assert len(live.status_lines()) == 2 and "Step 7/25" in live.status_lines()[1]
    finally:
        live.close()


def test_plain_lines_where_stdout_is_not_a_terminal():
    lines: list[str] = []
    progress = progress_for(3, lines.append, live=False)
    assert type(progress) is PlainProgress
    progress.log("[1/3] a cell: ok")
    progress.advance(1, 3, "ETA 1 s")
    progress.close()
    assert lines == ["[1/3] a cell: ok"]


def _run(tmp_path: Path, small_artifact, run_id: str, terminal: bool) -> str:
    (tmp_path / "m.yaml").write_text(MATRIX)
    args = [sys.executable, "-m", "runner", "run", "--matrix", str(tmp_path / "m.yaml")]
    args += ["--no-export", "--artifacts", str(small_artifact.path.parent)]
    args += ["--results", str(tmp_path / "r"), "--run-id", run_id, "--executor", "local"]
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    if not terminal:
        done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the run ended
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_a_run_on_a_terminal_shows_the_live_line_and_in_a_pipe_does_not(tmp_path, small_artifact):
    shown = _run(tmp_path, small_artifact, "tty", terminal=True)
    assert "[2/2 cells]" in shown
    assert "offline: batch" in shown  # the offline cell's phase, read from its phase file
    assert "mobilenet_v3_small-onnxruntime-cpu-fp32-b1" in shown
    piped = _run(tmp_path, small_artifact, "pipe", terminal=False)
    assert "cells]" not in piped and "[2/2]" in piped
    # The phase files are gone once their cells ended.
    assert not list((tmp_path / "r").rglob("*.phase"))


def test_a_run_in_an_image_needs_neither_matplotlib_nor_rich():
    """`docker compose run` runs `python -m runner run` in an image, whose stdout is a TTY and
    which has neither plotting nor rich: the run's modules must import without them."""
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['rich'] = None\n"
        "import runner.cli, runner.orchestrate, runner.report.scenarios, runner.report.tables\n"
        "from runner.live import PlainProgress, progress_for\n"
        "assert type(progress_for(1, print, live=None)) is PlainProgress\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
