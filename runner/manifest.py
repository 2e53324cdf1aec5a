"""The run manifest: what a run was (matrix, host, images, artifacts), when, and how it went.

`results/<run-id>/manifest.json` is rewritten atomically after every cell, so an interrupted
run leaves a manifest that says so, and a resumed run continues it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.fsutil import atomic_write_text

MANIFEST_VERSION = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest:
    run_id: str
    matrix: dict
    executor: str
    host: dict
    images: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    cells: dict = field(default_factory=dict)  # cell id -> {status, result, log}
    started_at: str = field(default_factory=now)
    finished_at: str | None = None
    state: str = "running"  # running, complete, interrupted
    resumed_at: list[str] = field(default_factory=list)
    manifest_version: int = MANIFEST_VERSION
    executor_note: str | None = None  # e.g. why `auto` ran local, and what that means
    # The round plan and what happened: orders per round, rounds completed, why it stopped.
    rounds: dict = field(default_factory=dict)
    # A run on a pool (--hosts): each host's engine and state, where each cell was placed
    # ({cell id without host: host}), and the cells placed again when their host was lost.
    pool: dict = field(default_factory=dict)

    def write(self, run_dir: Path) -> None:
        atomic_write_text(run_dir / "manifest.json", json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, run_dir: Path) -> Manifest | None:
        path = run_dir / "manifest.json"
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))
