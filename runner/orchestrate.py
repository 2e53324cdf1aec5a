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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bench.artifact import Artifact, find_artifact
from bench.cell import Cell
from bench.errors import ArtifactError, UsageError
from bench.measure.fingerprint import fingerprint
from bench.result import CellResult, ResultError, load_result, write_result
from runner.dispatch import Dispatch
from runner.executors.base import CellJob, Executor, ExportJob, Outcome
from runner.images import export_framework
from runner.live import PlainProgress
from runner.manifest import Manifest, now
from runner.matrix import Matrix
from runner.placement import Slot, fits
from runner.progress import Eta
from runner.rounds import merge_cell_rounds, stop_reason

if TYPE_CHECKING:
    from runner.pool_run import PoolPlan

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
        progress: PlainProgress | None = None,
    ) -> None:
        self.matrix, self.executor, self.export_executor = matrix, executor, export_executor
        self.opts, self.log = opts, log
        self.progress = progress or PlainProgress(log)
        self.cells_dir = opts.run_dir / "cells"
        self.logs_dir = opts.run_dir / "logs"
        # A pool's cells take their CPUs from their slots on their hosts, not from this machine.
        self.cpus = () if executor.name == "pool" else run_cpus(matrix.threads)
        self.plan = matrix.round_plan
        self.cells = list(matrix.cells)  # on a pool: each with its host, once placed
        self.pool: PoolPlan | None = None
        self.unplaceable: dict[Cell, str] = {}
        # Workers of a pool's slots share the bookkeeping below.
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._lost: set[str] = set()
        self._tally: dict[str, list[CellResult]] = {}  # each cell's rounds so far (_rounds)

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
        self,
        cell: Cell,
        artifact: Artifact | str,
        index: int = 1,
        position: int | None = None,
        slot: Slot | None = None,
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
            # A pool's slot: its CPU set's first `threads` CPUs, or its GPU (not CPU-pinned).
            cpus=self.cpus if slot is None else slot.cpus[: cell.threads],
            gpus=() if slot is None or slot.gpu is None else (slot.gpu,),
            env={**self.opts.env, **self.opts.cell_env.get(cell.id, {})},
            # Parity once per cell, in its first round: the answers do not change between runs.
            round={"index": index, "position": position, "parity": index == 1},
        )
        self.progress.started(job)
        try:
            outcome = self.executor.run(job)
        finally:
            self.progress.ended(job)
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
        seeded order (on a pool: every slot taking the next cell of its host in that order);
        the cell's merged result rewritten after each of its rounds."""
        # The order seed: the matrix's, else the one a resumed run drew, else a fresh one.
        seed = self.plan.seed
        if seed is None:
            seed = self.manifest.rounds.get("order_seed")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        plan = self.plan = replace(self.plan, seed=seed)
        self._tally: dict[str, list[CellResult]] = {c.id: [] for c in self.cells}
        self._merged: dict[str, CellResult] = {}
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
            order = plan.order(_active(self.cells, self._tally, index), index)
            record["orders"][str(index)] = [c.id for c, _ in order]
            self._counter = [0, len(order)]
            parallel = len(self.pool.executor.slots()) if self.pool is not None else 1
            self._eta = Eta(len(order), parallel)
            if self.pool is None:
                for cell, position in order:
                    self._one(cell, position, index, artifacts, summary, None)
            else:
                self._on_pool(order, index, artifacts, summary)
            record["completed"] = index
            merged = list(self._merged.values())
            why = stop_reason(plan, index, merged, time.monotonic() - started)
            if why:
                record["stopped_by"] = why
                break
        # Matrix order, whatever order the rounds ran in: reports list cells this way.
        listed = self.manifest.cells
        self.manifest.cells = {c.id: listed[c.id] for c in self.cells if c.id in listed}
        self.manifest.write(self.opts.run_dir)
        return self._merged

    def _one(
        self,
        cell: Cell,
        position: int | None,
        index: int,
        artifacts: dict[str, Artifact | str],
        summary: RunSummary,
        slot: Slot | None,
        result: CellResult | None = None,
    ) -> CellResult:
        """One round of one cell (or `result`, made for it by the runner), recorded."""
        with self._lock:
            self._counter[0] += 1
            i, n = self._counter
        tag = f"round {index}/{self.plan.limit} " if self.plan.multi else ""
        path, _ = self._round_paths(cell, index)
        note, ran_s = "", None
        if result is None:
            result = self._reusable(cell, path, artifacts[cell.model])
            if result:
                note = " (kept from the earlier attempt)"
                summary.reused += 1
            else:
                where = f" on {slot.name}" if slot is not None else ""
                self.log(f"[{tag}{i}/{n}] {cell.id}{where} ...")
                t0 = time.monotonic()
                result = self._run_cell(cell, artifacts[cell.model], index, position, slot)
                ran_s = time.monotonic() - t0
        if self._stopping.is_set():
            return result  # interrupted: the cell was killed, not measured; resume runs it
        with self._lock:
            write_result(result, path)  # idempotent for a result the cell wrote itself
            self._tally.setdefault(cell.id, []).append(result)
            merged = self._merged[cell.id] = merge_cell_rounds(self._tally[cell.id])
            if self.plan.multi:
                write_result(merged, self.cells_dir / f"{cell.id}.json")
            self.manifest.cells[cell.id] = {
                "status": merged.status,
                "result": f"cells/{cell.id}.json",
                "log": f"logs/{cell.id}.log",
                "rounds": len(self._tally[cell.id]),
                **({"host": cell.host} if cell.host else {}),
            }
            self.manifest.write(self.opts.run_dir)
            if ran_s is None:
                self._eta.done()
            else:
                self._eta.ran(ran_s)
                note += f" ({ran_s:.0f} s)"
            eta = self._eta.text()
            self.progress.advance(self._eta.finished, self._eta.total, eta)
        self.log(f"[{tag}{i}/{n}] {cell.id}: {_progress_word(result)}{note}; {eta}")
        return result

    def _on_pool(
        self,
        order: list[tuple[Cell, int | None]],
        index: int,
        artifacts: dict[str, Artifact | str],
        summary: RunSummary,
    ) -> None:
        """A round on the pool's slots in parallel; a lost host's queued cells go to the
        others (placed again), or are recorded failed when none can take them."""
        assert self.pool is not None
        pool = self.pool

        def work(item: tuple[Cell, int | None], slot: Slot) -> list[tuple[Cell, int | None]]:
            cell, position = item
            try:
                result = self._one(cell, position, index, artifacts, summary, slot)
            except Exception as exc:  # an engine's unforeseen answer: this cell fails, not all
                why = f"the runner lost the cell: {type(exc).__name__}: {exc}"[:2000]
                failed = _synthesized(cell, "failed", why, self.opts.run_id, None)
                result = self._one(cell, position, index, artifacts, summary, None, failed)
            host = cell.host or ""
            if (
                result.status == "failed"
                and host not in self._lost
                and not pool.executor.alive(host)
            ):
                with self._lock:
                    self._lost.add(host)
                    waiting = [c for c, _ in dispatch.take(lambda it: it[0].host == host)]
                return self._host_lost(host, waiting, index, artifacts, summary)
            return []

        dispatch: Dispatch = Dispatch(
            pool.executor.slots(),
            fits=lambda item, slot: item[0].host == slot.host and fits(item[0], slot),
            work=work,
            stop=self._stopping,
        )
        try:
            left = dispatch.run(list(order))
        except BaseException:
            self._stopping.set()
            self.executor.cleanup(self.opts.run_id)  # every host's running cell, killed now
            dispatch.join(60)
            raise
        for cell, position in left:  # their host was down before the round began
            why = f"not run: host {cell.host} is down ({pool.executor.down.get(cell.host or '')})"
            self._one(cell, position, index, artifacts, summary, None, self._not_run(cell, why))

    def _host_lost(
        self,
        host: str,
        waiting: list[Cell],
        index: int,
        artifacts: dict[str, Artifact | str],
        summary: RunSummary,
    ) -> list[tuple[Cell, int | None]]:
        """Place a lost host's cells that have not run yet on the others; record the rest."""
        assert self.pool is not None
        fresh = [c for c in waiting if not self._tally.get(c.id)]
        moved, stay = self.pool.requeue(host, fresh)
        with self._lock:
            self._replace_cells(moved)
            self.manifest.write(self.opts.run_dir)
        why = f"not run: host {host} was lost ({self.pool.executor.down.get(host)})"
        for cell in [*stay, *(c for c in waiting if c not in fresh)]:
            self._one(cell, None, index, artifacts, summary, None, self._not_run(cell, why))
        return [(new, None) for _, new in moved]

    def _off_down_hosts(self, frameworks: set[tuple[str, str, str | None]]) -> None:
        """Cells placed on a host that went down while images were prepared: placed again on
        the others (whose images are then prepared too); those that cannot move fail later
        with the host's reason."""
        assert self.pool is not None
        while True:
            down = {c.host for c in self.cells} & set(self.pool.executor.down) - self._lost
            if not down:
                break
            for host in sorted(down, key=str):
                self._lost.add(host)
                moved, _ = self.pool.requeue(host, [c for c in self.cells if c.host == host])
                self._replace_cells(moved)
            self.pool.executor.needs = _needs(self.cells)
            self.manifest.images.update(self.pool.executor.prepare(frameworks, self.log))
        self.pool.refresh()

    def _replace_cells(self, moved: list[tuple[Cell, Cell]]) -> None:
        """Cells placed again: each new one takes the old one's place in the listing and its
        (empty) tally of rounds."""
        for old, new in moved:
            self.cells[self.cells.index(old)] = new
            self._tally.pop(old.id, None)
            self._tally[new.id] = []

    def _not_run(self, cell: Cell, why: str) -> CellResult:
        return _synthesized(cell, "failed", f"{why}; --resume runs it", self.opts.run_id, None)

    def run(self) -> RunSummary:
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = self._open_manifest()
        self.manifest.write(self.opts.run_dir)
        summary = RunSummary(self.opts.run_dir, [], no_gpu_reason=self.executor.gpu_reason)
        try:
            if self.executor.name == "pool":  # the Docker SDK and placement, only when asked
                from runner.pool_run import PoolPlan

                self.pool = PoolPlan(self.executor, self.matrix.hosts, self.manifest.pool, self.log)
                placement = self.pool.place(self.matrix.cells)
                self.cells, self.unplaceable = placement.cells, placement.unplaceable
                self.executor.needs = _needs(self.cells)
            # Said up front, and nothing is built or exported only for cells that cannot run.
            runnable = [c for c in self.cells if c.device != "cuda" or not summary.no_gpu_reason]
            if len(runnable) < len(self.cells):
                self.log(
                    f"no GPU runtime here: {summary.no_gpu_reason}; the "
                    f"{len(self.cells) - len(runnable)} GPU cells will be recorded as "
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
            if self.pool is not None:
                self._off_down_hosts(frameworks)
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
            for cell, why in self.unplaceable.items():
                merged[cell.id] = _synthesized(cell, "skipped", why, self.opts.run_id, None)
                self._one(cell, None, 1, artifacts, summary, None, merged[cell.id])
            summary.results = [merged[c.id] for c in [*self.cells, *self.unplaceable]]
            if self.pool is not None:
                self.pool.refresh()
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


def _needs(cells: list[Cell]) -> dict[str, set[tuple[str, str, str | None]]]:
    """What each pool host must be able to run: {host: {(framework, device, version)}}."""
    needs: dict[str, set[tuple[str, str, str | None]]] = {}
    for c in cells:
        needs.setdefault(c.host or "", set()).add((c.framework, c.device, c.version))
    return needs


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
