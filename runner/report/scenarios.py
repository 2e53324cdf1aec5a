"""The report's load-scenario part: the single-stream view the latency tables read and a table
per scenario (offline, multi-stream, server); their curves are in runner/report/plots.py.
Imported by `runner run` in the images too, so it needs no plotting library.

Every cell measures single-stream latency before its scenario, so one configuration run under
four scenarios has four single-stream measurements of itself. The latency tables, the answer
and the best-configuration table read one of them (`single_stream_view`): the single_stream
cell's where the matrix has it, else the first scenario's; nothing is counted twice.
"""

from __future__ import annotations

import statistics

from bench.result import CellResult
from bench.scenario_spec import SCENARIOS, SINGLE_STREAM
from runner.report.section import Section
from runner.report.tables import groups, label

SCENARIO_ORDER = list(SCENARIOS)


def scenario_of(result: CellResult) -> str:
    return str(result.cell.get("scenario", SINGLE_STREAM))


def _config_key(result: CellResult) -> tuple:
    c = result.cell
    return (
        result.run_id,
        c.get("host"),
        c["model"],
        c["framework"],
        c.get("version"),
        c["device"],
        c["batch_size"],
        c["precision"],
        tuple(sorted(c.get("options", {}).items())),
    )


def _scenario_key(result: CellResult) -> tuple:
    """The scenario and its settings, in the order single_stream, offline, ... (so the first
    is single_stream's where a configuration has one)."""
    options = tuple(sorted(result.cell.get("scenario_options", {}).items()))
    return (SCENARIO_ORDER.index(scenario_of(result)), options)


def single_stream_view(results: list[CellResult]) -> list[CellResult]:
    """One scenario cell's results (all its rounds) per configuration: single_stream's where
    there is one, else the first scenario's."""
    chosen: dict[tuple, tuple] = {}
    for r in results:
        key, scenario = _config_key(r), _scenario_key(r)
        if key not in chosen or scenario < chosen[key]:
            chosen[key] = scenario
    return [r for r in results if chosen[_config_key(r)] == _scenario_key(r)]


def with_scenario(results: list[CellResult], scenario: str) -> list[CellResult]:
    return [r for r in results if r.status == "ok" and scenario_of(r) == scenario and r.scenario]


def by_cell(results: list[CellResult]) -> dict[str, list[CellResult]]:
    """A scenario cell's rounds together (a round per process), in matrix order."""
    out: dict[str, list[CellResult]] = {}
    for r in results:
        key = "|".join(map(str, (*_config_key(r), _scenario_key(r))))
        out.setdefault(key, []).append(r)
    return out


def _median_text(values: list[float], digits: int = 1) -> str:
    """The median over rounds, with the range when there are several: one round's figure is
    one time slot's, not the figure of the configuration."""
    if not values:
        return "-"
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    low, high = min(values), max(values)
    return f"{middle:.{digits}f} [{low:.{digits}f}..{high:.{digits}f}] x{len(values)}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _parity(r: CellResult) -> str:
    return (r.parity or {}).get("verdict", "-")


def _overhead(r: CellResult) -> str:
    o = r.scenario["loadgen_overhead"]
    return f"{o['closed_loop_p50_us']:.0f} / {o['open_loop_p99_us']:.0f}"


OFFLINE_HEADERS = (
    "framework",
    "precision",
    "best batch",
    "samples/s at it",
    "sweep: batch -> samples/s",
    "stopped",
    "parity",
    "harness us (closed p50 / open p99)",
)
MULTI_HEADERS = (
    "framework",
    "precision",
    "batch",
    "N in flight",
    "samples/s",
    "p50 ms",
    "p99 ms",
    "how requests run at once",
    "parity",
)
SERVER_HEADERS = (
    "framework",
    "precision",
    "batch",
    "p99 bound ms",
    "max VALID rate /s",
    "p50 / p99 / p99.9 ms at it",
    "verdict",
    "rates tried",
    "how requests run at once",
    "parity",
)


def _offline_rows(group: list[CellResult]) -> list[tuple[str, ...]]:
    rows = []
    for rounds in by_cell(group).values():
        r, s = rounds[0], rounds[0].scenario
        sweep = ", ".join(f"{p['batch_size']}: {p['samples_per_s']:.1f}" for p in s["sweep"])
        rows.append(
            (
                label(r.cell),
                r.cell["precision"],
                " ".join(sorted({str(x.scenario["best_batch_size"]) for x in rounds})),
                _median_text([x.scenario["samples_per_s"] for x in rounds]),
                sweep,
                s["stopped"],
                _parity(r),
                _overhead(r),
            )
        )
    return rows


