"""The tables of a report, as rows of strings; report.md, report.html, results.csv and the
terminal summary at the end of a run all come from here.

Latencies are run-level estimates (runner/report/estimates.py): over rounds when a run has
several, else one round's iterations, marked. A speed-up is computed within its own run, paired
by round, with its interval and a verdict; "faster" or "slower" only when the whole interval
lies beyond the equivalence band, a tie otherwise. Rankings use the same verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable

from tabulate import tabulate

from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND, compare_ratio
from bench.result import CellResult
from runner.report import estimates

MAIN_HEADERS = (
    "framework",
    "precision",
    "batch",
    "median ms [95% CI]",
    "rounds",
    "p90 ms",
    "p99 ms",
    "samples/s",
    "vs torch [95% CI]",
    "parity",
    "worst rel L2",
    "top-1",
    "GFLOP/s",
    "notes",
)
# GPU tables: both timing scopes side by side, and the device's memory.
GPU_EXTRA_HEADERS = ("compute ms [95% CI]", "peak GPU MiB")
PROBLEM_HEADERS = ("model", "framework", "device", "precision", "batch", "status", "reason")


def framework_name(cell: dict) -> str:
    """The framework, with the version the cell asked for: `onnxruntime 1.22.1`."""
    version = cell.get("version")
    return f"{cell['framework']} {version}" if version else cell["framework"]


def label(cell: dict) -> str:
    """The framework (and version) with its options, e.g. tvm[trials=64]."""
    opts = ",".join(f"{k}={v}" for k, v in sorted(cell.get("options", {}).items()))
    return f"{framework_name(cell)}[{opts}]" if opts else framework_name(cell)


def notes(result: CellResult) -> str:
    """What a reader must know to read the number: untuned, the precision that really ran."""
    runtime = result.runtime or {}
    out = []
    if runtime.get("tuning"):  # TVM: UNTUNED, LIGHTLY TUNED (...) or TUNED (...)
        out.append(str(runtime["tuning"]))
    elif runtime.get("tuned") is False:
        out.append("UNTUNED")
    ran = runtime.get("precision_run")
    if ran == "mixed":
        out.append(f"MIXED ({runtime.get('integer_fraction', 0):.0%} of compute ops int8)")
    elif ran and ran != result.cell["precision"]:
        out.append(f"ran {ran}")
    if (busy := estimates.busy_threads(result)) is not None and busy != result.cell["threads"]:
        out.append(f"{busy} of {result.cell['threads']} threads busy")
    if runtime.get("performance_hint"):
        out.append(f"hint {runtime['performance_hint']}")
    if runtime.get("tf32") and result.cell["precision"] == "fp32":
        # Only an fp32 cell is lowered by TF32 (an fp16 engine that allows TF32 layers is not).
        out.append("TF32")
    if runtime.get("cpu_fallback_nodes"):
        # ONNX Runtime ran part of a cuda cell's graph on the CPU: not a pure GPU number.
        out.append(f"{runtime['cpu_fallback_nodes']} NODES ON CPU")
    busy = (result.compute_timing or {}).get("device_busy") or {}
    if busy.get("launch_bound"):
        out.append(f"LAUNCH-BOUND (device busy {busy['busy_fraction']:.0%} of compute time)")
    gpu = result.gpu or {}
    if gpu.get("clocks_dropped"):
        out.append(f"CLOCKS DROPPED ({gpu.get('clock_note')})")
    if result.timing and (noisy := estimates.noisy_rounds(result)):
        out.append(f"NOISY ({noisy} of {estimates.rounds_of(result)} rounds)")
    return ", ".join(out)


def headers(device: str) -> tuple[str, ...]:
    """The main table's columns: on a GPU, the end-to-end median is followed by the
    compute-only one and the cell's peak device memory."""
    if device == "cpu":
        return MAIN_HEADERS
    i = MAIN_HEADERS.index("median ms [95% CI]")
    return (
        *MAIN_HEADERS[:i],
        "end-to-end ms [95% CI]",
        *GPU_EXTRA_HEADERS,
        *MAIN_HEADERS[i + 1 :],
    )


def _latency_ci(section: dict) -> str:
    """A section's latency estimate with its interval; * marks one round's interval, which
    covers one time slot only."""
    e = section["estimate"]
    one_slot = "*" if e["rounds"] < 2 else ""
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]{one_slot}"


def reference(result: CellResult, results: Iterable[CellResult]) -> CellResult | None:
    """PyTorch eager fp32 of the same model, device and batch (no options), in the same run
    and on the same pool host: a speed-up is computed within one run on one machine."""
    c = result.cell
    for ref in results:
        rc = ref.cell
        if (
            ref.status == "ok"
            and ref.run_id == result.run_id
            and rc.get("host") == c.get("host")
            and rc["framework"] == "torch"
            and rc["precision"] == "fp32"
            and not rc["options"]
            and (rc["model"], rc["device"], rc["batch_size"])
            == (c["model"], c["device"], c["batch_size"])
        ):
            return ref
    return None


