"""Run-to-run comparison on round-level data: per cell, the ratio of the two runs' latencies
B/A with its 95% interval, and a verdict.

With several rounds per run, each round's median is one observation of the cell's speed in one
time slot, and the ratio's interval is Welch's on the log round medians (bench.measure.rounds):
the variance between time slots, which is what differs between two runs of identical code, is
in it. With one round on a side, only that round's iterations are there: the interval is a
bootstrap of them, which covers one time slot, and compare says so. A cell is `slower` or
`faster` only when the whole interval lies beyond the equivalence band (±2% by default), and a
`regression` when it is slower with the interval's lower end above 1 + threshold; so noise
between two runs of the same code reads as `no significant change`. Parity verdicts that
changed are listed, and differences between the environments are stated, since a comparison
across hosts measures the hosts as much as the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure.cpu_id import describe as describe_cpu
from bench.measure.cpu_id import identity_key
from bench.measure.rounds import DEFAULT_EQUIVALENCE_BAND, compare_ratio
from runner.report.estimates import rounds_of, time_ratio
from runner.report.runs import Run
from runner.report.tables import label

VERDICTS = {"faster": "faster", "slower": "slower", "tie": "no significant change"}


@dataclass(frozen=True)
class CellChange:
    key: str
    ratio: float | None
    low: float | None
    high: float | None
    verdict: str  # faster, slower, no significant change, or what is missing
    regression: bool
    parity_change: str | None
    one_slot: bool = False  # a side had one round: the interval covers one time slot


def _key(cell: dict) -> str:
    return (
        f"{cell['model']} {label(cell)} {cell['device']} {cell['precision']} b{cell['batch_size']}"
    )


def compare_runs(
    a: Run, b: Run, threshold: float = 0.05, band: float = DEFAULT_EQUIVALENCE_BAND
) -> list[CellChange]:
    """Every cell of either run, matched by model, framework+options, device, precision, batch."""
    cells_a = {_key(r.cell): r for r in a.results}
    cells_b = {_key(r.cell): r for r in b.results}
    changes = []
    for key in [*cells_a, *(k for k in cells_b if k not in cells_a)]:
        ra, rb = cells_a.get(key), cells_b.get(key)
        if ra is None or rb is None:
            changes.append(
                CellChange(
                    key, None, None, None, "only in A" if rb is None else "only in B", False, None
                )
            )
            continue
        if ra.status != "ok" or rb.status != "ok":
            changes.append(
                CellChange(
                    key,
                    None,
                    None,
                    None,
                    f"status {ra.status} -> {rb.status}",
                    ra.status == "ok" and rb.status == "failed",
                    None,
                )
            )
            continue
        ratio = time_ratio(ra, rb, paired=False)
        verdict = VERDICTS[compare_ratio(ratio, band).word]
        va, vb = ra.parity["verdict"], rb.parity["verdict"]
        changes.append(
            CellChange(
                key,
                ratio.value,
                ratio.low,
                ratio.high,
                verdict,
                verdict == "slower" and ratio.low > 1 + threshold,
                None if va == vb else f"parity {va} -> {vb}",
                min(rounds_of(ra), rounds_of(rb)) < 2,
            )
        )
    return changes


def cpu_difference(a: Run, b: Run) -> str | None:
    """Both CPUs named, when two runs come from different ones (model, CPUID identity,
    microarchitecture or result-changing ISA features); None when they are the same kind."""
    ca, cb = a.manifest.get("host", {}).get("cpu", {}), b.manifest.get("host", {}).get("cpu", {})
    if identity_key(ca) == identity_key(cb):
        return None
    return f"A ran on {describe_cpu(ca)}; B ran on {describe_cpu(cb)}"


def environment_differences(a: Run, b: Run) -> list[str]:
    """What differs between the hosts and software of two runs."""
    ha, hb = a.manifest.get("host", {}), b.manifest.get("host", {})
    out = []
    for field in ("hostname", "os", "kernel", "memory_total_gib"):
        if ha.get(field) != hb.get(field):
            out.append(f"{field}: {ha.get(field)} -> {hb.get(field)}")
    if cpu := cpu_difference(a, b):
        out.append(f"cpu: {cpu}")
    packages_a = {k: v for r in a.results for k, v in r.environment.get("packages", {}).items()}
    packages_b = {k: v for r in b.results for k, v in r.environment.get("packages", {}).items()}
    for name in sorted(set(packages_a) & set(packages_b)):
        if packages_a[name] != packages_b[name]:
            out.append(f"{name}: {packages_a[name]} -> {packages_b[name]}")
    images_a, images_b = a.manifest.get("images", {}), b.manifest.get("images", {})
    for name in sorted(set(images_a) & set(images_b)):
        if images_a[name].get("id") != images_b[name].get("id"):
            out.append(f"image {name}: {images_a[name].get('id')} -> {images_b[name].get('id')}")
    return out
