"""The language-boundary comparison: for one model and framework, its Python API next to its
C++ runner (`<framework>-cpp`) and the same C++ code called through ctypes (`-ctypes`).

On a real model the three should be within noise of each other (the work is the same); on the
near-empty `overhead_probe` model the latency *is* the per-call cost, so the differences to
the C++ runner are the price of the Python API's call and of a ctypes call, in microseconds.
"""

from __future__ import annotations

from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND, compare_ratio
from bench.models import OVERHEAD_PROBE
from bench.result import CellResult
from runner.report.estimates import time_ratio

VARIANTS = ("python", "ctypes", "cpp")  # columns, in order
BOUNDARY_HEADERS = (
    "run",
    "model",
    "framework",
    "precision",
    "batch",
    "Python API ms",
    "ctypes ms",
    "C++ ms",
    "Python − C++ µs",
    "ctypes − C++ µs",
    "Python / C++ time [95% CI]",
    "ctypes / C++ time [95% CI]",
    "parity",
)
OVERHEAD_HEADERS = (
    "run",
    "framework",
    "Python API µs",
    "ctypes µs",
    "C++ µs",
    "p99 Python / ctypes / C++ µs",
)


def split_variant(framework: str) -> tuple[str, str]:
    """`openvino-cpp` -> (`openvino`, `cpp`); a plain framework is its `python` variant."""
    base, _, suffix = framework.rpartition("-")
    return (base, suffix) if base and suffix in ("cpp", "ctypes") else (framework, "python")


def variant_groups(results: list[CellResult]) -> dict[tuple, dict[str, CellResult]]:
    """Finished cells by (run, model, device, framework, precision, batch, threads) -> variant.
    Only frameworks with a native variant are kept, and only option-less Python cells (the
    configuration the native runners reproduce). Runs stay apart: on a noisy machine the
    spread between repeated runs is part of the answer."""
    found: dict[tuple, dict[str, CellResult]] = {}
    for r in results:
        c = r.cell
        base, variant = split_variant(c["framework"])
        if r.status != "ok" or (variant == "python" and c["options"]):
            continue
        key = (
            r.run_id or "-",
            c["model"],
            c["device"],
            base,
            c["precision"],
            c["batch_size"],
            c["threads"],
        )
        found.setdefault(key, {})[variant] = r
    return {k: v for k, v in found.items() if set(v) & {"cpp", "ctypes"}}


def _median(r: CellResult | None) -> float | None:
    return r.timing["stats"]["median_ms"] if r else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _diff_us(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{(a - b) * 1000:+.1f}"


def _ratio(cpp: CellResult | None, other: CellResult | None) -> str:
    """`other`'s time over the C++ runner's, paired by round within a run, with its verdict
    (slower, faster, or a tie within the equivalence band); * marks one round's interval."""
    if cpp is None or other is None:
        return "-"
    r = time_ratio(cpp, other)
    mark = "*" if r.rounds < 2 else ""
    verdict = compare_ratio(r, DEFAULT_EQUIVALENCE_BAND).word
    return f"{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]{mark} {verdict}"


def boundary_rows(results: list[CellResult]) -> list[tuple[str, ...]]:
    rows = []
    for (run, model, _device, base, precision, batch, _threads), cells in variant_groups(
        results
    ).items():
        py, ct, cpp = (_median(cells.get(v)) for v in VARIANTS)
        verdicts = {v: cells[v].parity_passed for v in VARIANTS if v in cells}
        failed = [v for v, ok in verdicts.items() if not ok]
        rows.append(
            (
                run,
                model,
                base,
                precision,
                str(batch),
                _ms(py),
                _ms(ct),
                _ms(cpp),
                _diff_us(py, cpp),
                _diff_us(ct, cpp),
                _ratio(cells.get("cpp"), cells.get("python")),
                _ratio(cells.get("cpp"), cells.get("ctypes")),
                "pass" if not failed else "FAIL",
            )
        )
    return rows


def overhead_rows(results: list[CellResult]) -> list[tuple[str, ...]]:
    """The per-call overhead: each variant's latency on the near-empty model, in µs."""
    rows = []
    for (run, model, _d, base, _p, batch, _t), cells in variant_groups(results).items():
        if model != OVERHEAD_PROBE or batch != 1:
            continue
        medians = [_median(cells.get(v)) for v in VARIANTS]
        p99s = [cells[v].timing["stats"]["p99_ms"] if v in cells else None for v in VARIANTS]
        rows.append(
            (
                run,
                base,
                *("-" if m is None else f"{m * 1000:.1f}" for m in medians),
                " / ".join("-" if p is None else f"{p * 1000:.1f}" for p in p99s),
            )
        )
    return rows
