"""The numbers a report prints, from a run's rounds: a cell's latency with its interval, and the
ratio of two cells' times with a verdict (faster, slower or a tie).

Two cells of one run are compared round by round (they ran in the same time slots, in a random
order); cells of two runs are compared on their round medians, unpaired. A run of one round
has only its iterations, and every interval from them says it covers one time slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure.rounds import (
    DEFAULT_EQUIVALENCE_BAND,
    Estimate,
    Verdict,
    compare_ratio,
    paired_ratio,
    samples_ratio,
    unpaired_ratio,
)
from bench.measure.sections import round_medians
from bench.result import CellResult

# A tail percentile is printed only when enough iterations lie beyond it to mean something.
MIN_SAMPLES = {"p90_ms": 20, "p99_ms": 100}


def latency(result: CellResult) -> Estimate:
    """The cell's latency estimate (ms) as its result records it."""
    e = result.timing["estimate"]
    return Estimate(e["value"], e["low"], e["high"], e["rounds"], e["method"])


def rounds_of(result: CellResult) -> int:
    return len(result.timing.get("rounds", [])) if result.timing else 0


def noisy_rounds(result: CellResult) -> int:
    return sum(
        1 for r in (result.timing or {}).get("rounds", []) if (r.get("noise") or {}).get("noisy")
    )


def busy_threads(result: CellResult) -> int | None:
    """The median over rounds of the threads the OS saw working (None: not counted)."""
    counts = sorted(
        r["threads"]["busy"] for r in (result.timing or {}).get("rounds", []) if r.get("threads")
    )
    return counts[len(counts) // 2] if counts else None


def time_ratio(a: CellResult, b: CellResult, paired: bool | None = None) -> Estimate:
    """b's time over a's (below 1: b is faster), with its 95% interval: paired by round within
    one run, unpaired across runs, from iterations when a side has one round only. `paired`
    None decides by the results' run ids; compare passes False (two run folders are two runs
    even when a copy kept the run id)."""
    ma, mb = round_medians(a.timing), round_medians(b.timing)
    if paired is None:
        paired = a.run_id == b.run_id
    if paired and len(set(ma) & set(mb)) >= 2:
        return paired_ratio(mb, ma)
    if not paired and len(ma) >= 2 and len(mb) >= 2:
        return unpaired_ratio(list(ma.values()), list(mb.values()))
    return samples_ratio(a.timing["samples_ms"], b.timing["samples_ms"])


@dataclass(frozen=True)
class Speedup:
    """How many times faster `cell` is than the reference, and the verdict."""

    value: float
    low: float
    high: float
    verdict: Verdict
    one_slot: bool  # the interval comes from one round's iterations


def speedup(reference: CellResult, cell: CellResult, band: float) -> Speedup:
    """reference time / cell time, with its interval; the verdict is the cell's: faster,
    slower, or a tie within the equivalence band."""
    ratio = time_ratio(reference, cell)
    return Speedup(
        1 / ratio.value,
        1 / ratio.high,
        1 / ratio.low,
        compare_ratio(ratio, band),
        ratio.rounds < 2,
    )


def tail(result: CellResult, key: str) -> str:
    """A tail percentile (p90_ms, p99_ms) of the pooled iterations, or a dash when fewer
    iterations back it than MIN_SAMPLES asks."""
    stats = result.timing["stats"]
    if stats["count"] < MIN_SAMPLES[key]:
        return "-"
    return f"{stats[key]:.3f}"


def band_of(manifests: list[dict]) -> float:
    """The equivalence band the runs asked for (the first one that says), else the default."""
    for manifest in manifests:
        band = (manifest.get("matrix") or {}).get("equivalence_band")
        if isinstance(band, (int, float)) and not isinstance(band, bool):
            return float(band)
    return DEFAULT_EQUIVALENCE_BAND
