"""What a Slurm job of the `slurm` executor runs on its node: one cell, exactly as the Docker
executor runs it, in the node's own Docker engine.

    python -m runner.executors.slurm_job <run folder>/slurm/<cell>.job.json

The job file (written by runner.executors.slurm on the submitting machine) holds the cell job
(runner.executors.base.CellJob: the cell, its timing, paths, timeout, memory, CPUs, environment
and round) and how images are built there. On the node this module makes sure the cell's image
is in the node's engine and up to date (runner.images.ensure_images: a no-op when it is, a build
when it is not), runs the cell through DockerExecutor.run() (the same image, mounts and
hardening), and writes the cell's outcome as JSON (`<cell>.outcome.json`) next to the job file.
The cell writes its result to the job's result path itself.

Every path in the job file is a path of the submitting machine, used as is: the run folder, the
artifacts, the cache and this checkout (with its .venv) must be visible at the same paths on
every node (a shared file system).

A job cancelled by `scancel` (Ctrl-C of the runner, a Slurm time limit) gets SIGTERM: the cell's
container is removed before the job ends, and no outcome is written.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import Field, asdict, dataclass, fields, replace
from pathlib import Path

from bench.cell import Cell
from bench.errors import UsageError
from bench.fsutil import atomic_write_text
from bench.measure.timing import TimingConfig
from runner.executors.base import CellJob, Outcome
from runner.images import BuildError, BuildSettings, ensure_images, image_for
from runner.signals import exit_code, interruptible

JOB_FILE_VERSION = 1


@dataclass(frozen=True)
class JobFiles:
    """The files of one cell job in `<run folder>/slurm/`: what the node runs, what it answers,
    and the Slurm job's own output."""

    job: Path  # the job file
    outcome: Path  # the node's Outcome, once the cell ended
    started: Path  # written by the node when the cell's container is about to start
    slurm_log: Path  # sbatch --output: this module's own output on the node

    @classmethod
    def of(cls, job: CellJob) -> JobFiles:
        # logs/<cell>.log or logs/<cell>.r<N>.log: one name per cell and round, in the run folder.
        log = job.log_path.resolve()
        stem = log.name.removesuffix(".log")
        return cls.beside(log.parent.parent / "slurm" / f"{stem}.job.json", log)

    @classmethod
    def beside(cls, job_file: Path, log_path: Path) -> JobFiles:
        stem = job_file.name.removesuffix(".job.json")
        return cls(
            job=job_file,
            outcome=job_file.with_name(f"{stem}.outcome.json"),
            started=job_file.with_name(f"{stem}.started"),
            slurm_log=log_path.with_name(log_path.name + ".slurm"),
        )


# The runner's own handles, meaningless on a node: the live line's phase file (a Slurm cell
# shows `starting` until it ends; its node is not this host).
HOST_ONLY_FIELDS = frozenset({"phase"})


def _encoded(value: object) -> object:
    if isinstance(value, (Cell, TimingConfig)):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, tuple):
        return list(value)
    return value


def _decoded(f: Field, value: object) -> object:
    """A CellJob field's value from JSON, by the field's declared type."""
    if f.name == "cell":
        cell = dict(value)
        cell["options"] = tuple(sorted(cell.get("options", {}).items()))
        return Cell(**cell)
    if f.name == "timing":
        return TimingConfig(**value)
    kind = str(f.type)
    if kind.startswith("Path"):
        return Path(value)
    if kind.startswith("tuple"):
        return tuple(value)
    return value


def job_document(job: CellJob, settings: BuildSettings, cache_dir: Path | None) -> str:
    """The job file's text: every field of the cell job, and the build settings of its image."""
    return json.dumps(
        {
            "version": JOB_FILE_VERSION,
            "job": {
                f.name: _encoded(getattr(job, f.name))
                for f in fields(CellJob)
                if f.name not in HOST_ONLY_FIELDS
            },
            "settings": asdict(settings),
            "cache_dir": str(cache_dir.resolve()) if cache_dir else None,
        },
        indent=2,
    )


