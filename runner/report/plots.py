"""The report's plots (matplotlib, headless), each saved as PNG and SVG.

- latency: each cell's latency estimate, one panel per device and model, with its 95% interval
  (across rounds) as error bars;
- speedup: speed-up over PyTorch eager fp32 of the same run, model, device and batch, with its
  interval (paired by round);
- rounds: every round's median of every cell (a strip: how much the time slots differ);
- distribution: every measured latency of every cell (box plot: the spread, not just the median);
- throughput: samples/s against batch size, when the matrix has several batch sizes;
- parity: worst relative L2 error per framework and model (log scale heat map);
- offline, multi_stream, server: the load scenarios' curves (runner/report/scenarios.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and in containers

import matplotlib.pyplot as plt
import numpy as np

from bench.result import CellResult
from runner.report import scenarios
from runner.report.tables import groups, label, speedup


def _panels(n: int, width: float = 5.0, height: float = 3.6) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _cell_name(r: CellResult) -> str:
    c = r.cell
    return f"{label(c)}\n{c['precision']} b{c['batch_size']}"


def _save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    fig.tight_layout()
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    for path in paths:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return paths


def latency(results: list[CellResult], out: Path) -> list[Path]:
    grouped = [(k, [r for r in g if r.status == "ok"]) for k, g in groups(results).items()]
    grouped = [(k, g) for k, g in grouped if g]
    fig, axes = _panels(len(grouped))
    for ax, ((device, model), group) in zip(axes, grouped, strict=True):
        est = [r.timing["estimate"] for r in group]
        med = [e["value"] for e in est]
        low = [e["value"] - e["low"] for e in est]
        high = [e["high"] - e["value"] for e in est]
        x = np.arange(len(group))
        ax.bar(x, med, yerr=[low, high], capsize=4, color="#4c72b0")
        ax.set_xticks(x, [_cell_name(r) for r in group], fontsize=7)
        # Log scale: a cell 90x slower than the rest must not flatten them into the axis.
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms, log scale (95% interval over rounds)")
        ax.set_title(f"{model} on {device}")
    return _save(fig, out, "latency")


def speedups(results: list[CellResult], out: Path) -> list[Path]:
    grouped = []
    for key, group in groups(results).items():
        pairs = [(r, speedup(r, results)) for r in group if r.status == "ok"]
        pairs = [(r, s) for r, s in pairs if s is not None]
        if pairs:
            grouped.append((key, pairs))
    if not grouped:
        return []
    colours = {"faster": "#55a868", "slower": "#c44e52", "tie": "#999999"}
    fig, axes = _panels(len(grouped))
    for ax, ((device, model), pairs) in zip(axes, grouped, strict=True):
        x = np.arange(len(pairs))
        ups = [s for _, s in pairs]
        values = [s.value for s in ups]
        errors = [[s.value - s.low for s in ups], [s.high - s.value for s in ups]]
        ax.bar(
            x,
            values,
            yerr=errors,
            capsize=4,
            color=[colours[s.verdict.word] for s in ups],
        )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(x, [_cell_name(r) for r, _ in pairs], fontsize=7)
        ax.set_ylabel("speed-up over PyTorch eager fp32")
        ax.set_title(f"{model} on {device}")
    return _save(fig, out, "speedup")


def rounds(results: list[CellResult], out: Path) -> list[Path]:
    """Each round's median per cell, as dots: the spread between time slots that the
    intervals are made of (red: a round flagged noisy)."""
    grouped = [(k, [r for r in g if r.status == "ok"]) for k, g in groups(results).items()]
    grouped = [(k, g) for k, g in grouped if g]
    fig, axes = _panels(len(grouped))
    for ax, ((device, model), group) in zip(axes, grouped, strict=True):
        for i, r in enumerate(group):
            records = r.timing.get("rounds", [])
            y = [rec["stats"]["median_ms"] for rec in records]
            noisy = [(rec.get("noise") or {}).get("noisy", False) for rec in records]
            jitter = np.linspace(-0.15, 0.15, len(y)) if len(y) > 1 else [0.0]
            ax.scatter(
                i + np.asarray(jitter),
                y,
                s=14,
                color=["#c44e52" if n else "#4c72b0" for n in noisy],
            )
            ax.hlines(r.timing["estimate"]["value"], i - 0.3, i + 0.3, color="black", lw=1)
        ax.set_xticks(range(len(group)), [_cell_name(r) for r in group], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("median of each round, ms (line: estimate)")
        ax.set_title(f"{model} on {device}")
    return _save(fig, out, "rounds")


def distribution(results: list[CellResult], out: Path) -> list[Path]:
    grouped = [(k, [r for r in g if r.status == "ok"]) for k, g in groups(results).items()]
    grouped = [(k, g) for k, g in grouped if g]
    fig, axes = _panels(len(grouped))
    for ax, ((device, model), group) in zip(axes, grouped, strict=True):
        ax.boxplot(
            [r.timing["samples_ms"] for r in group],
            whis=(1, 99),
            showfliers=True,
            flierprops={"markersize": 2},
        )
        ax.set_xticks(range(1, len(group) + 1), [_cell_name(r) for r in group], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("latency per iteration, ms (whiskers p1-p99)")
        ax.set_title(f"{model} on {device}")
    return _save(fig, out, "distribution")


def throughput(results: list[CellResult], out: Path) -> list[Path]:
    ok = [r for r in results if r.status == "ok"]
    if len({r.cell["batch_size"] for r in ok}) < 2:
        return []
    models = sorted({(r.cell["device"], r.cell["model"]) for r in ok})
    fig, axes = _panels(len(models))
    for ax, (device, model) in zip(axes, models, strict=True):
        lines: dict[str, list[tuple[int, float]]] = {}
        for r in ok:
            if (r.cell["device"], r.cell["model"]) == (device, model):
                key = f"{label(r.cell)} {r.cell['precision']}"
                lines.setdefault(key, []).append((r.cell["batch_size"], r.timing["throughput_sps"]))
        for key, points in sorted(lines.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples/s")
        ax.set_title(f"{model} on {device}")
        ax.legend(fontsize=7)
    return _save(fig, out, "throughput")


def parity(results: list[CellResult], out: Path) -> list[Path]:
    # Tensor parity only: detection parity is a table of matched instances, not one error.
    # A non-finite output has no relative error to draw (its table row says NON-FINITE).
    ok = [
        r for r in results if r.status == "ok" and (r.parity or {}).get("worst_rel_l2") is not None
    ]
    if not ok:
        return []
    rows = sorted({f"{label(r.cell)} {r.cell['precision']}" for r in ok})
    cols = sorted({f"{r.cell['model']} ({r.cell['device']})" for r in ok})
    grid = np.full((len(rows), len(cols)), np.nan)
    for r in ok:
        i = rows.index(f"{label(r.cell)} {r.cell['precision']}")
        j = cols.index(f"{r.cell['model']} ({r.cell['device']})")
        value = max(r.parity["worst_rel_l2"], 1e-12)
        grid[i, j] = value if np.isnan(grid[i, j]) else max(grid[i, j], value)
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(cols), 1.2 + 0.45 * len(rows)))
    logs = np.log10(grid)
    image = ax.imshow(logs, cmap="viridis", aspect="auto")
    low, high = np.nanmin(logs), np.nanmax(logs)
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not np.isnan(grid[i, j]):
                # dark text on the bright end of viridis, light text elsewhere
                bright = high > low and (logs[i, j] - low) / (high - low) > 0.6
                color = "black" if bright else "white"
                ax.text(
                    j, i, f"{grid[i, j]:.1e}", ha="center", va="center", fontsize=7, color=color
                )
    fig.colorbar(image, ax=ax, label="log10 worst relative L2 error")
    ax.set_title("parity against the PyTorch fp32 reference")
    return _save(fig, out, "parity")


PointsOf = Callable[[CellResult], tuple[list[float], list[float]]]


def _curve_plot(
    results: list[CellResult],
    out: Path,
    name: str,
    points_of: PointsOf,
    axes_text: tuple[str, str, str],
    log_x: bool = True,
    bound_of: Callable[[CellResult], float] | None = None,
) -> list[Path]:
    """One panel per model and device, a line per configuration (its first round)."""
    x_label, y_label, title = axes_text
    grouped = list(groups(results).items())
    if not grouped:
        return []
    fig, axes = _panels(len(grouped), width=5.5, height=3.8)
    for ax, ((device, model), group) in zip(axes, grouped, strict=True):
        for rounds in scenarios.by_cell(group).values():
            first = rounds[0]
            xs, ys = points_of(first)
            ax.plot(xs, ys, marker="o", label=f"{label(first.cell)} {first.cell['precision']}")
            if bound_of:
                ax.axhline(bound_of(first), color="grey", linestyle="--", linewidth=0.8)
        if log_x:
            ax.set_xscale("log", base=2)
        else:  # server: latencies past the knee grow by orders of magnitude
            ax.set_yscale("log")
        ax.set_title(f"{model} ({device}): {title}", fontsize=9)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, out, name)


def scenario_plots(results: list[CellResult], out: Path) -> list[Path]:
    """Throughput against batch (offline), against N (multi-stream); p99 against the arrival
    rate (server, with its bound dashed)."""

    def sweep_curve(key: str) -> PointsOf:
        def points(r: CellResult) -> tuple[list[float], list[float]]:
            sweep = r.scenario["sweep"]
            return [p[key] for p in sweep], [p["samples_per_s"] for p in sweep]

        return points

    def p99_curve(r: CellResult) -> tuple[list[float], list[float]]:
        rates = [p for p in r.scenario["rates"] if p["queries"]]
        tail = [p["p99_ms"] if p["p99_ms"] is not None else p["max_ms"] for p in rates]
        return [p["rate_per_s"] for p in rates], tail

    offline = ("batch size", "samples/s", "throughput vs batch")
    files = _curve_plot(
        scenarios.with_scenario(results, "offline"),
        out,
        "offline",
        sweep_curve("batch_size"),
        offline,
    )
    multi = ("requests in flight", "samples/s", "throughput vs concurrency")
    files += _curve_plot(
        scenarios.with_scenario(results, "multi_stream"),
        out,
        "multi_stream",
        sweep_curve("streams"),
        multi,
    )
    server = ("arrival rate (requests/s)", "p99 ms (max below 100 queries)", "latency vs rate")
    files += _curve_plot(
        scenarios.with_scenario(results, "server"),
        out,
        "server",
        p99_curve,
        server,
        log_x=False,
        bound_of=lambda r: r.scenario["p99_bound_ms"],
    )
    return files


PLOTS = (latency, speedups, rounds, distribution, throughput, parity)


def all_plots(results: list[CellResult], out: Path) -> list[Path]:
    """Every plot that the results can fill; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    if not any(r.status == "ok" for r in results):
        return []
    return [path for plot in PLOTS for path in plot(results, out)]
