"""What a cell costs before and beside its timed calls: load, the cold call, compile, build
and tuning time, and (where the result has them) memory and size on disk. They are in every
result; this is where the report's tables and report.json read them, one way."""

from __future__ import annotations

from typing import Any

from bench.result import CellResult
from runner.report import tables

COST_HEADERS = (
    "framework",
    "precision",
    "batch",
    "load ms",
    "cold ms",
    "compile / build s",
    "tuning s",
    "peak RSS MiB (load / steady)",
    "container peak MiB",
    "on disk MiB",
)


def figures(r: CellResult) -> dict[str, Any]:
    """The cell's cost figures (None where the result has none)."""
    timing, runtime = r.timing or {}, r.runtime or {}
    compile_s = runtime.get("compile_s")
    if compile_s is None:
        compile_s = runtime.get("build_s")  # TensorRT's engine build
    memory = r.memory or {}
    return {
        "load_ms": timing.get("load_ms"),
        "cold_ms": timing.get("cold_ms"),
        "compile_s": compile_s,
        "tuning_s": runtime.get("tuning_s"),
        "peak_rss_load_mib": (memory.get("process") or {}).get("peak_rss_load_mib"),
        "peak_rss_steady_mib": (memory.get("process") or {}).get("peak_rss_steady_mib"),
        "container_peak_mib": (memory.get("container") or {}).get("peak_mib"),
        "on_disk_bytes": (memory.get("size") or {}).get("total_bytes"),
    }


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def rows(group: list[CellResult]) -> list[tuple[str, ...]]:
    """One row per cell that ran; a dash where a figure does not apply (no compile step)."""
    out = []
    for r in group:
        if r.status != "ok":
            continue
        f = figures(r)
        rss = "-"
        if f["peak_rss_load_mib"] is not None or f["peak_rss_steady_mib"] is not None:
            rss = f"{_num(f['peak_rss_load_mib'], 0)} / {_num(f['peak_rss_steady_mib'], 0)}"
        disk = f["on_disk_bytes"]
        out.append(
            (
                tables.label(r.cell),
                r.cell["precision"],
                str(r.cell["batch_size"]),
                _num(f["load_ms"]),
                _num(f["cold_ms"]),
                _num(f["compile_s"], 2),
                _num(f["tuning_s"], 0),
                rss,
                _num(f["container_peak_mib"], 0),
                "-" if disk is None else f"{disk / 2**20:.1f}",
            )
        )
    return out
