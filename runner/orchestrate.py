"""Running a matrix: images, one export per model, then every cell, isolated, in order.

Nothing a cell does can stop the matrix: a cell that crashes, hangs, runs out of memory or
cannot start gets a result written by the runner (status `failed` or `skipped`, the reason
and its log tail). Results and the manifest are written atomically; Ctrl-C kills the running
cell, marks the manifest `interrupted`, and `--resume` continues where it stopped, keeping
every result that is still valid for the same image, artifact and cell.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.artifact import Artifact, find_artifact
from bench.cell import Cell
from bench.errors import ArtifactError, UsageError
from bench.measure.fingerprint import fingerprint
from bench.result import CellResult, ResultError, load_result, write_result
from runner.executors.base import CellJob, Executor, ExportJob, Outcome
from runner.images import export_framework
from runner.manifest import Manifest, now
from runner.matrix import Matrix
from runner.rounds import merge_cell_rounds, stop_reason

LOG_TAIL_CHARS = 4000
EXPORT_TIMEOUT_S = 3600.0
# Statuses a resumed run keeps; failed cells are run again.
KEPT_ON_RESUME = ("ok", "unsupported", "skipped")


@dataclass
class RunOptions:
    run_id: str
    results_root: Path
    artifacts_dir: Path
    resume: bool = False
    export: bool = True  # False: the artifacts must already be in artifacts_dir
    env: dict[str, str] = field(default_factory=dict)  # extra environment of every cell
    # What the run's reader must know about where cells ran (the local executor's caveats).
    executor_note: str | None = None
    cell_env: dict[str, dict[str, str]] = field(default_factory=dict)  # per cell id

    @property
    def run_dir(self) -> Path:
        return self.results_root / self.run_id


@dataclass
class RunSummary:
    run_dir: Path
    results: list[CellResult]
    reused: int = 0
    no_gpu_reason: str | None = None  # set when GPU cells were skipped: no GPU runtime here

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    @property
    def parity_failures(self) -> int:
        return sum(1 for r in self.results if r.parity_passed is False)

    @property
    def any_failed(self) -> bool:
        return self.counts["failed"] > 0

    @property
    def gpu_cells_skipped(self) -> int:
        """GPU cells this host could not run at all (no GPU, no NVIDIA container runtime)."""
        if self.no_gpu_reason is None:
            return 0
        return sum(
            1
            for r in self.results
            if r.cell["device"] == "cuda"
            and r.status == "skipped"
            and r.reason == self.no_gpu_reason
        )


def run_cpus(threads: int) -> tuple[int, ...]:
    """The CPU set of every cell: the first `threads` CPUs this process may use."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if usable and threads > len(usable):
        raise UsageError(f"threads {threads} > the {len(usable)} CPUs this runner may use")
    return tuple(usable[:threads])


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


def _synthesized(
    cell: Cell,
    status: str,
    reason: str,
    run_id: str,
    artifact: Artifact | None,
    log_tail: str | None = None,
    outcome: Outcome | None = None,
) -> CellResult:
    """A result the runner writes for a cell that produced none itself."""
    env = fingerprint()
    if outcome and outcome.image:
        env["container"] = {
            "in_container": True,
            "image": outcome.image,
            "image_digest": outcome.image_id,
        }
    return CellResult(
        cell=cell.to_dict(),
        status=status,
        reason=reason,
        log_tail=log_tail or None,
        environment=env,
        artifact=artifact.summary() if artifact else None,
        run_id=run_id,
    )


