"""TVM's tuning curve: the database prefix logic by hand, and benchmarks/tvm_tuning.py for real
on the session's small model (a few trials: seconds each here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.backends.tvm_tuning import (
    RECORDS,
    WORKLOADS,
    curve_markdown,
    curve_points,
    record_count,
    truncated_database,
    tuning_seconds_until,
)

REPO = Path(__file__).parents[3]


def test_a_prefix_of_the_records_is_the_database_as_it_stood(tmp_path):
    source = tmp_path / "db"
    source.mkdir()
    (source / WORKLOADS).write_text('["w0"]\n["w1"]\n')
    (source / RECORDS).write_text('[0, "first"]\n[1, "second"]\n\n[0, "third"]\n')
    assert record_count(source) == 3  # blank lines are not records
    assert truncated_database(source, tmp_path / "two", 2) == 2
    assert (tmp_path / "two" / RECORDS).read_text() == '[0, "first"]\n[1, "second"]\n'
    assert (tmp_path / "two" / WORKLOADS).read_text() == '["w0"]\n["w1"]\n'
    assert truncated_database(source, tmp_path / "all", 10) == 3
    assert record_count(tmp_path / "missing") == 0


def test_curve_points_double_from_the_first_and_end_at_the_total():
    assert curve_points(300) == [0, 64, 128, 256, 300]
    assert curve_points(64) == [0, 64]
    assert curve_points(0) == [0]
    assert curve_points(5, first=2) == [0, 2, 4, 5]


def test_tuning_time_of_a_point_and_the_seeds_budget_by_hand():
    chunks = [
        {"trials": 10, "records_after": 10, "seconds": 50.0},
        {"trials": 10, "records_after": 20, "seconds": 70.0},
    ]
    assert tuning_seconds_until(chunks, 0) == 0.0
    assert tuning_seconds_until(chunks, 10) == 50.0
    assert tuning_seconds_until(chunks, 15) == 85.0  # 50 s, then half of the second call's 70
    assert tuning_seconds_until(chunks, 21) is None
    doc = {
        "model": "m",
        "per_task": 8,
        "progress": {"tvm": "0.27", "target": {"kind": "llvm"}, "tasks": 3, "chunks": chunks},
        "points": [{"records": 20, "median_ms": 1.5, "parity": "pass", "rel_l2": 1e-6,
                    "top1_agreement": 1.0}],
    }  # fmt: skip
    text = curve_markdown(doc)
    assert "| 20 | 120 | 1.50 | pass | 1.0e-06 | 1.000 |" in text
    # 120 s over 20 trials = 6 s a trial; 800 x 3 tasks = 2400 trials = 4 hours
    assert "6.0 s per trial" in text and "2400 trials would take about 4 hours" in text


def _script(artifacts: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "benchmarks" / "tvm_tuning.py"), "--model"]
    cmd += ["mobilenet_v3_small", "--artifacts", str(artifacts), "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


def test_the_script_tunes_in_chunks_continues_and_refuses_another_target(small_artifact, tmp_path):
    artifacts, out = small_artifact.path.parent, tmp_path / "tuning"
    args = ["--trials", "4", "--chunk", "2", "--per-task", "2", "--threads", "1"]
    done = _script(artifacts, out, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "mobilenet_v3_small" / "curve.json").read_text())
    assert [c["trials"] for c in doc["progress"]["chunks"]] == [2, 2]
    assert [p["records"] for p in doc["points"]] == [0, 4]
    assert all(p["parity"] == "pass" for p in doc["points"])
    assert doc["progress"]["target"]["num-cores"] == 1
    # The database is the checkpoint: the same budget again tunes nothing more.
    again = _script(artifacts, out, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    doc = json.loads((out / "mobilenet_v3_small" / "curve.json").read_text())
    assert len(doc["progress"]["chunks"]) == 2
    # A database tuned for one target is never used for another (here: 2 threads, not 1).
    other = _script(artifacts, out, "--trials", "4", "--threads", "2", "--curve-only")
    assert other.returncode == 2
    assert "was tuned for another target" in other.stderr
