"""Reading run folders (results/<run-id>/: manifest.json, cells/*.json) for reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UsageError
from bench.result import CellResult, ResultError, load_result


@dataclass
class Run:
    """A run folder and its results."""

    path: Path
    manifest: dict
    results: list[CellResult]

    @property
    def run_id(self) -> str:
        return self.manifest.get("run_id", self.path.name)

    @property
    def host(self) -> str:
        host = self.manifest.get("host", {})
        return host.get("hostname") or host.get("cpu", {}).get("model", "?")


def load_run(path: str | Path) -> Run:
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise UsageError(f"{path} is not a run folder (no manifest.json); runs are in results/")
    manifest = json.loads(manifest_path.read_text())
    # Matrix order, as the manifest lists the cells; then any cell file it does not list.
    listed = [path / cell["result"] for cell in manifest.get("cells", {}).values()]
    files = [f for f in listed if f.is_file()]
    files += [f for f in sorted((path / "cells").glob("*.json")) if f not in files]
    results = []
    for file in files:
        try:
            results.append(load_result(file))
        except ResultError as exc:
            raise UsageError(f"{file}: {exc}") from exc
    if not results:
        raise UsageError(f"{path} holds no cell results")
    return Run(path, manifest, results)


def latest_run(results_root: Path = Path("results")) -> Path:
    runs = sorted(results_root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise UsageError(f"no runs in {results_root}; run `make bench-cpu` first")
    return runs[-1].parent