class MatrixRun:
    """One run of a matrix through an executor (export through `export_executor`)."""

    def __init__(
        self,
        matrix: Matrix,
        executor: Executor,
        export_executor: Executor,
        opts: RunOptions,
        log: Callable[[str], None] = print,
    ) -> None:
        self.matrix, self.executor, self.export_executor = matrix, executor, export_executor
        self.opts, self.log = opts, log
        self.cells_dir = opts.run_dir / "cells"
        self.logs_dir = opts.run_dir / "logs"
        self.cpus = run_cpus(matrix.threads)
        self.plan = matrix.round_plan

    def _open_manifest(self) -> Manifest:
        existing = Manifest.read(self.opts.run_dir)
        if existing and not self.opts.resume:
            raise UsageError(
                f"run {self.opts.run_id!r} already exists in {self.opts.run_dir}; "
                "pass --resume to continue it, or choose another --run-id"
            )
        if existing:
            existing.resumed_at.append(now())
            existing.state, existing.finished_at = "running", None
            return existing
        return Manifest(
            self.opts.run_id,
            self.matrix.source,
            self.executor.name,
            fingerprint(),
            executor_note=self.opts.executor_note,
        )

    def _export(self, model: str) -> Artifact | str:
        """The model's artifact, or why there is none."""
        log_path = self.logs_dir / f"export-{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}.log"
        try:
            if not self.opts.export:
                return find_artifact(self.opts.artifacts_dir, model)
            job = ExportJob(
                self.matrix.export_spec(model), self.opts.artifacts_dir, log_path, EXPORT_TIMEOUT_S
            )
            job.result_path.unlink(missing_ok=True)  # a stale answer must not stand for this one
            code = self.export_executor.export(job)
            if code != 0 or not job.result_path.is_file():
                return f"export of {model} failed (exit code {code}):\n{_tail(log_path)[-1500:]}"
            made = json.loads(job.result_path.read_text())
            return Artifact.load(self.opts.artifacts_dir / Path(made["artifact"]).name)
        except ArtifactError as exc:
            return str(exc)

    def _round_paths(self, cell: Cell, index: int) -> tuple[Path, Path]:
        """(result, log) of one round of a cell: with one round, the cell's own files."""
        log = self.logs_dir / (f"{cell.id}.log" if index == 1 else f"{cell.id}.r{index}.log")
        if not self.plan.multi:
            return self.cells_dir / f"{cell.id}.json", log
        return self.opts.run_dir / "rounds" / cell.id / f"r{index}.json", log

    def _reusable(self, cell: Cell, path: Path, artifact: Artifact | str) -> CellResult | None:
        if not (self.opts.resume and path.is_file()):
            return None
        try:
            old = load_result(path)
        except ResultError:
            return None
        image = self.executor.image_id(cell)
        same = (
            old.cell == cell.to_dict()
            and old.status in KEPT_ON_RESUME
            and (old.artifact or {}).get("key") == getattr(artifact, "key", None)
            and old.environment.get("container", {}).get("image_digest") == image
        )
        return old if same else None

    def _run_cell(
        self, cell: Cell, artifact: Artifact | str, index: int = 1, position: int | None = None
    ) -> CellResult:
        path, log_path = self._round_paths(cell, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        if cell.device == "cuda" and self.executor.gpu_reason:
            return _synthesized(
                cell,
                "skipped",
                self.executor.gpu_reason,
                self.opts.run_id,
                artifact if isinstance(artifact, Artifact) else None,
            )
        if (why := self.executor.unavailable(cell)) is not None:
            return _synthesized(
                cell,
                "unsupported",
                why,
                self.opts.run_id,
                artifact if isinstance(artifact, Artifact) else None,
            )
        if isinstance(artifact, str):
            return _synthesized(cell, "failed", artifact, self.opts.run_id, None)
        path.unlink(missing_ok=True)  # a stale result must never stand for this attempt
        job = CellJob(
            cell=cell,
            timing=self.matrix.timing,
            run_id=self.opts.run_id,
            artifact_dir=artifact.path,
            result_path=path,
            log_path=log_path,
            timeout_s=self.matrix.cell_timeout_s,
            memory_limit=self.matrix.memory_limit,
            cpus=self.cpus,
            env={**self.opts.env, **self.opts.cell_env.get(cell.id, {})},
            # Parity once per cell, in its first round: the answers do not change between runs.
            round={"index": index, "position": position, "parity": index == 1},
        )
        outcome = self.executor.run(job)
        if path.is_file() and not outcome.timed_out:
            try:
                result = load_result(path)
                if result.cell == cell.to_dict():
                    return result
            except ResultError:
                pass
        status = "skipped" if outcome.start_error and cell.device == "cuda" else "failed"
        reason = outcome.describe(job.timeout_s, job.memory_limit)
        return _synthesized(
            cell, status, reason, self.opts.run_id, artifact, _tail(log_path), outcome
        )

    def _rounds(
        self, artifacts: dict[str, Artifact | str], summary: RunSummary
    ) -> dict[str, CellResult]:
        """Every round of the plan, each cell in a fresh process or container, in each round's
        seeded order; the cell's merged result rewritten after each of its rounds."""
        cells = self.matrix.cells
        # The order seed: the matrix's, else the one a resumed run drew, else a fresh one.
        seed = self.plan.seed
        if seed is None:
            seed = self.manifest.rounds.get("order_seed")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        plan = self.plan = replace(self.plan, seed=seed)
        rounds: dict[str, list[CellResult]] = {c.id: [] for c in cells}
        merged: dict[str, CellResult] = {}
        record = self.manifest.rounds = {
            "requested": plan.rounds,
            "target_ci": plan.target_ci,
            "max_rounds": plan.max_rounds,
            "time_budget_s": plan.time_budget_s,
            "order_seed": plan.seed,
            "orders": {},
            "completed": 0,
            "stopped_by": None,
        }
        started = time.monotonic()
        for index in range(1, plan.limit + 1):
            order = plan.order(_active(cells, rounds, index), index)
            record["orders"][str(index)] = [c.id for c, _ in order]
            for i, (cell, position) in enumerate(order, 1):
                tag = f"round {index}/{plan.limit} " if plan.multi else ""
                path, _ = self._round_paths(cell, index)
                result = self._reusable(cell, path, artifacts[cell.model])
                note = " (kept from the earlier attempt)" if result else ""
                if result:
                    summary.reused += 1
                else:
                    self.log(f"[{tag}{i}/{len(order)}] {cell.id} ...")
                    result = self._run_cell(cell, artifacts[cell.model], index, position)
                    write_result(result, path)  # idempotent for a result the cell wrote itself
                rounds[cell.id].append(result)
                merged[cell.id] = merge_cell_rounds(rounds[cell.id])
                if plan.multi:
                    write_result(merged[cell.id], self.cells_dir / f"{cell.id}.json")
                self.manifest.cells[cell.id] = {
                    "status": merged[cell.id].status,
                    "result": f"cells/{cell.id}.json",
                    "log": f"logs/{cell.id}.log",
                    "rounds": len(rounds[cell.id]),
                }
                self.manifest.write(self.opts.run_dir)
                self.log(f"[{tag}{i}/{len(order)}] {cell.id}: {_progress_word(result)}{note}")
            record["completed"] = index
            why = stop_reason(plan, index, list(merged.values()), time.monotonic() - started)
            if why:
                record["stopped_by"] = why
                break
        # Matrix order, whatever order the rounds ran in: reports list cells this way.
        listed = self.manifest.cells
        self.manifest.cells = {c.id: listed[c.id] for c in cells if c.id in listed}
        self.manifest.write(self.opts.run_dir)
        return merged

    def run(self) -> RunSummary:
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = self._open_manifest()
        self.manifest.write(self.opts.run_dir)
        summary = RunSummary(self.opts.run_dir, [], no_gpu_reason=self.executor.gpu_reason)
        try:
            # Said up front, and nothing is built or exported only for cells that cannot run.
            runnable = [
                c for c in self.matrix.cells if c.device != "cuda" or not summary.no_gpu_reason
            ]
            if len(runnable) < len(self.matrix.cells):
                self.log(
                    f"no GPU runtime here: {summary.no_gpu_reason}; the "
                    f"{len(self.matrix.cells) - len(runnable)} GPU cells will be recorded as "
                    "skipped"
                )
            runnable = [c for c in runnable if not self.executor.unavailable(c)]
            frameworks = {(c.framework, c.device, c.version) for c in runnable}
            if self.opts.export and runnable:  # the export stage runs where torch is
                self.manifest.images.update(
                    self.export_executor.prepare(
                        {(*export_framework(c.model), None) for c in runnable}, self.log
                    )
                )
            self.manifest.images.update(self.executor.prepare(frameworks, self.log))
            models = dict.fromkeys(c.model for c in runnable)
            artifacts: dict[str, Artifact | str] = {
                m: self._export(m) if m in models else "not exported: none of its cells can run"
                for m in self.matrix.models
            }
            self.manifest.artifacts = {
                m: (a.key if isinstance(a, Artifact) else {"error": a})
                for m, a in artifacts.items()
            }
            merged = self._rounds(artifacts, summary)
            summary.results = [merged[c.id] for c in self.matrix.cells]
            self.manifest.state = "complete"
        except KeyboardInterrupt:
            self.manifest.state = "interrupted"
            raise
        finally:
            self.manifest.finished_at = now()
            try:  # on a full disk this write fails too: the cell's container goes all the same
                self.manifest.write(self.opts.run_dir)
            finally:
                self.executor.cleanup(self.opts.run_id)
        return summary


def _active(cells: list[Cell], rounds: dict[str, list[CellResult]], index: int) -> list[Cell]:
    """The cells that run in round `index`: every cell in the first; afterwards those whose
    rounds all ended ok (a cell that failed, or cannot run, is not run again)."""
    if index == 1:
        return list(cells)
    return [c for c in cells if rounds[c.id] and all(r.status == "ok" for r in rounds[c.id])]


def _progress_word(result: CellResult) -> str:
    if result.status != "ok":
        return f"{result.status.upper()}: {(result.reason or '').splitlines()[0][:200]}"
    stats = result.timing["stats"]
    if result.parity is None:  # a later round: parity was checked in the first
        return f"ok, median {stats['median_ms']:.3f} ms"
    parity = "parity pass" if result.parity_passed else "PARITY FAIL"
    return f"ok, median {stats['median_ms']:.3f} ms, {parity}"
