"""Run-to-run comparison: per cell, the ratio of medians with a bootstrap confidence interval.

A cell is `slower` or `faster` only when the 95% interval of the ratio B/A excludes 1, and a
`regression` when it is slower by more than the threshold (the interval's lower bound above
1 + threshold), so noise between two runs of the same code reads as `no significant change`.
Parity verdicts that changed are listed too, and differences between the two environments
are stated, since a comparison across hosts measures the hosts as much as the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.measure.cpu_id import describe as describe_cpu
from bench.measure.cpu_id import identity_key
from runner.report.runs import Run
from runner.report.tables import label

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ratio_ci(
    a: np.ndarray,
    b: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """(median(b)/median(a), lower, upper): percentile bootstrap, both samples resampled."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    med_a = np.median(rng.choice(a, (resamples, a.size)), axis=1)
    med_b = np.median(rng.choice(b, (resamples, b.size)), axis=1)
    ratios = med_b / med_a
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return float(np.median(b) / np.median(a)), float(low), float(high)


@dataclass(frozen=True)
class CellChange:
    key: str
    ratio: float | None
    low: float | None
    high: float | None
    verdict: str  # faster, slower, no significant change, or what is missing
    regression: bool
    parity_change: str | None


def _key(cell: dict) -> str:
    return (
        f"{cell['model']} {label(cell)} {cell['device']} {cell['precision']} b{cell['batch_size']}"
    )


def compare_runs(a: Run, b: Run, threshold: float = 0.05) -> list[CellChange]:
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
        ratio, low, high = bootstrap_ratio_ci(ra.timing["samples_ms"], rb.timing["samples_ms"])
        verdict = "slower" if low > 1 else "faster" if high < 1 else "no significant change"
        va, vb = ra.parity["verdict"], rb.parity["verdict"]
        changes.append(
            CellChange(
                key,
                ratio,
                low,
                high,
                verdict,
                low > 1 + threshold,
                None if va == vb else f"parity {va} -> {vb}",
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
