"""benchmarks/faults.py on a small scale: two faults, once each, on this host's engine; its
output says nothing was lost, corrupted or left behind, and the resumed runs completed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
REPO = Path(__file__).parents[2]


def test_the_fault_benchmark_counts_a_crash_and_a_sigkill(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the fault benchmark mounts file systems and runs a dockerd: root only")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "faults.py"),
            "--engine",
            "host",
            "--faults",
            "crash,sigkill",
            "--repeats",
            "1",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    tallies = {t["fault"]: t for t in json.loads((out / "faults.json").read_text())}
    for fault in ("crash", "sigkill"):
        t = tallies[fault]
        assert t["repeats"] == 1 and t["resumed_complete"] == 1, t
        assert t["results_lost"] == t["results_corrupt"] == t["containers_left"] == 0, t
        assert t["exit_codes_as_documented"] == 1, t["notes"]
    # the crashed cell ran twice (the fault, the resume); SIGKILL left its cell's container
    assert tallies["crash"]["cells_run"] == 3
    assert tallies["sigkill"]["containers_after_fault"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "faults" and manifest["host"]["cpu"]["summary"]
    assert "| crash | 1 | 3 | 0 | 0 |" in (out / "faults.md").read_text()
