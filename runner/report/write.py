"""Writing a report into a run folder: report.md, report.html, plots/, results.csv.

Several runs (e.g. from several hosts) make one report: their results are tabled together
and an extra table puts each host's median side by side.
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

from jinja2 import Environment, PackageLoader
from tabulate import tabulate

from bench.backends.base import SCOPE_DESCRIPTIONS
from bench.fsutil import atomic_write_text
from bench.measure.cpu_id import describe as describe_cpu
from bench.measure.cpu_id import identity_key
from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND
from bench.models import OVERHEAD_PROBE
from bench.result import CellResult
from runner.report import boundary, estimates, plots, tables
from runner.report.hosts import hosts_section, pool_hosts
from runner.report.runs import Run
from runner.report.section import Section

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


def _all_results(runs: list[Run]) -> list[CellResult]:
    return [r for run in runs for r in run.results]


def sections(
    results: list[CellResult], band: float = DEFAULT_EQUIVALENCE_BAND, runs: int = 1
) -> list[Section]:
    out = []
    for (device, model), group in tables.groups(results).items():
        rows = tables.main_rows(group, results, band, with_run=runs > 1)
        if rows:
            headers = tables.headers(device)
            headers = ("run", *headers) if runs > 1 else headers
            out.append(Section(f"{model} on {device}", headers, rows))
        if runs == 1 and (best := tables.best_rows(group, band)):
            title = f"{model} on {device}: best configuration per framework"
            out.append(Section(title, tables.BEST_HEADERS, best))
        if detections := tables.detection_rows(group):
            title = f"{model} on {device}: detection parity"
            out.append(Section(title, tables.DETECTION_HEADERS, detections))
    if rows := boundary.boundary_rows(results):
        out.append(Section("Python API vs C++ vs ctypes", boundary.BOUNDARY_HEADERS, rows))
    if rows := boundary.overhead_rows(results):
        title = f"Per-call overhead ({OVERHEAD_PROBE}, batch 1)"
        out.append(Section(title, boundary.OVERHEAD_HEADERS, rows))
    return out


def environment(runs: list[Run]) -> list[dict[str, str]]:
    """One line per run: host, CPU, GPUs, images with their ids and framework versions."""
    out = []
    for run in runs:
        host = run.manifest.get("host", {})
        cpu = host.get("cpu", {})
        images = ", ".join(
            f"{name} {info.get('id') or ''}".strip()
            for name, info in sorted(run.manifest.get("images", {}).items())
        )
        versions = sorted(
            {
                f"{r.cell['framework']} {r.runtime['framework_version']}"
                for r in run.results
                if r.runtime
            }
        )
        gpus = (
            ", ".join(
                g.get("name", "?") + " (driver " + g.get("driver_version", "?") + ")"
                for g in host.get("gpus", [])
            )
            or "none"
        )
        out.append(
            {
                "run": run.run_id,
                "host": run.host,
                "cpu": f"{describe_cpu(cpu)} ({cpu.get('affinity_cores')} usable cores)",
                "memory": f"{host.get('memory_total_gib')} GiB",
                "os": str(host.get("os")),
                "gpus": gpus,
                "executor": _executor(run.manifest),
                "images": images or "none (local executor)",
                "frameworks": ", ".join(versions),
                "started": str(run.manifest.get("started_at")),
                "finished": str(run.manifest.get("finished_at")),
                "state": str(run.manifest.get("state")),
            }
        )
    return out


def _rounds_lines(runs: list[Run]) -> list[str]:
    """How each run was measured: rounds, order seed, why it stopped."""
    out = []
    for run in runs:
        rounds = run.manifest.get("rounds") or {}
        if rounds.get("completed", 1) <= 1:
            out.append(
                f"Run `{run.run_id}`: one round: every interval covers one time slot; rerun "
                "with `--rounds 5` (or `rounds:` in the matrix) for intervals across time slots."
            )
        else:
            out.append(
                f"Run `{run.run_id}`: {rounds['completed']} rounds, each cell in a fresh "
                f"{'container' if run.manifest.get('executor') == 'docker' else 'process'}, "
                f"compared cells in a random order per round (seed {rounds.get('order_seed')}); "
                f"stopped: {rounds.get('stopped_by')}."
            )
    return [*out, ""] if out else []


def cpu_warning(runs: list[Run]) -> str | None:
    """A warning when merged runs come from different CPUs, naming them: the same cell is not
    the same work on a Zen 3 and a Zen 4, so differences between these runs are the hosts'."""
    cpus = {identity_key(run.manifest.get("host", {}).get("cpu", {})): run for run in runs}
    if len(cpus) < 2:
        return None
    named = "; ".join(
        f"`{run.run_id}`: {describe_cpu(run.manifest.get('host', {}).get('cpu', {}))}"
        for run in cpus.values()
    )
    return (
        f"WARNING: these runs come from {len(cpus)} different CPUs ({named}); a difference "
        "between them measures the CPUs as much as the frameworks."
    )


