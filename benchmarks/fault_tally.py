"""The fault benchmark's bookkeeping: what one fault's repetitions left, read from the run
folders and the runner's own progress lines, and the table of it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.result import ResultError, load_result, validate


@dataclass
class Tally:
    """One fault over its repetitions."""

    fault: str
    repeats: int = 0
    cells_run: int = 0
    results_lost: int = 0
    results_corrupt: int = 0
    stray_temp_files: int = 0
    containers_after_fault: int = 0
    containers_left: int = 0
    exit_codes_as_documented: int = 0
    resumed_complete: int = 0
    notes: list[str] = field(default_factory=list)


def inspect_run(run_dir: Path, reported: list[str], cells: list[str]) -> tuple[int, int, int]:
    """(lost, corrupt, stray temp files): `reported` cells must have a readable result;
    every file in cells/ must be schema-valid JSON; nothing half-written may remain."""
    lost = corrupt = 0
    for cell in reported:
        try:
            load_result(run_dir / "cells" / f"{cell}.json")
        except (ResultError, OSError):
            lost += 1
    for file in sorted((run_dir / "cells").glob("*.json")):
        try:
            validate(json.loads(file.read_text()))
            if file.stem not in cells:
                corrupt += 1
        except Exception:
            corrupt += 1
    try:
        json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        corrupt += 1
    stray = sum(1 for p in run_dir.rglob("*.tmp") if p.is_file())
    return lost, corrupt, stray


def finished_cells(stderr: str) -> list[str]:
    """Cells the runner reported done: `[i/n] <cell>: <status ...>`."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("[") and "] " in line and ": " in line.split("] ", 1)[1]:
            out.append(line.split("] ", 1)[1].split(":", 1)[0])
    return out


def started_cells(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if line.startswith("[") and line.endswith(" ..."))


def table(tallies: list[Tally]) -> str:
    head = (
        "fault",
        "repeats",
        "cells run",
        "lost",
        "corrupt",
        "stray tmp",
        "containers after fault",
        "containers left",
        "exit codes ok",
        "resumed complete",
    )
    rows = [
        (
            t.fault,
            t.repeats,
            t.cells_run,
            t.results_lost,
            t.results_corrupt,
            t.stray_temp_files,
            t.containers_after_fault,
            t.containers_left,
            f"{t.exit_codes_as_documented}/{t.repeats}",
            f"{t.resumed_complete}/{t.repeats}",
        )
        for t in tallies
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