def _multi_rows(group: list[CellResult]) -> list[tuple[str, ...]]:
    rows = []
    for rounds in by_cell(group).values():
        r = rounds[0]
        for i, point in enumerate(r.scenario["sweep"]):
            same = [x.scenario["sweep"][i] for x in rounds if len(x.scenario["sweep"]) > i]
            best = point["streams"] == r.scenario["best_streams"]
            rows.append(
                (
                    label(r.cell) if i == 0 else "",
                    r.cell["precision"] if i == 0 else "",
                    str(r.cell["batch_size"]) if i == 0 else "",
                    f"{point['streams']}{' (best)' if best else ''}",
                    _median_text([p["samples_per_s"] for p in same]),
                    _ms(point["p50_ms"]),
                    _ms(point["p99_ms"]),
                    point["mechanism"],
                    _parity(r) if i == 0 else "",
                )
            )
    return rows


def _server_rows(group: list[CellResult]) -> list[tuple[str, ...]]:
    rows = []
    for rounds in by_cell(group).values():
        r, s = rounds[0], rounds[0].scenario
        at = s["at_max_valid_rate"]
        tails = (
            "-"
            if at is None
            else f"{_ms(at['p50_ms'])} / {_ms(at['p99_ms'])} / {_ms(at['p999_ms'])}"
        )
        verdict = s["verdict"] if at else "INVALID: " + "; ".join(s["why_invalid"] or [])
        rates = [x.scenario["max_valid_rate_per_s"] for x in rounds]
        rows.append(
            (
                label(r.cell),
                r.cell["precision"],
                str(r.cell["batch_size"]),
                f"{s['p99_bound_ms']:g}",
                _median_text([v for v in rates if v is not None]),
                tails,
                verdict,
                str(len(s["rates"])),
                s["mechanism"],
                _parity(r),
            )
        )
    return rows


def headlines(results: list[CellResult]) -> list[dict]:
    """report.json's scenario entries: each scenario cell's (and round's) headline figures."""
    out = []
    ordered = [
        r for name in ("offline", "multi_stream", "server") for r in with_scenario(results, name)
    ]
    for r in ordered:
        s = r.scenario
        out.append(
            {
                "cell": r.cell,
                "label": label(r.cell),
                "run_id": r.run_id,
                "scenario": s["name"],
                "samples_per_s": s.get("samples_per_s"),
                "best_batch_size": s.get("best_batch_size"),
                "best_streams": s.get("best_streams"),
                "p99_bound_ms": s.get("p99_bound_ms"),
                "max_valid_rate_per_s": s.get("max_valid_rate_per_s"),
                "verdict": s.get("verdict"),
                "parity": (r.parity or {}).get("verdict"),
            }
        )
    return out


def sections(results: list[CellResult]) -> list[Section]:
    """A table per scenario, model and device."""
    out = []
    for scenario, title, headers, rows_of in (
        ("offline", "offline: samples/s at the best batch", OFFLINE_HEADERS, _offline_rows),
        ("multi_stream", "multi-stream: N requests in flight", MULTI_HEADERS, _multi_rows),
        ("server", "server: Poisson arrivals, p99 under a bound", SERVER_HEADERS, _server_rows),
    ):
        for (device, model), group in groups(with_scenario(results, scenario)).items():
            out.append(Section(f"{model} on {device}, {title}", headers, rows_of(group)))
    return out


def terminal(results: list[CellResult]) -> str:
    """The scenario tables of the summary printed at the end of a run ("" without any)."""
    from tabulate import tabulate

    parts = [
        f"{s.title}\n" + tabulate(s.rows, s.headers, tablefmt="simple", disable_numparse=True)
        for s in sections(results)
    ]
    return "\n\n".join(parts)


LEGEND = (
    "Scenarios (MLPerf LoadGen's): every cell first measures single-stream latency (the tables "
    "above), then its scenario in the same process. offline: one batch in flight, batch "
    "doubled until a doubling gains under the threshold; multi-stream: N clients each keeping "
    "one request in flight; server: Poisson arrivals (seeded), latency from the scheduled "
    "arrival (queueing included), VALID when p99 <= the bound over at least the minimum "
    "queries and seconds. Tail percentiles are nearest-rank; p99.9 is shown from 1000 "
    "queries on. Figures are medians over rounds [range] when a cell ran several. harness "
    "us: the load generator's own latency on a model that does nothing, in the same process."
)
