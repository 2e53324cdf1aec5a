"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from bench.artifact import Artifact
from bench.cell import Cell
from bench.measure.timing import TimingConfig
from bench.result import validate, write_result
from bench.run import run_cell

SMALL_MODEL = "mobilenet_v3_small"
# Short warm-up and measurement: tests check what a cell records, not how fast it is.
QUICK = TimingConfig(warmup_min_iters=2, warmup_min_s=0.0, min_iters=5, min_s=0.0)


def assert_valid_result_file(path: Path) -> dict:
    """Every result a test produces is validated against the JSON Schema."""
    doc = json.loads(Path(path).read_text())
    validate(doc)
    return doc


def run_cell_to_file(artifact: Artifact, tmp_path: Path, framework: str, **cell: object) -> dict:
    """Run one real cell with QUICK timing, write its result, validate it, return the document."""
    result = run_cell(
        Cell(model=artifact.model, framework=framework, threads=2, **cell), artifact, QUICK
    )
    return assert_valid_result_file(write_result(result, tmp_path / "r.json"))


def run_locally(matrix_path: Path, artifact, results_root: Path, run_id: str = "r", **opts):
    """Run a matrix file's cells with the local executor on an existing artifact."""
    from runner.executors import create_executor
    from runner.matrix import load_matrix
    from runner.orchestrate import MatrixRun, RunOptions

    executor = create_executor("local")
    options = RunOptions(
        run_id=run_id,
        results_root=results_root,
        artifacts_dir=artifact.path.parent,
        export=False,
        **opts,
    )
    return MatrixRun(
        load_matrix(str(matrix_path)), executor, executor, options, log=lambda _: None
    ).run()


def run_gpu_matrix(tmp_path: Path, executor: str):
    """`make bench-gpu` (the gpu profile) as a subprocess into tmp_path; skip on a GPU host."""
    from bench.backends.cuda import cuda_unavailable_reason

    if executor == "local" and cuda_unavailable_reason() is None:
        import pytest

        pytest.skip("this host has a GPU")
    results, artifacts = tmp_path / "results", tmp_path / "artifacts"
    args = ["run", "--matrix", "gpu", "--executor", executor, "--run-id", "g"]
    args += ["--results", str(results), "--artifacts", str(artifacts)]
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=300
    )
    return proc, results / "g", artifacts


def assert_all_gpu_cells_skipped(proc, run_dir: Path, artifacts: Path, reason_part: str) -> None:
    """What a host without a GPU runtime must do with the gpu profile."""
    from runner.cli import NO_GPU_EXIT_CODE
    from runner.matrix import load_matrix

    n = len(load_matrix("gpu").cells)

    assert proc.returncode == NO_GPU_EXIT_CODE, proc.stderr
    first_line = proc.stderr.splitlines()[1]  # after the line that names the run
    assert first_line.startswith("no GPU runtime here: ") and f"{n} GPU cells" in first_line
    files = sorted((run_dir / "cells").glob("*.json"))
    assert len(files) == n
    for file in files:
        doc = assert_valid_result_file(file)
        assert doc["status"] == "skipped" and reason_part in doc["reason"]
    assert not artifacts.exists() or not any(artifacts.iterdir())  # nothing exported for them
    assert f"{n} GPU cells skipped" in proc.stderr and "Traceback" not in proc.stderr


