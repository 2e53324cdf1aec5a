"""Cells as subprocesses of the current Python environment: for development, CI, inside a
framework image (compose), and hosts where Docker is not allowed.

Each cell is a fresh `python -m bench run --cell FILE` process in its own process group,
pinned to the run's CPUs, with its data segment limited to the memory limit (so a runaway
allocation fails inside the cell instead of taking the host down) and killed on timeout. The
runner kills the cell's group when it is interrupted; a cell also gets SIGKILL from the kernel
when the runner dies without cleaning up (SIGKILL, a crash): it never outlives its runner.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.backends import BACKENDS
from bench.backends.cuda import cuda_unavailable_reason
from bench.phase import PHASE_ENV
from runner.executors.base import (
    CellJob,
    Executor,
    ExportJob,
    Outcome,
    cell_document,
    export_arguments,
    parse_memory,
)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with(parent: int) -> None:
    """In the child, before exec: SIGKILL when the parent (the runner) dies; and if it died
    already, while this child was being started, stop now."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _run_logged(
    cmd: list[str],
    log_path: Path,
    timeout_s: float,
    env: dict[str, str],
    preexec: Callable[[], None] | None = None,
) -> tuple[int | None, bool]:
    """Run `cmd` with output to `log_path`; returns (exit code, timed out)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    parent = os.getpid()

    def child() -> None:
        _die_with(parent)
        if preexec:
            preexec()

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=child,
        )
        try:
            return proc.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            return None, True
        finally:
            if proc.poll() is None:  # timeout, or Ctrl-C in the runner: kill the whole group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.gpu_reason = cuda_unavailable_reason()

    def prepare(
        self, frameworks: set[tuple[str, str, str | None]], log: Callable[[str], None]
    ) -> dict[str, dict]:
        ready = {}
        # A version other than the installed one is the cell's to refuse (bench/run.py).
        for framework, device in sorted({(f, d) for f, d, _ in frameworks}):
            entry = BACKENDS.get(framework)
            state = "importable" if entry.importable() else "NOT INSTALLED (its cells are skipped)"
            log(f"local {framework}/{device}: {state}")
            ready[f"local-{framework}-{device}"] = {"tag": None, "id": None}
        return ready

    def export(self, job: ExportJob) -> int:
        args = export_arguments(job.spec, str(job.artifacts_dir), str(job.result_path))
        cmd = [sys.executable, "-m", "bench", *args]
        code, timed_out = _run_logged(cmd, job.log_path, job.timeout_s, dict(os.environ))
        return 124 if timed_out else int(code)

    def run(self, job: CellJob) -> Outcome:
        memory = parse_memory(job.memory_limit)

        def limit() -> None:  # in the child, before exec
            if job.cpus and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, job.cpus)
            resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))

        with tempfile.NamedTemporaryFile("w", suffix=".cell.json", delete=False) as f:
            f.write(cell_document(job, str(job.artifact_dir), str(job.result_path)))
        phase = job.phase.path = job.result_path.with_suffix(".phase")
        try:
            env = {**os.environ, **job.env, PHASE_ENV: str(phase)}
            code, timed_out = _run_logged(
                [sys.executable, "-m", "bench", "run", "--cell", f.name],
                job.log_path,
                job.timeout_s,
                env,
                limit,
            )
        finally:
            os.unlink(f.name)
            phase.unlink(missing_ok=True)
        tail = job.log_path.read_text(errors="replace")[-4000:]
        return Outcome(
            exit_code=code,
            timed_out=timed_out,
            oom=not timed_out and code != 0 and "MemoryError" in tail,
        )