def read_job(path: Path) -> tuple[CellJob, BuildSettings, Path | None]:
    """A job file -> (the cell job, its image's build settings, the shared cache or None)."""
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != JOB_FILE_VERSION:
            raise UsageError(f"{path}: job file version {doc.get('version')!r}, not 1")
        known = {f.name: f for f in fields(CellJob)}
        job = CellJob(**{k: _decoded(known[k], v) for k, v in doc["job"].items() if k in known})
        cache = doc.get("cache_dir")
        return job, BuildSettings(**doc["settings"]), Path(cache) if cache else None
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path}: not a valid job file ({exc})") from exc


def write_outcome(path: Path, outcome: Outcome) -> None:
    atomic_write_text(path, json.dumps(asdict(outcome), indent=2))


def read_outcome(path: Path) -> Outcome | None:
    """The node's outcome (None: there is none, or it is not one)."""
    try:
        return Outcome(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError):
        return None


def node_cpus(asked: tuple[int, ...]) -> tuple[int, ...]:
    """As many CPUs as the runner pinned cells to, the first of those this job may use on its
    node (Slurm's allocation): the submitting machine's CPU numbers mean nothing here."""
    if not asked or not hasattr(os, "sched_getaffinity"):
        return asked
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < len(asked):
        raise UsageError(
            f"the cell needs {len(asked)} CPUs, this job may use {len(usable)} on "
            f"{socket.gethostname()}"
        )
    return tuple(usable[: len(asked)])


def node_gpus(job: CellJob) -> dict[str, tuple[str, ...]]:
    """A GPU cell's GPUs on its node: the one Slurm allocated (SLURM_JOB_GPUS, the node's own
    GPU numbers, which its engine's device requests use), not every GPU of the node."""
    allocated = os.environ.get("SLURM_JOB_GPUS", "")
    if job.cell.device != "cuda" or not allocated or not hasattr(job, "gpus"):
        return {}
    return {"gpus": tuple(g for g in allocated.split(",") if g)}


def run_job(path: Path) -> int:
    """Run the job file's cell on this node; returns this process's exit status."""
    from runner.executors.docker import DockerExecutor

    files = JobFiles.beside(path, path)  # the outcome and started files; no log is needed here
    job_id, name = os.environ.get("SLURM_JOB_ID", "?"), os.environ.get("SLURM_JOB_NAME", "?")
    host = socket.gethostname()
    print(f"[slurm] job {job_id} ({name}) on {host}: {path}", flush=True)
    # SIGTERM (scancel, Slurm's time limit), SIGINT and SIGHUP raise here, and the Docker
    # executor's `finally` removes the cell's container before the job ends.
    with interruptible():
        try:
            try:
                job, settings, cache_dir = read_job(path)
                executor = DockerExecutor(settings=settings, cache_dir=cache_dir)
                spec = image_for(job.cell.framework, job.cell.device, job.cell.version)
                ids = ensure_images(executor.client, [spec], settings, log=_log)
                executor.images[spec.key] = {"tag": spec.tag(), "id": ids[spec.key]}
                job = replace(job, cpus=node_cpus(job.cpus), **node_gpus(job))
            except (UsageError, BuildError, OSError) as exc:
                print(f"[slurm] the cell cannot start here: {exc}", flush=True)
                write_outcome(files.outcome, Outcome(start_error=f"on {host}: {exc}"))
                return 1
            atomic_write_text(files.started, f"{host} {job_id}\n")
            outcome = executor.run(job)
        except KeyboardInterrupt as exc:
            print(f"[slurm] stopped ({exc}); no cell container is left", flush=True)
            return exit_code(exc)
    write_outcome(files.outcome, outcome)
    ended = "timed out" if outcome.timed_out else f"exit code {outcome.exit_code}"
    print(f"[slurm] the cell's container ended ({ended})", flush=True)
    return 0


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m runner.executors.slurm_job JOB_FILE", file=sys.stderr)
        return 2
    return run_job(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