def onnx_artifact_of(net, tmp: Path):
    """A torch module exported to ONNX (TorchScript exporter, dynamic batch) and made a user
    ONNX artifact: a small graph whose reference comes from ONNX Runtime."""
    import torch

    from bench.export import ExportSpec, export

    path = tmp / "tiny.onnx"
    torch.onnx.export(
        net.eval(),
        (torch.zeros(1, 3, 224, 224),),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    artifact, _ = export(ExportSpec(model=f"onnx:{path}"), tmp / "artifacts")
    return artifact


# CPUs of this machine kind that the host may not be, run under QEMU's user-mode emulation
# (Debian's qemu-user): its CPU model sets the CPUID the frameworks dispatch their kernels on,
# and the forced flags make bench.backends.cpu answer as that CPU (/proc/cpuinfo stays the
# host's under QEMU). Only what runs under TCG can be emulated: ONNX Runtime does; OpenVINO
# and Inductor's compiled kernels do not.
EMULATED_CPUS = {"zen3": ("EPYC-Milan", "avx,avx2,fma,f16c,sse4_2")}


def emulated_python(cpu: str) -> tuple[list[str], dict[str, str]]:
    """(argv prefix, environment) that run this venv's Python on the emulated `cpu`; skips
    without qemu-user unless DEPLOYBENCH_REQUIRE_EMULATION=1 (CI installs it), which fails."""
    import os
    import shutil

    import pytest

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        message = "qemu-user is not installed (apt-get install qemu-user): no emulated CPUs"
        if os.environ.get("DEPLOYBENCH_REQUIRE_EMULATION") == "1":
            pytest.fail(message)
        pytest.skip(message)
    model, flags = EMULATED_CPUS[cpu]
    return [qemu, "-cpu", model, sys.executable], {**os.environ, "DEPLOYBENCH_CPU_FLAGS": flags}


def result_with_rounds(
    framework: str,
    precision: str,
    medians: list[float],
    verdict: str,
    run_id: str | None = None,
):
    """A real ok result (the v3 fixture) whose rounds had these medians (five identical
    iterations each): hand-made round data for the statistics of reports and compare."""
    from bench.measure.sections import merge_rounds, round_section
    from bench.result import SCHEMA_VERSION, load_result

    fixtures = Path(__file__).parent / "fixtures" / "results" / f"v{SCHEMA_VERSION}"
    r = load_result(next(fixtures.glob("ok*.json")))
    r.cell = {**r.cell, "framework": framework, "precision": precision, "batch_size": 1}
    r.run_id = run_id if run_id is not None else r.run_id
    rounds = [
        round_section(
            scope="host_end_to_end",
            scope_description="test",
            config=r.timing["config"],
            samples_ms=[m] * 5,
            warmup_iters=1,
            warmup_s=0.1,
            measure_s=0.1,
            batch_size=1,
            flops_per_sample=None,
            round_index=i,
            load_ms=1.0,
            cold_ms=1.0,
        )
        for i, m in enumerate(medians, 1)
    ]
    r.timing = merge_rounds(rounds, 1, None)
    r.parity = {**r.parity, "verdict": verdict, "top1_agreement": 1.0 if verdict == "pass" else 0.5}
    validate(r.to_dict())
    return r


def start_runner(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A real runner process with default signal handlers (a background job of a
    non-interactive shell, as the test suite may be, ignores SIGINT) in its own session."""
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def seed_running_first(matrix_text: str, framework: str) -> int:
    """An order seed with which round 1 runs `framework`'s cell first (tests that need a cell
    finished before another hangs), found with the runner's own planner."""
    from runner.matrix import parse_matrix
    from runner.rounds import RoundPlan

    cells = parse_matrix(matrix_text, "m.yaml").cells
    return next(
        s for s in range(1000) if RoundPlan(seed=s).order(cells, 1)[0][0].framework == framework
    )


def docker_or_skip() -> tuple[object, str]:
    """(a client of the local engine, the base image the Docker tests build on): the base from
    $DEPLOYBENCH_BASE_IMAGE, else the offline one if this engine has it (`make base`), else the
    registry's. No engine: skip, or fail where CI requires one (DEPLOYBENCH_REQUIRE_DOCKER=1)."""
    import os

    import pytest

    from bench.errors import UsageError
    from runner.executors.docker import connect
    from runner.images import DEFAULT_BASE, OFFLINE_BASE

    try:
        client = connect()
    except UsageError as exc:
        if os.environ.get("DEPLOYBENCH_REQUIRE_DOCKER") == "1":
            raise
        pytest.skip(str(exc))
    base = os.environ.get("DEPLOYBENCH_BASE_IMAGE")
    if not base:
        names = {t for image in client.images.list() for t in image.tags}
        base = OFFLINE_BASE if OFFLINE_BASE in names else DEFAULT_BASE
    return client, base
