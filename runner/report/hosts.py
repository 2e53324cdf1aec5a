"""Tables about machines: the same cell on each host (a pool run's hosts, or the hosts of runs
merged into one report), and one line per pool host with what its cells saw there."""

from __future__ import annotations

from bench.measure.cpu_id import describe as describe_cpu
from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND, compare_ratio
from bench.result import CellResult
from runner.report import estimates, tables
from runner.report.runs import Run
from runner.report.section import Section


def hosts_section(runs: list[Run], band: float = DEFAULT_EQUIVALENCE_BAND) -> Section | None:
    """The same cell on each host: latency with its interval per host (a pool run's hosts, or
    the hosts of runs merged into one report), and each other host's time over the first's
    with its interval and verdict (paired by round within a run: a pool's hosts run round r
    at the same time; unpaired across runs)."""
    columns: list[str] = []
    keys: dict[tuple, dict[str, CellResult]] = {}
    for run in runs:
        for r in run.results:
            c = r.cell
            column = c.get("host") or f"{run.host} ({run.run_id})"
            if column not in columns:
                columns.append(column)
            key = (c["model"], c["device"], tables.label(c), c["precision"], str(c["batch_size"]))
            keys.setdefault(key, {})[column] = r
    if len(columns) < 2:
        return None
    first, others = columns[0], columns[1:]
    rows = []
    for key, by_host in keys.items():
        values = [_latency(by_host.get(column)) for column in columns]
        ratios = [_ratio(by_host.get(first), by_host.get(other), band) for other in others]
        rows.append((*key, *values, *ratios))
    headers = (
        "model",
        "device",
        "framework",
        "precision",
        "batch",
        *(f"{column} ms [95% CI]" for column in columns),
        *(f"{other} / {first} time [95% CI]" for other in others),
    )
    return Section("The same cell on each host", headers, rows)


def _ratio(a: CellResult | None, b: CellResult | None, band: float) -> str:
    """b's time over a's with its interval and verdict (slower, faster, tie)."""
    if a is None or b is None or a.status != "ok" or b.status != "ok":
        return "-"
    ratio = estimates.time_ratio(a, b)
    verdict = compare_ratio(ratio, band).word
    star = "*" if ratio.rounds < 2 else ""
    return f"{ratio.value:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]{star} {verdict}"


def _latency(result: CellResult | None) -> str:
    if result is None:
        return "-"
    if result.status != "ok":
        return result.status
    e = result.timing["estimate"]
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def pool_hosts(runs: list[Run]) -> list[dict[str, str]]:
    """One line per pool host (runs with --hosts): its engine, the CPU its cells saw (their
    own fingerprint, taken inside the container on that host), its images, its state."""
    out = []
    for run in runs:
        for name, entry in (run.manifest.get("pool") or {}).get("hosts", {}).items():
            seen = [r for r in run.results if r.cell.get("host") == name and r.environment]
            cpu = seen[0].environment.get("cpu", {}) if seen else {}
            engine = entry.get("engine") or {}
            images = ", ".join(
                f"{key} {info.get('id', '')[:19]}" for key, info in entry.get("images", {}).items()
            )
            out.append(
                {
                    "run": run.run_id,
                    "host": name,
                    "address": entry.get("address", "?"),
                    "labels": ", ".join(f"{k}={v}" for k, v in entry.get("labels", {}).items()),
                    "cpu": describe_cpu(cpu) if cpu else "? (no cell ran there)",
                    "engine": f"docker {engine.get('version', '?')}",
                    "images": images or "none",
                    "state": entry.get("state", "?")
                    + (f" ({entry['why']})" if entry.get("why") else ""),
                    "cells": str(len(seen)),
                }
            )
    return out
