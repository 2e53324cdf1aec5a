"""Writing a report into a run folder: report.md, report.html, report.json, plots/,
results.csv. Each leads with the answer (runner/report/answer.py), then the detail.

Several runs (e.g. from several hosts) make one report: their results are tabled together
and an extra table puts each host's median side by side.
"""

from __future__ import annotations

import base64
import json
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
from runner.report import answer, boundary, costs, estimates, plots, scenarios, summary, tables
from runner.report.csv_rows import csv_text
from runner.report.hosts import hosts_section, pool_hosts
from runner.report.runs import Run
from runner.report.section import Section


def _all_results(runs: list[Run]) -> list[CellResult]:
    return [r for run in runs for r in run.results]


def _latency_results(runs: list[Run]) -> list[CellResult]:
    """What the latency tables, plots and the answer read: one single-stream measurement per
    configuration (runner/report/scenarios.py)."""
    return scenarios.single_stream_view(_all_results(runs))


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
        if cost_rows := costs.rows(group):
            title = f"{model} on {device}: load, cold start, compile, tuning, memory, size"
            out.append(Section(title, costs.COST_HEADERS, cost_rows))
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


def answer_section(results: list[CellResult], band: float) -> Section | None:
    """The report's first table: the answer per model, device and batch."""
    if not (items := answer.answers(results, band)):
        return None
    return Section("The answer", answer.ANSWER_HEADERS, answer.rows(items))


def markdown(runs: list[Run]) -> str:
    results = _latency_results(runs)
    band = estimates.band_of([run.manifest for run in runs])
    lines = ["# deploybench report", ""]
    if warning := cpu_warning(runs):
        lines += [f"**{warning}**", ""]
    if first := answer_section(results, band):
        lines += [
            f"## {first.title}",
            "",
            tabulate(first.rows, first.headers, tablefmt="github", disable_numparse=True),
            "",
            answer.ANSWER_LEGEND.format(band=band),
            "",
        ]
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
    lines += [
        "",
        "Timing scope: " + "; ".join(f"`{s}`: {SCOPE_DESCRIPTIONS[s]}" for s in scopes),
        "",
        *_rounds_lines(runs),
        tables.legend(band) + " Parity: against the PyTorch fp32 reference on the same "
        "inputs, with the tolerance tier of the cell's precision.",
        "",
    ]
    load = scenarios.sections(_all_results(runs))
    for section in [*sections(results, band, len(runs)), hosts_section(runs, band), *load]:
        if section:
            lines += [
                f"## {section.title}",
                "",
                tabulate(section.rows, section.headers, tablefmt="github", disable_numparse=True),
                "",
            ]
    if load:
        lines += [scenarios.LEGEND, ""]
    problems = tables.problem_rows(_all_results(runs))
    if problems:
        lines += [
            "## Cells that did not run to a result",
            "",
            tabulate(problems, tables.PROBLEM_HEADERS, tablefmt="github", disable_numparse=True),
            "",
        ]
    return "\n".join(lines)


def html(runs: list[Run], plot_files: list[Path]) -> str:
    results = _latency_results(runs)
    # Always escaped: reasons, options and model names are text from cells and users, and
    # select_autoescape() would not match the template's .html.j2 name.
    env = Environment(loader=PackageLoader("runner.report", "templates"), autoescape=True)
    pngs = [p for p in plot_files if p.suffix == ".png"]
    images = [{"name": p.stem, "data": base64.b64encode(p.read_bytes()).decode()} for p in pngs]
    scopes = sorted({t["scope"] for r in results for t in (r.timing, r.compute_timing) if t})
    band = estimates.band_of([run.manifest for run in runs])
    return env.get_template("report.html.j2").render(
        answer=answer_section(results, band),
        answer_legend=answer.ANSWER_LEGEND.format(band=band),
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
                *scenarios.sections(_all_results(runs)),
            ]
            if s
        ],
        scenario_legend=scenarios.LEGEND if scenarios.sections(_all_results(runs)) else None,
        problems=tables.problem_rows(_all_results(runs)),
        problem_headers=tables.PROBLEM_HEADERS,
        images=images,
    )


def json_text(runs: list[Run]) -> str:
    """report.json, validated against its schema before it is written."""
    band = estimates.band_of([run.manifest for run in runs])
    lines = [
        {k: env[k] for k in ("run", "host", "cpu", "state", "started", "finished")}
        for env in environment(runs)
    ]
    doc = summary.report_json(_latency_results(runs), lines, band, _all_results(runs))
    summary.validate(doc)
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def write_report(runs: list[Run], out: Path) -> list[Path]:
    """Write every part of the report into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    plot_files = plots.all_plots(_latency_results(runs), out / "plots")
    plot_files += plots.scenario_plots(_all_results(runs), out / "plots")
    written = [
        atomic_write_text(out / "report.md", markdown(runs)),
        atomic_write_text(out / "results.csv", csv_text(runs)),
        atomic_write_text(out / "report.html", html(runs, plot_files)),
        atomic_write_text(out / "report.json", json_text(runs)),
    ]
    return written + plot_files
