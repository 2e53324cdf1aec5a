"""benchmarks/device_check.sh's CPU dry run, as CI makes it: every GPU cell skipped, the probe
and the GPU tests say why, and the script still leaves all of its (at most 8) files; and its
deadlines: a stage that outruns the budget is stopped, the ones after it are not started, and
the script still ends with its files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench.backends.cuda import cuda_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
FILES = {
    "log.txt", "environment.txt", "stages.json", "probe.json", "gpu-tests.txt", "report.md",
    "report.html", "runs.tar.gz",
}  # fmt: skip

pytestmark = pytest.mark.skipif(
    cuda_unavailable_reason() is None, reason="a GPU here: run the script itself"
)


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        env={**os.environ, "PYTHON": sys.executable, "DEVICE_CHECK_WORK": str(tmp_path / "w"),
             **env},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    return proc, out


def test_the_cpu_dry_run_skips_every_gpu_cell_and_leaves_every_file(tmp_path):
    proc, out = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == FILES
    stages = {s["stage"]: s for s in json.loads((out / "stages.json").read_text())}
    assert list(stages) == [
        "export", "core", "probe", "tests", "layouts", "compile", "scenarios", "report"
    ]  # fmt: skip
    assert all(s["ok"] for s in stages.values())
    assert stages["export"]["rc"] == 0 and stages["report"]["rc"] == 0
    gpu_runs = ("core", "layouts", "compile", "scenarios")
    assert {stages[s]["rc"] for s in gpu_runs} == {3}  # no GPU: skipped
    assert json.loads((out / "probe.json").read_text())["skipped"] == cuda_unavailable_reason()
    tests = (out / "gpu-tests.txt").read_text().splitlines()
    assert len(tests) >= 9 and all(line.startswith("skipped") for line in tests)
    report = (out / "report.md").read_text()
    assert "resnet50" in report and "mobilenet_v3_large" in report
    with tarfile.open(out / "runs.tar.gz") as archive:
        names = set(archive.getnames())
    for run, cells in (("core", 24), ("layouts", 6), ("compile", 16), ("scenarios", 3)):
        assert f"results/{run}/manifest.json" in names
        assert sum(1 for n in names if n.startswith(f"results/{run}/cells/")) == cells


def test_a_stage_past_the_budget_is_stopped_and_the_rest_not_started(tmp_path):
    """A 12-second budget: the export (about 25 s here) is stopped at its deadline (124), the
    stages after it find the budget spent; the files are still there and the exit is 0."""
    proc, out = _run(tmp_path, DEVICE_CHECK_BUDGET_S="12")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = json.loads((out / "stages.json").read_text())
    assert stages[0]["stage"] == "export" and stages[0]["rc"] == 124
    assert all(s["note"] == "budget spent" for s in stages[1:])
    assert {"log.txt", "environment.txt", "stages.json", "probe.json", "runs.tar.gz"} <= {
        p.name for p in out.iterdir()
    }
    assert len(list(out.iterdir())) <= 8
