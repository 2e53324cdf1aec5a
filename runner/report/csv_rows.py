"""results.csv: one row per cell of every run, every figure a spreadsheet wants, from the same
estimates as the tables."""

from __future__ import annotations

import csv
import io

from bench.measure.cpu_id import describe as describe_cpu
from bench.result import CellResult
from runner.report import costs, estimates, tables
from runner.report.runs import Run

CSV_FIELDS = (
    "run_id",
    "host",
    "model",
    "framework",
    "version",
    "options",
    "device",
    "precision",
    "batch_size",
    "threads",
    "scenario",
    "scenario_samples_per_s",
    "scenario_best_batch_or_streams",
    "server_p99_bound_ms",
    "server_max_valid_rate_per_s",
    "status",
    "reason",
    "median_ms",
    "ci95_low_ms",
    "ci95_high_ms",
    "mean_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "min_ms",
    "max_ms",
    "std_ms",
    "iqr_ms",
    "samples",
    "throughput_sps",
    "speedup_vs_torch",
    "speedup_ci95_low",
    "speedup_ci95_high",
    "speedup_verdict",
    "latency_ms",
    "latency_ci95_low_ms",
    "latency_ci95_high_ms",
    "latency_method",
    "rounds",
    "noisy_rounds",
    "achieved_gflops_per_s",
    "load_ms",
    "cold_ms",
    "compile_s",
    "tuning_s",
    "peak_rss_load_mib",
    "peak_rss_steady_mib",
    "container_peak_mib",
    "on_disk_bytes",
    "compute_median_ms",
    "compute_ci95_low_ms",
    "compute_ci95_high_ms",
    "peak_gpu_memory_mib",
    "clocks_dropped",
    "precision_run",
    "parity_verdict",
    "worst_rel_l2",
    "worst_max_abs_err",
    "top1_agreement",
    "top5_overlap",
    "framework_version",
    "image",
    "image_digest",
    "timing_scope",
    "cpu",
)


def _costs(r: CellResult) -> dict[str, object]:
    """The cost figures beside load_ms and cold_ms (which come from the timing section)."""
    return {k: v for k, v in costs.figures(r).items() if k not in ("load_ms", "cold_ms")}


def _scenario(r: CellResult) -> dict[str, object]:
    """A load scenario's headline figures (runner/report/scenarios.py has the rest)."""
    s = r.scenario or {}
    return {
        "scenario": r.cell.get("scenario", "single_stream"),
        "scenario_samples_per_s": s.get("samples_per_s"),
        "scenario_best_batch_or_streams": s.get("best_batch_size", s.get("best_streams")),
        "server_p99_bound_ms": s.get("p99_bound_ms"),
        "server_max_valid_rate_per_s": s.get("max_valid_rate_per_s"),
    }


def csv_text(runs: list[Run]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS)
    writer.writeheader()
    all_results = [r for run in runs for r in run.results]
    band = estimates.band_of([run.manifest for run in runs])
    for run in runs:
        for r in run.results:
            c, s = r.cell, (r.timing or {}).get("stats", {})
            p, rt, t = r.parity or {}, r.runtime or {}, r.timing or {}
            cs = (r.compute_timing or {}).get("stats", {})
            up = tables.speedup(r, all_results, band) if r.status == "ok" else None
            est = t.get("estimate") or {}
            writer.writerow(
                {
                    "run_id": run.run_id,
                    "host": c.get("host") or run.host,
                    "model": c["model"],
                    "framework": c["framework"],
                    "version": c.get("version") or "",
                    "options": ";".join(f"{k}={v}" for k, v in sorted(c["options"].items())),
                    "device": c["device"],
                    "precision": c["precision"],
                    "batch_size": c["batch_size"],
                    "threads": c["threads"],
                    **_scenario(r),
                    "status": r.status,
                    "reason": r.reason or "",
                    "median_ms": s.get("median_ms"),
                    "ci95_low_ms": s.get("median_ci95_low_ms"),
                    "ci95_high_ms": s.get("median_ci95_high_ms"),
                    "mean_ms": s.get("mean_ms"),
                    "p90_ms": s.get("p90_ms"),
                    "p95_ms": s.get("p95_ms"),
                    "p99_ms": s.get("p99_ms"),
                    "min_ms": s.get("min_ms"),
                    "max_ms": s.get("max_ms"),
                    "std_ms": s.get("std_ms"),
                    "iqr_ms": s.get("iqr_ms"),
                    "samples": s.get("count"),
                    "throughput_sps": t.get("throughput_sps"),
                    "speedup_vs_torch": up and up.value,
                    "speedup_ci95_low": up and up.low,
                    "speedup_ci95_high": up and up.high,
                    "speedup_verdict": up and up.verdict.word,
                    "latency_ms": est.get("value"),
                    "latency_ci95_low_ms": est.get("low"),
                    "latency_ci95_high_ms": est.get("high"),
                    "latency_method": est.get("method"),
                    "rounds": len(t.get("rounds", [])) or None,
                    "noisy_rounds": estimates.noisy_rounds(r) if r.timing else None,
                    "achieved_gflops_per_s": t.get("achieved_gflops_per_s"),
                    "load_ms": t.get("load_ms"),
                    "cold_ms": t.get("cold_ms"),
                    **_costs(r),
                    "compute_median_ms": cs.get("median_ms"),
                    "compute_ci95_low_ms": cs.get("median_ci95_low_ms"),
                    "compute_ci95_high_ms": cs.get("median_ci95_high_ms"),
                    "peak_gpu_memory_mib": (r.gpu or {}).get("peak_memory_mib"),
                    "clocks_dropped": (r.gpu or {}).get("clocks_dropped"),
                    "precision_run": rt.get("precision_run"),
                    "parity_verdict": p.get("verdict"),
                    "worst_rel_l2": p.get("worst_rel_l2"),
                    "worst_max_abs_err": p.get("worst_max_abs_err"),
                    "top1_agreement": p.get("top1_agreement"),
                    "top5_overlap": p.get("top5_overlap"),
                    "framework_version": rt.get("framework_version"),
                    "image": r.environment.get("container", {}).get("image"),
                    "image_digest": r.environment.get("container", {}).get("image_digest"),
                    "timing_scope": t.get("scope"),
                    "cpu": describe_cpu(r.environment.get("cpu", {})),
                }
            )
    return buffer.getvalue()