def speedup(
    result: CellResult, results: list[CellResult], band: float = DEFAULT_EQUIVALENCE_BAND
) -> estimates.Speedup | None:
    """The cell's speed-up over its run's PyTorch eager fp32 cell, with interval and verdict."""
    ref = reference(result, results)
    return estimates.speedup(ref, result, band) if ref else None


def _speedup_text(up: estimates.Speedup | None, is_reference: bool) -> str:
    if up is None:
        return "-"
    if is_reference:
        return "1.00x"
    word = {"faster": "faster", "slower": "slower", "tie": "tie"}[up.verdict.word]
    star = "*" if up.one_slot else ""
    return f"{up.value:.2f}x [{up.low:.2f}, {up.high:.2f}]{star} {word}"


def groups(results: list[CellResult]) -> dict[tuple[str, str], list[CellResult]]:
    """Results by (device, model), in matrix order; on a pool, by host too (the model's name
    then carries it: `resnet50 [host gpu-box]`), so that no table mixes machines."""
    out: dict[tuple[str, str], list[CellResult]] = {}
    for r in results:
        model = r.cell["model"]
        if host := r.cell.get("host"):
            model = f"{model} [host {host}]"
        out.setdefault((r.cell["device"], model), []).append(r)
    return out


def _rel_l2_text(parity: dict, detection: bool) -> str:
    if detection:
        return "-"
    if parity["worst_rel_l2"] is None:  # NaN or inf in the outputs
        return "NON-FINITE"
    return f"{parity['worst_rel_l2']:.1e}"


def _rounds_text(r: CellResult) -> str:
    n, noisy = estimates.rounds_of(r), estimates.noisy_rounds(r)
    return f"{n} ({noisy} noisy)" if noisy else str(n)


def main_row(
    r: CellResult, results: list[CellResult], band: float = DEFAULT_EQUIVALENCE_BAND
) -> tuple[str, ...]:
    p = r.parity
    up = speedup(r, results, band)
    is_reference = up is not None and reference(r, results) is r
    detection = p.get("kind") == "detection"  # its metrics have a table of their own
    top1 = "-" if detection or p["top1_agreement"] is None else f"{p['top1_agreement']:.3f}"
    gflops = r.timing.get("achieved_gflops_per_s")
    gpu_columns: tuple[str, ...] = ()
    if r.cell["device"] != "cpu":
        compute = r.compute_timing
        peak = (r.gpu or {}).get("peak_memory_mib")
        gpu_columns = (
            "-" if compute is None else _latency_ci(compute),
            "-" if peak is None else f"{peak:.0f}",
        )
    return (
        label(r.cell),
        r.cell["precision"],
        str(r.cell["batch_size"]),
        _latency_ci(r.timing),
        *gpu_columns,
        _rounds_text(r),
        estimates.tail(r, "p90_ms"),
        estimates.tail(r, "p99_ms"),
        f"{r.timing['throughput_sps']:.1f}",
        _speedup_text(up, is_reference),
        "pass" if p["verdict"] == "pass" else "FAIL",
        _rel_l2_text(p, detection),
        top1,
        "-" if gflops is None else f"{gflops:.1f}",
        notes(r),
    )


def main_rows(
    group: list[CellResult],
    results: list[CellResult],
    band: float = DEFAULT_EQUIVALENCE_BAND,
    with_run: bool = False,
) -> list[tuple[str, ...]]:
    """The main table's rows; `with_run` (merged runs) puts each row's run first."""
    rows = [main_row(r, results, band) for r in group if r.status == "ok"]
    if with_run:
        ok = [r for r in group if r.status == "ok"]
        rows = [(str(r.run_id), *row) for r, row in zip(ok, rows, strict=True)]
    return rows


LEGEND = (
    "median: over rounds (the geometric mean of each round's median; 95% interval across "
    "rounds); * marks an interval from one round's iterations, which covers one time slot "
    "only. vs torch: speed-up over PyTorch eager fp32 of the same run, computed within each "
    "round; faster or slower only when the whole interval lies beyond ±{band:.0%}, else tie. "
    "p90/p99: only with at least {p90} / {p99} iterations."
)


def legend(band: float) -> str:
    return LEGEND.format(
        band=band, p90=estimates.MIN_SAMPLES["p90_ms"], p99=estimates.MIN_SAMPLES["p99_ms"]
    )


BEST_HEADERS = (
    "batch",
    "framework",
    "fastest passing config",
    "median ms [95% CI]",
    "samples/s",
    "top-1",
    "vs the leader [95% CI]",
    "",
    "notes",
)


