"""Cells as Slurm jobs: each cell is submitted with `sbatch`, and on its node the node's own
Docker engine runs it exactly as the Docker executor does (the same image, mounts and
hardening; runner/executors/slurm_job.py is what the job runs).

Images are built and checked on the submitting machine's engine (through a DockerExecutor, so
they are recorded as the docker executor records them), and the export stage runs there too: it
is not a cell. A node makes sure it has the cell's image before it runs the cell (a no-op when
it is up to date; on a cluster whose nodes share this machine's engine or image store, always).

Shared folder: the run folder (results/<run-id>/, where the job file, the node's outcome and the
cell's result are written), the artifacts, the cache and this checkout with its .venv must be
visible at the same paths on every node.

A CPU cell gets a whole node (`--exclusive`: no other job's work overlaps its measurement); a
GPU cell asks for one GPU (`--gres=gpu:1`), its threads' CPUs and its memory. The job's state
comes from `squeue` (every `poll_s`; `sacct` once the controller has forgotten the job, where
accounting is configured) and its answer from the node's outcome file. A cluster without
accounting (no slurmdbd) works: squeue lists a finished job with its final state for MinJobAge
seconds (300 by default), and the outcome file is read as soon as it appears.

Timeouts: the cell's own timeout counts from when its job starts RUNNING (a queued job is never
timed out by the runner; a job still queued after `queue_limit_s`, a day by default, is
cancelled and recorded as one that could not start, with Slurm's reason). The node enforces the
timeout itself (the container is killed after timeout_s, as with the docker executor); the
runner cancels a job whose cell has not ended GRACE_S later, and the node's time to get the
image (at most IMAGE_ALLOWANCE_S) is not counted. Slurm's own limit (`--time`) covers all three.

Ctrl-C (and SIGTERM, SIGHUP) cancels the running job with `scancel`, and waits until it has
left the node (its container removed by the job itself); cleanup at the end of a run cancels
every job of the run (by its name, `deploybench-<run id>-<cell id>`) and removes the run's
containers left on this engine. `--resume` runs again what has no result.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cell import Cell
from bench.errors import UsageError
from bench.fsutil import atomic_write_text
from runner.executors.base import CellJob, Executor, ExportJob, Outcome, parse_memory
from runner.executors.docker import DockerExecutor
from runner.executors.slurm_job import JobFiles, job_document, read_outcome
from runner.images import REPO, BuildSettings, image_for

JOB_PREFIX = "deploybench-"  # + run id + "-" + cell id
QUEUE_LIMIT_S = 24 * 3600.0  # a job still pending after this is cancelled: it cannot start
IMAGE_ALLOWANCE_S = 1800.0  # the node's time to check (or build) the cell's image
GRACE_S = 60.0  # after the cell's timeout: the node kills, saves the log, removes the container
JOB_MEMORY_MARGIN = 1 << 30  # a GPU cell's --mem: its container's limit plus the job's process
CANCEL_WAIT_S = 120.0  # how long a cancelled job may take to leave its node (KillWait is 30 s)
SLURM_CALL_S = 60.0  # one sbatch/squeue/scancel call
UNANSWERED_S = 600.0  # the controller may not answer for this long before the cell is given up
FORGOTTEN_S = 60.0  # a job squeue and sacct never listed is taken as gone after this
FILE_POLL_S = 0.5  # the shared folder is looked at this often (no RPC to the controller)
# States of a job that is not over: Slurm may still run it, or is still ending it.
ACTIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
TIMED_OUT = frozenset({"TIMEOUT", "DEADLINE"})


class SlurmError(RuntimeError):
    """A Slurm command failed; the message is Slurm's own."""


@dataclass
class JobState:
    state: str  # squeue's %T (COMPLETED, ...), or sacct's State
    reason: str  # squeue's %r: why it is pending, or why it ended
    started: bool  # it has a start time: it ran on a node


@dataclass
class _Watch:
    """What the runner knows of one job while it waits for it (monotonic times)."""

    submitted: float
    state: JobState = field(default_factory=lambda: JobState("PENDING", "", False))
    known: bool = False  # squeue (or sacct) has listed it
    answered: float | None = None  # when the controller last answered
    running_since: float | None = None  # when it was first seen running
    cell_since: float | None = None  # when the node said the cell's container starts
    pending_reason: str = ""  # Slurm's last reason while it was pending


