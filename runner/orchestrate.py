"""Running a matrix: images, one export per model, then every cell, isolated, in order.

Nothing a cell does can stop the matrix: a cell that crashes, hangs, runs out of memory or
cannot start gets a result written by the runner (status `failed` or `skipped`, the reason
and its log tail). Results and the manifest are written atomically; Ctrl-C kills the running
cell, marks the manifest `interrupted`, and `--resume` continues where it stopped, keeping
every result that is still valid for the same image, artifact and cell.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.artifact import Artifact, find_artifact
from bench.cell import Cell
from bench.errors import ArtifactError, UsageError
from bench.measure.fingerprint import fingerprint
from bench.result import CellResult, ResultError, load_result, write_result
from runner.executors.base import CellJob, Executor, ExportJob, Outcome
from runner.manifest import Manifest, now
from runner.matrix import Matrix

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
            code = self.export_executor.export(job)
            found = re.findall(r"^(?:exported|reused) (\S+)$", _tail(log_path), re.M)
            if code != 0 or not found:
                return f"export of {model} failed (exit code {code}):\n{_tail(log_path)[-1500:]}"
            return Artifact.load(self.opts.artifacts_dir / Path(found[-1]).name)
        except ArtifactError as exc:
            return str(exc)

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

    def _run_cell(self, cell: Cell, artifact: Artifact | str) -> CellResult:
        path = self.cells_dir / f"{cell.id}.json"
        log_path = self.logs_dir / f"{cell.id}.log"
        if cell.device == "cuda" and self.executor.gpu_reason:
            return _synthesized(
                cell,
                "skipped",
                self.executor.gpu_reason,
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
            frameworks = {(c.framework, c.device) for c in runnable}
            if self.opts.export and runnable:  # the export stage runs where torch is
                self.manifest.images.update(
                    self.export_executor.prepare({("torch", "cpu")}, self.log)
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
            total = len(self.matrix.cells)
            for i, cell in enumerate(self.matrix.cells, 1):
                path = self.cells_dir / f"{cell.id}.json"
                result = self._reusable(cell, path, artifacts[cell.model])
                note = " (kept from the earlier attempt)" if result else ""
                if result:
                    summary.reused += 1
                else:
                    self.log(f"[{i}/{total}] {cell.id} ...")
                    result = self._run_cell(cell, artifacts[cell.model])
                    write_result(result, path)  # idempotent for a result the cell wrote itself
                summary.results.append(result)
                self.manifest.cells[cell.id] = {
                    "status": result.status,
                    "result": f"cells/{cell.id}.json",
                    "log": f"logs/{cell.id}.log",
                }
                self.manifest.write(self.opts.run_dir)
                self.log(f"[{i}/{total}] {cell.id}: {_progress_word(result)}{note}")
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


def _progress_word(result: CellResult) -> str:
    if result.status != "ok":
        return f"{result.status.upper()}: {(result.reason or '').splitlines()[0][:200]}"
    stats = result.timing["stats"]
    parity = "parity pass" if result.parity_passed else "PARITY FAIL"
    return f"ok, median {stats['median_ms']:.3f} ms, {parity}"
