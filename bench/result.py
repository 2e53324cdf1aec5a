"""The one result type, end to end: a cell's outcome as one versioned JSON document.

`schema_version` follows asv's `api_version`: files newer than this code are refused, older
ones are upgraded step by step (`_UPGRADES[n]` turns version n into n+1), and a fixture of
every version is loaded in the tests. `bench/schema/result.schema.json` describes the current
version and is validated in the tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench import __version__
from bench.fsutil import atomic_write_text
from bench.measure.parity import finite_or_none
from bench.measure.sections import ONE_SLOT_LATENCY

SCHEMA_VERSION = 7
SCHEMA_PATH = Path(__file__).parent / "schema" / "result.schema.json"
STATUSES = ("ok", "failed", "skipped", "unsupported")


def _v1_to_v2(doc: dict) -> dict:
    """Version 2 added the GPU sections; a version 1 result (CPU only) has neither."""
    return {**doc, "compute_timing": None, "gpu": None, "schema_version": 2}


def _one_round(section: dict | None) -> dict | None:
    """A version-2 timing section as the one round it was (one process, one time slot)."""
    if section is None:
        return None
    stats = section["stats"]
    record = {
        "round": 1,
        "position": None,
        "load_ms": section.get("load_ms"),
        "cold_ms": section.get("cold_ms"),
        "warmup_iters": section["warmup_iters"],
        "warmup_s": section["warmup_s"],
        "measure_s": section["measure_s"],
        "samples": [0, len(section["samples_ms"])],
        "stats": stats,
        "noise": None,
    }
    estimate = {
        "value": stats["median_ms"],
        "low": stats["median_ci95_low_ms"],
        "high": stats["median_ci95_high_ms"],
        "rounds": 1,
        "method": ONE_SLOT_LATENCY,
    }
    return {**section, "rounds": [record], "estimate": estimate}


def _v2_to_v3(doc: dict) -> dict:
    """Version 3 measures in rounds: a version 2 result is a cell of one round."""
    return {
        **doc,
        "timing": _one_round(doc.get("timing")),
        "compute_timing": _one_round(doc.get("compute_timing")),
        "schema_version": 3,
    }


def _v3_to_v4(doc: dict) -> dict:
    """Version 4 lets a cell ask for a framework version (`cell.version`); a version 3 cell
    ran whatever its image pinned, which is what a cell without the key means."""
    return {**doc, "schema_version": 4}


def _v4_to_v5(doc: dict) -> dict:
    """Version 5 names the pool host a cell ran on (`cell.host`); a version 4 cell ran on the
    run's one engine or process, which is what a cell without the key means."""
    return {**doc, "schema_version": 5}


def _v5_to_v6(doc: dict) -> dict:
    """Version 6 added `memory` (the process's and container's peaks, the model's size on
    disk); a version 5 result measured none of it."""
    return {**doc, "memory": None, "schema_version": 6}


def _v6_to_v7(doc: dict) -> dict:
    """Version 7 added load scenarios (`cell.scenario`, the `scenario` section); a version 6
    cell measured single-stream latency only, which is what a cell without them means."""
    return {**doc, "scenario": None, "schema_version": 7}


# version n -> function upgrading a document of version n to n+1.
_UPGRADES: dict[int, Callable[[dict], dict]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
}


class ResultError(ValueError):
    """A result file that cannot be read by this code."""


@dataclass
class CellResult:
    """Everything known about one cell. Sections are None when the cell did not get there."""

    cell: dict
    status: str
    environment: dict
    reason: str | None = None
    log_tail: str | None = None
    artifact: dict | None = None
    runtime: dict | None = None
    timing: dict | None = None
    compute_timing: dict | None = None  # device_compute_only scope, GPU cells
    gpu: dict | None = None  # clocks and peak memory, GPU cells
    memory: dict | None = None  # peak resident memory, container peak, size on disk
    scenario: dict | None = None  # offline, multi-stream or server: the load generator's
    parity: dict | None = None
    run_id: str | None = None
    bench_version: str = __version__
    created_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")

    @property
    def parity_passed(self) -> bool | None:
        return None if self.parity is None else self.parity["verdict"] == "pass"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        # JSON has no NaN: a non-finite number anywhere (a NaN output's metrics) is written as
        # null rather than losing the measured cell.
        return json.dumps(finite_or_none(self.to_dict()), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, doc: dict) -> CellResult:
        return cls(**upgrade(doc))


def upgrade(doc: dict) -> dict:
    """Bring a result document of any older version to the current one; refuse newer ones."""
    version = doc.get("schema_version")
    if not isinstance(version, int):
        raise ResultError("not a deploybench result: no integer schema_version")
    if version > SCHEMA_VERSION:
        raise ResultError(
            f"result has schema_version {version}, newer than this code's {SCHEMA_VERSION}; "
            "update deploybench to read it"
        )
    while version < SCHEMA_VERSION:
        doc = _UPGRADES[version](doc)
        version = doc["schema_version"]
    return doc


def write_result(result: CellResult, path: str | Path) -> Path:
    """Write atomically: readers see no file or the whole file, never part of it."""
    return atomic_write_text(path, result.to_json())


def load_result(path: str | Path) -> CellResult:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultError(f"{path}: {exc}") from exc
    return CellResult.from_dict(doc)


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate(doc: dict) -> None:
    """Validate a result document against the JSON Schema (needs the jsonschema package)."""
    import jsonschema

    jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)