def _past_deadline(job: CellJob, now: float, watch: _Watch, ended: bool) -> bool:
    """The runner's own timeout, counted from RUNNING without the node's image check (from the
    cell's start once the node says so). The node kills the cell at its timeout itself: this is
    the backstop for a node or job that does not end."""
    if ended:  # the cell is over and its job ending: it may take the grace to do so
        return now - (watch.cell_since or watch.running_since or now) > job.timeout_s + 2 * GRACE_S
    if watch.cell_since is None:
        running = watch.running_since or now
        return now - running > IMAGE_ALLOWANCE_S + job.timeout_s + GRACE_S
    return now - watch.cell_since > job.timeout_s + GRACE_S


def slurm(*args: str, timeout_s: float = SLURM_CALL_S) -> str:
    """Run a Slurm command (SLURM_CONF and the rest from this process's environment); its
    stdout, or SlurmError with its stderr."""
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"{args[0]}: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit code {proc.returncode}"
        raise SlurmError(f"{args[0]}: {detail}")
    return proc.stdout


def slurm_unavailable_reason() -> str | None:
    """Why no Slurm cluster answers here (None: sbatch, squeue, scancel and sinfo are on PATH
    and the controller answers)."""
    missing = [t for t in ("sbatch", "squeue", "scancel", "sinfo") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not found: install Slurm's client commands (slurm-client)"
    try:
        slurm("sinfo", "-h", "-o", "%P")
    except SlurmError as exc:
        return f"the Slurm controller does not answer ({exc})"
    return None


def _columns(text: str, n: int) -> list[str]:
    """The first line's `|`-separated columns, padded to n."""
    columns = text.strip().splitlines()[0].split("|")
    return [*columns, *[""] * n][:n]


def job_name(run_id: str, cell_id: str) -> str:
    return f"{JOB_PREFIX}{run_id}-{cell_id}"


def time_limit(timeout_s: float) -> str:
    """sbatch --time in minutes: the cell's timeout, the node's image allowance and a grace."""
    return str(math.ceil((timeout_s + IMAGE_ALLOWANCE_S + GRACE_S) / 60))


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(
        self,
        settings: BuildSettings | None = None,
        cache_dir: Path | None = None,
        rebuild: bool = False,
        partition: str | None = None,
        extra_args: tuple[str, ...] = (),
        poll_s: float = 10.0,
        queue_limit_s: float = QUEUE_LIMIT_S,
    ) -> None:
        if why := slurm_unavailable_reason():
            raise UsageError(f"--executor slurm: {why}")
        self.docker = DockerExecutor(settings=settings, cache_dir=cache_dir, rebuild=rebuild)
        self.settings, self.cache_dir = self.docker.settings, cache_dir
        self.partition, self.extra_args = partition, tuple(extra_args)
        self.poll_s, self.queue_limit_s = poll_s, queue_limit_s
        self.submitted: list[tuple[str, str]] = []  # (job id, job name) of every sbatch
        self.gpu_reason = self._gpu_reason()
        # GPU cells run on the nodes: their images are built here whether or not this
        # machine's engine has an NVIDIA runtime.
        self.docker.gpu_reason = self.gpu_reason

    def _gpu_reason(self) -> str | None:
        args = ["sinfo", "-h", "-o", "%G"]
        if self.partition:
            args += ["-p", self.partition]
        gres = slurm(*args).split()
        if any(g.startswith("gpu") for item in gres for g in item.split(",")):
            return None
        where = f"partition {self.partition}" if self.partition else "this Slurm cluster"
        return f"{where} has no node with GPU GRES (sinfo -o %G shows no gpu)"

    # Images and the export stage: on the submitting machine's engine, as the docker executor.
    def prepare(
        self, frameworks: set[tuple[str, str, str | None]], log: Callable[[str], None]
    ) -> dict[str, dict]:
        return self.docker.prepare(frameworks, log)

    def unavailable(self, cell: Cell) -> str | None:
        return self.docker.unavailable(cell)

    def export(self, job: ExportJob) -> int:
        return self.docker.export(job)

    def image_id(self, cell: Cell) -> str | None:
        return self.docker.image_id(cell)

    def run(self, job: CellJob) -> Outcome:
        spec = image_for(job.cell.framework, job.cell.device, job.cell.version)
        info = self.docker.images.get(spec.key, {})
        blank = Outcome(image=info.get("tag"), image_id=info.get("id"))
        files = JobFiles.of(job)
        files.job.parent.mkdir(parents=True, exist_ok=True)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (files.outcome, files.started, files.slurm_log):
            stale.unlink(missing_ok=True)  # an earlier attempt's answer must not stand
        atomic_write_text(files.job, job_document(job, self.settings, self.cache_dir))
        name = job_name(job.run_id, job.cell.id)
        try:
            job_id = slurm(*self._sbatch(job, files, name)).strip().split(";")[0]
        except SlurmError as exc:
            job.log_path.write_text(f"[slurm] sbatch refused the cell's job: {exc}\n")
            blank.start_error = f"sbatch refused the job: {exc}"
            return blank
        self.submitted.append((job_id, name))
        try:
            outcome = self._follow(job, files, job_id, blank)
        except KeyboardInterrupt:
            self._cancel([job_id])
            raise
        return outcome

    def _sbatch(self, job: CellJob, files: JobFiles, name: str) -> list[str]:
        command = [sys.executable, "-m", "runner.executors.slurm_job", str(files.job)]
        args = ["sbatch", "--parsable", "--job-name", name, "--output", str(files.slurm_log)]
        args += ["--chdir", str(REPO), "--no-requeue", "--time", time_limit(job.timeout_s)]
        if job.cell.device == "cuda":
            mib = (parse_memory(job.memory_limit) + JOB_MEMORY_MARGIN) >> 20
            args += ["--gres=gpu:1", f"--cpus-per-task={max(len(job.cpus), 1)}", f"--mem={mib}M"]
        else:
            args.append("--exclusive")  # a whole node: no other job overlaps its measurement
        if self.partition:
            args += ["--partition", self.partition]
        args += [*self.extra_args, "--wrap", "exec " + shlex.join(command)]
        return args

    def _state(self, job_id: str) -> JobState | None:
        """The job's state from squeue (sacct once squeue has forgotten it); None when neither
        knows it. SlurmError when the controller does not answer."""
        try:
            line = slurm("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%r|%S").strip()
        except SlurmError as exc:
            if "Invalid job id" not in str(exc):
                raise
            line = ""
        if line:
            state, reason, start = _columns(line, 3)
            return JobState(state, reason, start not in ("", "N/A", "None", "Unknown"))
        with contextlib.suppress(SlurmError):  # no accounting (no slurmdbd): sacct fails
            rows = slurm("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,Reason,Start")
            if rows.strip():
                state, reason, start = _columns(rows, 3)
                state = state.split()[0]  # "CANCELLED by 0"
                return JobState(state, reason, start not in ("", "None", "Unknown"))
        return None

    def _follow(self, job: CellJob, files: JobFiles, job_id: str, blank: Outcome) -> Outcome:
        """Wait for the job's end, its timeout or its queue limit; the cell's outcome. The
        shared folder is looked at every FILE_POLL_S, the controller asked every poll_s (and
        at once when the node's outcome is there: the job is ending)."""
        watch = _Watch(submitted=time.monotonic())
        last_query = -math.inf
        while True:
            now = time.monotonic()
            if watch.cell_since is None and files.started.exists():
                watch.cell_since = now  # the node has its image: the cell's container starts
            ended = files.outcome.exists()
            if ended or now - last_query >= self.poll_s:
                last_query = now
                try:
                    over = self._observe(job_id, watch, now, files)
                except SlurmError as exc:
                    self._cancel([job_id])
                    blank.engine_error = f"the Slurm controller stopped answering ({exc})"
                    return self._ended(job, files, job_id, blank, watch.state)
                if over is not None:
                    return self._ended(job, files, job_id, blank, over)
            if watch.running_since is None and watch.cell_since is None:
                if now - watch.submitted > self.queue_limit_s:
                    self._cancel([job_id])
                    blank.start_error = (
                        f"the Slurm job {job_id} was still pending after {self.queue_limit_s:g} "
                        f"s (Slurm's reason: {watch.pending_reason or 'none'})"
                    )
                    return self._ended(job, files, job_id, blank, watch.state)
            elif _past_deadline(job, now, watch, ended):
                self._cancel([job_id])
                outcome = read_outcome(files.outcome) or blank
                outcome.timed_out = outcome.timed_out or not ended
                return self._ended(job, files, job_id, outcome, watch.state)
            time.sleep(FILE_POLL_S)

    def _observe(self, job_id: str, watch: _Watch, now: float, files: JobFiles) -> JobState | None:
        """Ask the controller about the job: its final state when it is over, else None.
        SlurmError when the controller has not answered for UNANSWERED_S."""
        try:
            seen = self._state(job_id)
        except SlurmError:
            if now - (watch.answered or watch.submitted) > UNANSWERED_S:
                raise
            return None  # a busy or restarting controller: ask again later
        watch.answered = now
        if seen is None:  # neither squeue nor sacct lists it (no accounting: forgotten)
            if watch.known or now - watch.submitted > FORGOTTEN_S:
                return JobState("UNKNOWN", "", files.started.exists())
            return None  # just submitted: the controller may not list it yet
        watch.known, watch.state = True, seen
        if seen.state not in ACTIVE:
            if not seen.started and seen.reason in ("", "None"):
                seen.reason = watch.pending_reason  # why it never ran
            return seen
        if seen.state == "PENDING":
            if seen.reason not in ("", "None"):
                watch.pending_reason = seen.reason
        elif watch.running_since is None:
            watch.running_since = now
        return None

    def _ended(
        self, job: CellJob, files: JobFiles, job_id: str, blank: Outcome, state: JobState
    ) -> Outcome:
        """The cell's outcome once its job is over: the node's answer, else what Slurm says."""
        outcome = read_outcome(files.outcome)
        why = f" ({state.reason})" if state.reason not in ("", "None") else ""
        with job.log_path.open("a") as log:
            log.write(f"\n[slurm] job {job_id} ended {state.state}{why}\n")
            if outcome is None and files.slurm_log.is_file():  # what the job itself said
                log.write(files.slurm_log.read_text(errors="replace")[-3000:])
        if outcome is not None:
            return outcome
        if blank.start_error or blank.engine_error or blank.timed_out:
            return blank
        if state.state in TIMED_OUT:
            blank.timed_out = True
        elif state.state == "OUT_OF_MEMORY":
            blank.oom = True
        elif not state.started or not files.started.exists():
            blank.start_error = (
                f"the Slurm job {job_id} ended {state.state}{why} before the cell started "
                f"(its output: {files.slurm_log})"
            )
        else:
            blank.engine_error = (
                f"the Slurm job {job_id} ended {state.state} without the cell's outcome "
                f"(its output: {files.slurm_log})"
            )
        return blank

    def _run_jobs(self, run_id: str) -> list[str]:
        """The ids of this user's jobs of the run that are not over (by their names)."""
        prefix = f"{JOB_PREFIX}{run_id}-"
        listed = slurm("squeue", "-h", "--me", "-o", "%i|%j|%T")
        jobs = [line.split("|") for line in listed.splitlines() if line.count("|") == 2]
        return [i for i, name, state in jobs if name.startswith(prefix) and state in ACTIVE]

    def _cancel(self, job_ids: list[str]) -> None:
        """scancel the jobs, and wait until they have left their nodes: each removes its cell's
        container as it gets SIGTERM."""
        if not job_ids:
            return
        with contextlib.suppress(SlurmError):
            slurm("scancel", *job_ids)
        deadline = time.monotonic() + CANCEL_WAIT_S
        pending = list(job_ids)
        while pending and time.monotonic() < deadline:
            with contextlib.suppress(SlurmError):
                pending = [j for j in pending if (s := self._state(j)) and s.state in ACTIVE]
            if pending:
                time.sleep(FILE_POLL_S)

    def cleanup(self, run_id: str | None = None) -> int:
        """With `run_id`: cancel every job of the run still queued or running (by name, and the
        ids submitted here), then remove the run's containers left on this machine's engine.
        Without: the docker executor's cleanup (containers of runners that are gone). Returns
        how many jobs and containers."""
        if run_id is None:
            return self.docker.cleanup()
        ids: set[str] = set()
        with contextlib.suppress(SlurmError):
            ids.update(self._run_jobs(run_id))
        for job_id, name in self.submitted:
            if not name.startswith(f"{JOB_PREFIX}{run_id}-"):
                continue
            with contextlib.suppress(SlurmError):
                if (s := self._state(job_id)) and s.state in ACTIVE:
                    ids.add(job_id)
        self._cancel(sorted(ids))
        # The node's job labels its container with its own process as the owner: once the job
        # is gone, that owner is dead and the docker executor's cleanup removes what is left.
        return len(ids) + self.docker.cleanup(run_id) + self.docker.cleanup()
