"""TVM's MetaSchedule databases: what one holds (measured records, tasks covered, the budget
label a result carries) and the repository's tuned ones (`tuning/tvm/`), found by target, model
and batch size.

A MetaSchedule database is a pair of JSON-lines files (workloads, tuning records) that TVM
applies to whatever module it is given: its lookup matches a kernel's structure and ignores the
target. A database tuned for one CPU (`mcpu`) or thread count is therefore never looked up
for another; the folder is keyed by the exact target:

    tuning/tvm/<target id>/<model>-b<batch>/
        database_workload.json, database_tuning_record.json   MetaSchedule's own, in tuning order
        provenance.json   target, TVM version, host CPU, artifact key, trials, seconds, command

`benchmarks/tvm_tuning.py` writes these folders (and continues them later); the `tvm` backend
applies a matching one (option `database=committed`, the default) so that a matrix shows TVM at
the largest budget anyone has paid for on this kind of machine, labelled with that budget, or
tunes further from it when the cell asks for more trials. The Docker executor mounts the folder
read-only into TVM's containers (`DEPLOYBENCH_TUNING_DIR`); a checkout finds it beside `bench/`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

TUNING_ENV = "DEPLOYBENCH_TUNING_DIR"
REPO_TUNING = Path(__file__).resolve().parents[2] / "tuning" / "tvm"
RECORDS = "database_tuning_record.json"
WORKLOADS = "database_workload.json"
PROVENANCE = "provenance.json"
_FAILED_RUN_S = 1e9  # MetaSchedule records a candidate that failed to build or run as 1e10 s


def tuning_root() -> Path:
    """Where the committed databases are: $DEPLOYBENCH_TUNING_DIR, else the checkout's."""
    return Path(os.environ.get(TUNING_ENV) or REPO_TUNING)


def target_id(target: dict[str, object]) -> str:
    """A folder name that changes with any field of the target, readable at a glance:
    llvm-rocketlake-2c-1a2b3c4d (kind, mcpu, threads, hash of the canonical target)."""
    digest = hashlib.sha256(json.dumps(target, sort_keys=True).encode()).hexdigest()[:8]
    mcpu = str(target.get("mcpu") or "generic")
    return f"{target.get('kind', 'unknown')}-{mcpu}-{target.get('num-cores', 0)}c-{digest}"


def database_dir(root: Path, target: dict[str, object], model: str, batch: int) -> Path:
    return root / target_id(target) / f"{model}-b{batch}"


def record_lines(db_dir: Path) -> int:
    path = db_dir / RECORDS
    if not path.is_file():
        return 0
    with path.open() as f:
        return sum(1 for line in f if line.strip())


@dataclass(frozen=True)
class Committed:
    """A committed database that matches a cell: its folder and what its provenance says."""

    path: Path
    provenance: dict

    @property
    def records(self) -> int:
        """Measured candidates: the trials the database cost."""
        return int(self.provenance.get("records", record_lines(self.path)))

    @property
    def per_task(self) -> int:
        return int(self.provenance.get("per_task", 0))

    @functools.cached_property
    def sha256(self) -> str:
        """The records file's hash (read once): which database a result was measured with."""
        return hashlib.sha256((self.path / RECORDS).read_bytes()).hexdigest()

    def summary(self) -> dict[str, object]:
        """What a result records about the database it applied."""
        p = self.provenance
        return {
            "folder": f"{self.path.parent.name}/{self.path.name}",
            "records": self.records,
            "per_task": self.per_task,
            "tasks": p.get("tasks"),
            "tuning_s": p.get("tuning_s"),
            "host_cpu": p.get("host_cpu"),
            "tvm": p.get("tvm"),
            "artifact_key": p.get("artifact_key"),
            "tuned_at": p.get("tuned_at"),
            "sha256": self.sha256,
        }

    def budget_note(self) -> str:
        """The budget for a table's notes; the CPU by name only (its ISA features are in the
        provenance, and the target id says which CPU the kernels are for)."""
        minutes = float(self.provenance.get("tuning_s") or 0) / 60
        cpu = str(self.provenance.get("host_cpu") or "an unnamed CPU").split(" (family")[0]
        return f"committed database: {self.records} trials, {minutes:.0f} min on {cpu}"


def find_committed(
    model: str, target: dict[str, object], batch: int, tvm_version: str, root: Path | None = None
) -> tuple[Committed | None, str | None]:
    """The committed database for exactly this target, model, batch and TVM version, and a
    note when there is none although the model has one for another target or version."""
    root = tuning_root() if root is None else root
    path = database_dir(root, target, model, batch)
    provenance_path = path / PROVENANCE
    if provenance_path.is_file() and (path / RECORDS).is_file() and (path / WORKLOADS).is_file():
        provenance = json.loads(provenance_path.read_text())
        if provenance.get("target") != target:  # a copied folder: the name says one thing
            return None, f"{path}: its provenance names another target; not applied"
        if provenance.get("tvm") != tvm_version:
            return None, (
                f"the committed database for this target was tuned with TVM "
                f"{provenance.get('tvm')}, this is {tvm_version}; not applied"
            )
        return Committed(path, provenance), None
    others = sorted(p.parent.parent.name for p in root.glob(f"*/{model}-b{batch}/{PROVENANCE}"))
    if others:
        return None, (
            f"committed databases for {model} at batch {batch} are for {', '.join(others)}; "
            f"none for this target ({target_id(target)}): untuned unless the cell tunes"
        )
    return None, None


def _valid(record: object) -> bool:
    runs = record.run_secs
    return bool(runs) and max(float(x) for x in runs) < _FAILED_RUN_S


def valid_records(work_dir: Path) -> int:
    """Tuning records of candidates that built and ran."""
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(work_dir=str(work_dir))
    return sum(1 for r in db.get_all_tuning_records() if _valid(r))


def tuned_workloads(work_dir: Path) -> int:
    """How many distinct tasks (workloads) have at least one candidate that built and ran."""
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(work_dir=str(work_dir))
    # A workload's JSON form starts with its structural hash.
    return len({str(r.workload.as_json()[0]) for r in db.get_all_tuning_records() if _valid(r)})


def tasks_in_database(tasks: list, work_dir: Path) -> int:
    """How many of the model's tuning tasks the database has a workload for (a database
    tuned on another export of the model may miss some)."""
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(work_dir=str(work_dir))
    return sum(1 for task in tasks if db.has_workload(task.dispatched[0]))


def tuning_label(
    trials: int, tasks: int | None, tuned: int | None, per_task: int, source: str | None = None
) -> str:
    """UNTUNED; LIGHTLY TUNED when the budget leaves tasks without a measured candidate; else
    TUNED. The note says how much of the full budget (tasks x trials per task) was given, and
    `source` where the trials came from (a committed database)."""
    if trials == 0 or not tasks:
        return "UNTUNED"
    share = f"{trials} trials of {tasks} tasks x {per_task}" + (f"; {source}" if source else "")
    if tuned is not None and tuned < tasks:
        return f"LIGHTLY TUNED ({tuned} of {tasks} tasks tuned; {share})"
    return f"TUNED ({share})"
