"""The executor interface: run the export stage, run one cell, clean up."""

from __future__ import annotations

import json
import re
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cell import Cell
from bench.export import ExportSpec
from bench.measure.timing import TimingConfig


@dataclass(frozen=True)
class ExportJob:
    """Export one model's artifact into `artifacts_dir` (host path); the export writes which
    artifact it made or reused to `result_path` (bench export --result)."""

    spec: ExportSpec
    artifacts_dir: Path
    log_path: Path
    timeout_s: float

    @property
    def result_path(self) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", self.spec.model)
        return self.artifacts_dir / f".export-{name}.json"


def export_arguments(
    spec: ExportSpec,
    artifacts: str,
    result: str,
    model: str | None = None,
    images: str | None = None,
) -> list[str]:
    """`python -m bench` arguments of an export, with the paths the executor sees: the one
    command builder of every executor (the model and images paths differ in a container)."""
    args = [
        "export",
        "--model",
        model or spec.model,
        "--weights",
        spec.weights,
        "--seed",
        str(spec.seed),
        "--opset",
        str(spec.opset),
        "--exporter",
        spec.exporter,
        "--artifacts",
        artifacts,
        "--result",
        result,
    ]
    if images or spec.images:
        args += ["--images", images or spec.images]
    return args


@dataclass
class PhaseFile:
    """The file a running cell writes its phase to, once its executor has named one."""

    path: Path | None = None


@dataclass(frozen=True)
class CellJob:
    """Run one cell; every path is a host path."""

    cell: Cell
    timing: TimingConfig
    run_id: str
    artifact_dir: Path
    result_path: Path
    log_path: Path
    timeout_s: float
    memory_limit: str
    cpus: tuple[int, ...]
    env: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()  # a pool's GPU slot: the engine's GPU(s) it may use; (): all
    # Which round of the cell this is (bench.run.RoundInfo's fields: index, position, parity).
    round: dict[str, object] = field(default_factory=dict)
    # Where the cell reports its phase (bench/phase.py), set by an executor that can offer one
    # while the cell runs: the runner's live progress line reads it.
    phase: PhaseFile = field(default_factory=PhaseFile)


@dataclass
class Outcome:
    """How the cell's process ended (its result, if any, is in `result_path`)."""

    exit_code: int | None = None
    timed_out: bool = False
    oom: bool = False
    start_error: str | None = None  # it could not start at all
    engine_error: str | None = None  # the Docker engine went away while the cell ran
    image: str | None = None
    image_id: str | None = None

    def describe(self, timeout_s: float, memory_limit: str) -> str:
        """Why a cell without a result ended, in words."""
        if self.start_error:
            return f"could not start: {self.start_error}"
        if self.engine_error:
            code = "" if self.exit_code is None else f"; its container ended with {self.exit_code}"
            return f"{self.engine_error}{code}"
        if self.timed_out:
            return f"timed out after {timeout_s:g} s and was killed"
        if self.oom:
            return f"ran out of memory (limit {memory_limit}) and was killed"
        code = self.exit_code
        if code is not None and code < 0:
            return f"crashed with {signal.Signals(-code).name}"
        if code is not None and code > 128 and code - 128 in signal.valid_signals():
            return f"crashed with {signal.Signals(code - 128).name} (exit code {code})"
        return f"exited with code {code} without writing a result"


def cell_document(job: CellJob, artifact: str, out: str) -> str:
    """The cell file handed to `python -m bench run --cell`, with executor-side paths."""
    return json.dumps(
        {
            "cell": job.cell.to_dict(),
            "timing": job.timing.to_dict(),
            "artifact": artifact,
            "out": out,
            "run_id": job.run_id,
            "round": job.round,
        },
        indent=2,
    )


def parse_memory(limit: str) -> int:
    """'8g' / '512m' / '1024k' / '123' -> bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = limit.strip().lower().removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class Executor(ABC):
    """Where the export stage and the cells run."""

    name: str
    gpu_reason: str | None = None  # why GPU cells cannot run here (None: they can)

    @abstractmethod
    def prepare(
        self, frameworks: set[tuple[str, str, str | None]], log: Callable[[str], None]
    ) -> dict[str, dict]:
        """Make (framework, device, version) runnable (version None: the default image's);
        returns what runs them: {name: {tag, id}}."""

    def unavailable(self, cell: Cell) -> str | None:
        """Why this executor cannot run `cell` at all (its cell is `unsupported`), else None."""
        return None

    @abstractmethod
    def export(self, job: ExportJob) -> int:
        """Run the export stage; returns its exit code (its log is in job.log_path)."""

    @abstractmethod
    def run(self, job: CellJob) -> Outcome:
        """Run one cell to its end, whatever that is."""

    def image_id(self, cell: Cell) -> str | None:
        """The id of the image that runs `cell` (None: no image, the current environment)."""
        return None

    def cleanup(self, run_id: str | None = None) -> int:
        """Remove what a run left behind (containers of an interrupted run); returns how many."""
        return 0