def _executor(manifest: dict) -> str:
    """The executor, with what it means when it is not a container per cell."""
    name = str(manifest.get("executor"))
    if note := manifest.get("executor_note"):
        return f"{name} ({note})"
    if name == "local":  # runs from before the note was recorded
        return "local (no container isolation; this environment's framework versions)"
    return name


def markdown(runs: list[Run]) -> str:
    results = _all_results(runs)
    lines = ["# deploybench report", ""]
    if warning := cpu_warning(runs):
        lines += [f"**{warning}**", ""]
    for env in environment(runs):
        lines += [
            f"- run `{env['run']}` on {env['host']} ({env['state']}, {env['started']} to "
            f"{env['finished']}, executor {env['executor']})",
            f"  - CPU: {env['cpu']}; memory {env['memory']}; {env['os']}; GPUs: {env['gpus']}",
            f"  - frameworks: {env['frameworks']}",
            f"  - images: {env['images']}",
        ]
    for h in pool_hosts(runs):
        lines += [
            f"- host `{h['host']}` of run `{h['run']}` ({h['address']}; "
            f"{h['labels'] or 'no labels'}; {h['state']}): {h['cells']} cells; CPU {h['cpu']}; "
            f"{h['engine']}; images {h['images']}",
        ]
    scopes = sorted({t["scope"] for r in results for t in (r.timing, r.compute_timing) if t})
    band = estimates.band_of([run.manifest for run in runs])
    lines += [
        "",
        "Timing scope: " + "; ".join(f"`{s}`: {SCOPE_DESCRIPTIONS[s]}" for s in scopes),
        "",
        *_rounds_lines(runs),
        tables.legend(band) + " Parity: against the PyTorch fp32 reference on the same "
        "inputs, with the tolerance tier of the cell's precision.",
        "",
    ]
    for section in [*sections(results, band, len(runs)), hosts_section(runs, band)]:
        if section:
            lines += [
                f"## {section.title}",
                "",
                tabulate(section.rows, section.headers, tablefmt="github", disable_numparse=True),
                "",
            ]
    problems = tables.problem_rows(results)
    if problems:
        lines += [
            "## Cells that did not run to a result",
            "",
            tabulate(problems, tables.PROBLEM_HEADERS, tablefmt="github", disable_numparse=True),
            "",
        ]
    return "\n".join(lines)


def csv_text(runs: list[Run]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS)
    writer.writeheader()
    all_results = _all_results(runs)
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


def html(runs: list[Run], plot_files: list[Path]) -> str:
    results = _all_results(runs)
    # Always escaped: reasons, options and model names are text from cells and users, and
    # select_autoescape() would not match the template's .html.j2 name.
    env = Environment(loader=PackageLoader("runner.report", "templates"), autoescape=True)
    pngs = [p for p in plot_files if p.suffix == ".png"]
    images = [{"name": p.stem, "data": base64.b64encode(p.read_bytes()).decode()} for p in pngs]
    scopes = sorted({t["scope"] for r in results for t in (r.timing, r.compute_timing) if t})
    return env.get_template("report.html.j2").render(
        cpu_warning=cpu_warning(runs),
        environments=environment(runs),
        pool_hosts=pool_hosts(runs),
        scopes=[(s, SCOPE_DESCRIPTIONS[s]) for s in scopes],
        rounds=_rounds_lines(runs),
        legend=tables.legend(estimates.band_of([run.manifest for run in runs])),
        sections=[
            s
            for s in [
                *sections(results, estimates.band_of([r.manifest for r in runs]), len(runs)),
                hosts_section(runs, estimates.band_of([r.manifest for r in runs])),
            ]
            if s
        ],
        problems=tables.problem_rows(results),
        problem_headers=tables.PROBLEM_HEADERS,
        images=images,
    )


def write_report(runs: list[Run], out: Path) -> list[Path]:
    """Write every part of the report into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    plot_files = plots.all_plots(_all_results(runs), out / "plots")
    written = [
        atomic_write_text(out / "report.md", markdown(runs)),
        atomic_write_text(out / "results.csv", csv_text(runs)),
        atomic_write_text(out / "report.html", html(runs, plot_files)),
    ]
    return written + plot_files
