"""The tables of a report, as rows of strings; report.md, report.html, results.csv and the
terminal summary at the end of a run all come from here."""

from __future__ import annotations

from collections.abc import Iterable

from tabulate import tabulate

from bench.result import CellResult

MAIN_HEADERS = (
    "framework",
    "precision",
    "batch",
    "median ms [95% CI]",
    "p90 ms",
    "p99 ms",
    "samples/s",
    "vs torch",
    "parity",
    "worst rel L2",
    "top-1",
    "GFLOP/s",
    "notes",
)
# GPU tables: both timing scopes side by side, and the device's memory.
GPU_EXTRA_HEADERS = ("compute ms [95% CI]", "peak GPU MiB")
PROBLEM_HEADERS = ("model", "framework", "device", "precision", "batch", "status", "reason")


def label(cell: dict) -> str:
    """The framework with its options, e.g. tvm[trials=64]."""
    opts = ",".join(f"{k}={v}" for k, v in sorted(cell.get("options", {}).items()))
    return f"{cell['framework']}[{opts}]" if opts else cell["framework"]


def notes(result: CellResult) -> str:
    """What a reader must know to read the number: untuned, the precision that really ran."""
    runtime = result.runtime or {}
    out = []
    if runtime.get("tuned") is False:
        out.append("UNTUNED")
    if runtime.get("precision_run") and runtime["precision_run"] != result.cell["precision"]:
        out.append(f"ran {runtime['precision_run']}")
    if runtime.get("performance_hint"):
        out.append(f"hint {runtime['performance_hint']}")
    if runtime.get("tf32"):
        out.append("TF32")
    gpu = result.gpu or {}
    if gpu.get("clocks_dropped"):
        out.append(f"CLOCKS DROPPED ({gpu.get('clock_note')})")
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


def _median_ci(stats: dict) -> str:
    return (
        f"{stats['median_ms']:.3f} "
        f"[{stats['median_ci95_low_ms']:.3f}, {stats['median_ci95_high_ms']:.3f}]"
    )


def reference_median(result: CellResult, results: Iterable[CellResult]) -> float | None:
    """Median of PyTorch eager fp32 for the same model, device and batch (no options)."""
    c = result.cell
    for ref in results:
        rc = ref.cell
        if (
            ref.status == "ok"
            and rc["framework"] == "torch"
            and rc["precision"] == "fp32"
            and not rc["options"]
            and (rc["model"], rc["device"], rc["batch_size"])
            == (c["model"], c["device"], c["batch_size"])
        ):
            return ref.timing["stats"]["median_ms"]
    return None


def speedup(result: CellResult, results: list[CellResult]) -> float | None:
    ref = reference_median(result, results)
    return ref / result.timing["stats"]["median_ms"] if ref else None


def groups(results: list[CellResult]) -> dict[tuple[str, str], list[CellResult]]:
    """Results by (device, model), in matrix order."""
    out: dict[tuple[str, str], list[CellResult]] = {}
    for r in results:
        out.setdefault((r.cell["device"], r.cell["model"]), []).append(r)
    return out


def main_row(r: CellResult, results: list[CellResult]) -> tuple[str, ...]:
    s, p = r.timing["stats"], r.parity
    up = speedup(r, results)
    detection = p.get("kind") == "detection"  # its metrics have a table of their own
    top1 = "-" if detection or p["top1_agreement"] is None else f"{p['top1_agreement']:.3f}"
    gflops = r.timing.get("achieved_gflops_per_s")
    gpu_columns: tuple[str, ...] = ()
    if r.cell["device"] != "cpu":
        compute = r.compute_timing
        peak = (r.gpu or {}).get("peak_memory_mib")
        gpu_columns = (
            "-" if compute is None else _median_ci(compute["stats"]),
            "-" if peak is None else f"{peak:.0f}",
        )
    return (
        label(r.cell),
        r.cell["precision"],
        str(r.cell["batch_size"]),
        _median_ci(s),
        *gpu_columns,
        f"{s['p90_ms']:.3f}",
        f"{s['p99_ms']:.3f}",
        f"{r.timing['throughput_sps']:.1f}",
        "-" if up is None else f"{up:.2f}x",
        "pass" if p["verdict"] == "pass" else "FAIL",
        "-" if detection else f"{p['worst_rel_l2']:.1e}",
        top1,
        "-" if gflops is None else f"{gflops:.1f}",
        notes(r),
    )


def main_rows(group: list[CellResult], results: list[CellResult]) -> list[tuple[str, ...]]:
    return [main_row(r, results) for r in group if r.status == "ok"]


BEST_HEADERS = (
    "batch",
    "framework",
    "fastest passing config",
    "median ms",
    "samples/s",
    "top-1",
    "",
)


def best_rows(group: list[CellResult]) -> list[tuple[str, ...]]:
    """Per batch size: each framework's fastest cell whose parity passes (any precision or
    option), fastest first; the first row of each batch is the winner. A faster cell that
    changes the answers is not a configuration anyone could ship, so it is left out."""
    rows = []
    for batch in sorted({r.cell["batch_size"] for r in group}):
        best: dict[str, CellResult] = {}
        for r in group:
            if r.status != "ok" or r.cell["batch_size"] != batch or not r.parity_passed:
                continue
            current = best.get(r.cell["framework"])
            if (
                current is None
                or r.timing["stats"]["median_ms"] < current.timing["stats"]["median_ms"]
            ):
                best[r.cell["framework"]] = r
        ranked = sorted(best.values(), key=lambda r: r.timing["stats"]["median_ms"])
        for i, r in enumerate(ranked):
            top1 = (r.parity or {}).get("top1_agreement")
            config = f"{label(r.cell)} {r.cell['precision']}"
            rows.append(
                (
                    str(batch),
                    r.cell["framework"],
                    config,
                    f"{r.timing['stats']['median_ms']:.3f}",
                    f"{r.timing['throughput_sps']:.1f}",
                    "-" if top1 is None else f"{top1:.3f}",
                    "fastest" if i == 0 else "",
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


def terminal(results: list[CellResult]) -> str:
    """The summary printed at the end of a run: one table per device and model."""
    parts = []
    for (device, model), group in groups(results).items():
        rows = main_rows(group, results)
        if rows:
            parts.append(
                f"{model} on {device}\n"
                + tabulate(rows, headers(device), tablefmt="simple", disable_numparse=True)
            )
    problems = problem_rows(results)
    if problems:
        parts.append(
            "not ok\n"
            + tabulate(problems, PROBLEM_HEADERS, tablefmt="simple", disable_numparse=True)
        )
    return "\n\n".join(parts)
