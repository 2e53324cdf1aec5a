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
    # 120 s over 20 measured candidates = 6 s each; 800 x 3 tasks = 2400 trials = 4 hours
    assert "6.0 s per measured candidate" in text
    assert "2400 trials would take about 4 hours" in text
    # A call that asked for more trials than it measured: the cost is per measured candidate.
    doc["progress"]["chunks"] = [{"trials": 30, "records_after": 20, "seconds": 120.0}]
    assert "6.0 s per measured candidate" in curve_markdown(doc)


def _script(artifacts: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "benchmarks" / "tvm_tuning.py"), "--model"]
    cmd += ["mobilenet_v3_small", "--artifacts", str(artifacts), "--out", str(out / "curves")]
    cmd += ["--database-root", str(out / "tuning"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


def _run_tvm(artifact, tuning_root: Path, threads: int = 1, **options: str):
    """A real TVM cell (`python -m bench run`, a process of its own: TVM's thread pool is
    sized once per process) with the committed databases under `tuning_root`."""
    import os

    from bench.backends.tvm_database import TUNING_ENV
    from bench.result import load_result

    out = tuning_root.parent / f"cell-{threads}-{len(options)}.json"
    cmd = [sys.executable, "-m", "bench", "run", "--framework", "tvm", "--model"]
    cmd += ["mobilenet_v3_small", "--artifact", str(artifact.path), "--threads", str(threads)]
    cmd += ["--iters", "3", "--seconds", "0", "--warmup-iters", "1", "--warmup-seconds", "0"]
    cmd += ["--out", str(out), *(f"--option={k}={v}" for k, v in options.items())]
    env = {**os.environ, TUNING_ENV: str(tuning_root)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert out.is_file(), proc.stderr[-3000:]
    return load_result(out)


def test_the_script_tunes_into_the_committed_layout_continues_and_a_cell_applies_it(
    small_artifact, tmp_path
):
    from bench.backends.tvm_database import PROVENANCE, target_id

    artifacts, out = small_artifact.path.parent, tmp_path
    args = ["--trials", "4", "--chunk", "2", "--per-task", "2", "--threads", "1"]
    done = _script(artifacts, out, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "curves" / "mobilenet_v3_small" / "curve.json").read_text())
    assert [c["trials"] for c in doc["progress"]["chunks"]] == [2, 2]
    assert [p["records"] for p in doc["points"]] == [0, 4]
    assert all(p["parity"] == "pass" for p in doc["points"])
    target = doc["progress"]["target"]
    assert target["num-cores"] == 1
    # The database lies in the folder of its exact target, with its provenance.
    folder = out / "tuning" / target_id(target) / "mobilenet_v3_small-b1"
    assert doc["database"] == f"{target_id(target)}/mobilenet_v3_small-b1"
    provenance = json.loads((folder / PROVENANCE).read_text())
    assert provenance["records"] == record_count(folder) == 4
    assert provenance["per_task"] == 2 and provenance["artifact_key"] == small_artifact.key
    assert provenance["target"] == target and provenance["host_cpu"]
    assert not (folder / "logs").exists()  # MetaSchedule's logs are not committed
    # The database is the checkpoint: the same budget again tunes nothing more.
    again = _script(artifacts, out, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    doc = json.loads((out / "curves" / "mobilenet_v3_small" / "curve.json").read_text())
    assert len(doc["progress"]["chunks"]) == 2

    # A TVM cell at trials=0 on this exact target applies it, labelled with its budget.
    tuned = _run_tvm(small_artifact, out / "tuning")
    assert tuned.status == "ok" and tuned.parity_passed, tuned.reason
    runtime = tuned.runtime
    assert runtime["tuned"] is True and runtime["tuning_source"] == "committed"
    assert runtime["tuning_reused"] is True and runtime["tuning_s"] == 0.0
    assert runtime["tuning_committed"]["records"] == 4
    assert runtime["tuning_committed"]["folder"] == doc["database"]
    assert "committed database: 4 trials" in runtime["tuning"]
    assert runtime["weight_prepack"] is True
    # database=none: the cell's own budget only, as before committed databases existed.
    plain = _run_tvm(small_artifact, out / "tuning", database="none")
    assert plain.runtime["tuning"] == "UNTUNED" and plain.runtime["tuning_source"] == "none"


def test_a_database_is_never_applied_to_another_target(small_artifact, tmp_path):
    """TVM's lookup ignores the target: a database tuned at 1 thread must not reach a cell at
    2 (another `num-cores`), and the cell says which targets have one."""
    from bench.cell import default_threads

    if default_threads() < 2:
        import pytest

        pytest.skip("needs 2 CPUs for a second target")
    done = _script(small_artifact.path.parent, tmp_path, "--trials", "2", "--threads", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    other = _run_tvm(small_artifact, tmp_path / "tuning", threads=2)
    assert other.status == "ok"
    assert other.runtime["tuning_source"] == "none" and other.runtime["tuning"] == "UNTUNED"
    note = other.runtime["tuning_committed_note"]
    assert "-1c-" in note and "none for this target" in note and "-2c-" in note
    # The script refuses a folder whose provenance names another target (a copy by hand).
    import shutil

    from bench.backends.tvm import host_target
    from bench.backends.tvm_database import target_id

    src = next((tmp_path / "tuning").glob("*/mobilenet_v3_small-b1"))
    copied = tmp_path / "tuning" / target_id(host_target(2)) / "mobilenet_v3_small-b1"
    shutil.copytree(src, copied)
    refused = _script(small_artifact.path.parent, tmp_path, "--trials", "2", "--threads", "2")
    assert refused.returncode == 2 and "was tuned for another target" in refused.stderr