def best_per_framework(group: list[CellResult], batch: int) -> list[CellResult]:
    """Each framework's fastest cell of this batch whose parity passes, fastest first."""
    best: dict[str, CellResult] = {}
    for r in group:
        if r.status != "ok" or r.cell["batch_size"] != batch or not r.parity_passed:
            continue
        current = best.get(framework_name(r.cell))  # two versions: two contenders
        if current is None or estimates.latency(r).value < estimates.latency(current).value:
            best[framework_name(r.cell)] = r
    return sorted(best.values(), key=lambda r: estimates.latency(r).value)


def tied_with_leader(ranked: list[CellResult], band: float) -> list[CellResult]:
    """The cells after the first (the leader) that cannot be told apart from it: their time
    ratio's interval does not leave the equivalence band."""
    leader = ranked[0]
    return [
        r for r in ranked[1:] if compare_ratio(estimates.time_ratio(leader, r), band).word == "tie"
    ]


def best_rows(
    group: list[CellResult], band: float = DEFAULT_EQUIVALENCE_BAND
) -> list[tuple[str, ...]]:
    """Per batch size: each framework's fastest cell whose parity passes (any precision or
    option), fastest first. The leader is `fastest` only when it is faster than every other
    framework beyond the equivalence band; a framework it cannot be told apart from is `tied
    for fastest`. A faster cell that changes the answers is not a configuration anyone could
    ship, so it is left out."""
    rows = []
    for batch in sorted({r.cell["batch_size"] for r in group}):
        ranked = best_per_framework(group, batch)
        if not ranked:
            continue
        leader = ranked[0]
        ties = {id(r) for r in tied_with_leader(ranked, band)}
        for i, r in enumerate(ranked):
            top1 = (r.parity or {}).get("top1_agreement")
            versus = "-"
            if i:
                ratio = estimates.time_ratio(leader, r)
                versus = f"{ratio.value:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]"
            if i == 0:
                mark = "tied for fastest" if ties else "fastest"
            else:
                mark = "tied for fastest" if id(r) in ties else ""
            rows.append(
                (
                    str(batch),
                    framework_name(r.cell),
                    f"{label(r.cell)} {r.cell['precision']}",
                    _latency_ci(r.timing),
                    f"{r.timing['throughput_sps']:.1f}",
                    "-" if top1 is None else f"{top1:.3f}",
                    versus,
                    mark,
                    notes(r),
                )
            )
    return rows


DETECTION_HEADERS = (
    "framework",
    "precision",
    "matched ref",
    "matched out",
    "unmatched ref / out",
    "box IoU mean / min",
    "max abs Δscore",
    "mask IoU mean / min",
    "parity",
)


def _fraction(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def detection_rows(group: list[CellResult]) -> list[tuple[str, ...]]:
    """Detection parity of the detector cells that ran: instances matched by label and IoU."""
    rows = []
    for r in group:
        p = r.parity or {}
        if r.status != "ok" or p.get("kind") != "detection":
            continue
        rows.append(
            (
                label(r.cell),
                r.cell["precision"],
                _fraction(p["matched_fraction"]),
                _fraction(p.get("output_matched_fraction")),
                f"{p['unmatched_reference']} / {p['unmatched_output']}",
                f"{_fraction(p['mean_box_iou'])} / {_fraction(p['min_box_iou'])}",
                _fraction(p["max_score_diff"], 4),
                f"{_fraction(p.get('mean_mask_iou'))} / {_fraction(p.get('min_mask_iou'))}",
                "pass" if p["verdict"] == "pass" else "FAIL: " + "; ".join(p["reasons"])[:160],
            )
        )
    return rows


def problem_rows(results: list[CellResult]) -> list[tuple[str, ...]]:
    return [
        (
            r.cell["model"],
            label(r.cell),
            r.cell["device"],
            r.cell["precision"],
            str(r.cell["batch_size"]),
            r.status,
            (r.reason or "").splitlines()[0][:200],
        )
        for r in results
        if r.status != "ok"
    ]


def terminal(results: list[CellResult], band: float = DEFAULT_EQUIVALENCE_BAND) -> str:
    """The summary printed at the end of a run: the answer first, then one table per device
    and model."""
    from runner.report import answer  # answer builds on this module

    parts = []
    if items := answer.answers(results, band):
        parts.append(
            "The answer\n"
            + tabulate(
                answer.rows(items), answer.ANSWER_HEADERS, tablefmt="simple",
                disable_numparse=True,
            )
            + "\n"
            + answer.ANSWER_LEGEND.format(band=band)
        )  # fmt: skip
    for (device, model), group in groups(results).items():
        rows = main_rows(group, results, band)
        if rows:
            parts.append(
                f"{model} on {device}\n"
                + tabulate(rows, headers(device), tablefmt="simple", disable_numparse=True)
            )
    if parts:
        parts.append(legend(band))
    problems = problem_rows(results)
    if problems:
        parts.append(
            "not ok\n"
            + tabulate(problems, PROBLEM_HEADERS, tablefmt="simple", disable_numparse=True)
        )
    return "\n\n".join(parts)
