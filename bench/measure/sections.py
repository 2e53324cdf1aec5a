"""The timing section of a result, built from one round's measurement or merged from several.

One shape for both (schema version 3):

- `samples_ms`: every measured iteration of every round, in round order, and `stats` over them
  all (the pooled distribution: percentiles, spread);
- `rounds`: one record per round (a fresh process): its index, its position in the round's
  random order, load and cold-call times, warm-up, the slice of `samples_ms` it measured
  (`samples: [start, end)`), its own `stats` and the noise telemetry of its measurement;
- `estimate`: the cell's latency with its 95% interval, from the rounds
  (`bench.measure.rounds`): across rounds when there are two or more, else the distribution-
  free interval of the one round's median, which says it covers one time slot.

`load_ms` and `cold_ms` at the top are the first round's; throughput and GFLOP/s follow the
estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.measure.rounds import Estimate, latency_estimate
from bench.measure.stats import achieved_gflops_per_s, summarize, throughput_sps

ONE_SLOT_LATENCY = (
    "one round: the distribution-free interval of its iterations' median, which covers one "
    "time slot only"
)


def _estimate_of(rounds: Sequence[dict]) -> dict[str, object]:
    if len(rounds) >= 2:
        return latency_estimate([r["stats"]["median_ms"] for r in rounds]).to_dict()
    stats = rounds[0]["stats"]
    return Estimate(
        stats["median_ms"],
        stats["median_ci95_low_ms"],
        stats["median_ci95_high_ms"],
        1,
        ONE_SLOT_LATENCY,
    ).to_dict()


def _derived(section: dict, batch_size: int, flops_per_sample: float | None) -> dict:
    """The figures that follow from the samples and the rounds."""
    rounds = section["rounds"]
    section["stats"] = summarize(section["samples_ms"]).to_dict()
    section["estimate"] = estimate = _estimate_of(rounds)
    latency = float(estimate["value"])  # type: ignore[arg-type]
    section["throughput_sps"] = throughput_sps(batch_size, latency)
    section["achieved_gflops_per_s"] = achieved_gflops_per_s(flops_per_sample, batch_size, latency)
    return section


def round_section(
    *,
    scope: str,
    scope_description: str,
    config: dict,
    samples_ms: list[float],
    warmup_iters: int,
    warmup_s: float,
    measure_s: float,
    batch_size: int,
    flops_per_sample: float | None,
    round_index: int = 1,
    position: int | None = None,
    load_ms: float | None = None,
    cold_ms: float | None = None,
    noise: dict | None = None,
    threads: dict | None = None,
) -> dict:
    """The timing section of one round (one process's measurement)."""
    record = {
        "round": round_index,
        "position": position,
        "load_ms": load_ms,
        "cold_ms": cold_ms,
        "warmup_iters": warmup_iters,
        "warmup_s": warmup_s,
        "measure_s": measure_s,
        "samples": [0, len(samples_ms)],
        "stats": summarize(samples_ms).to_dict(),
        "noise": noise,
        # The threads the OS saw working (bench.measure.threads); None: in another process.
        "threads": threads,
        "gc": "collected before the measurement, disabled during it",
    }
    section = {
        # The host scope's first round says how long loading took; the compute-only scope
        # re-times the same session and has no load of its own.
        **({"load_ms": load_ms, "cold_ms": cold_ms} if load_ms is not None else {}),
        "scope": scope,
        "scope_description": scope_description,
        "config": config,
        "warmup_iters": warmup_iters,
        "warmup_s": warmup_s,
        "measure_s": measure_s,
        "samples_ms": list(samples_ms),
        "rounds": [record],
    }
    return _derived(section, batch_size, flops_per_sample)


def merge_rounds(sections: Sequence[dict], batch_size: int, flops: float | None) -> dict:
    """One section from the sections of a cell's rounds (each from `round_section` or an
    earlier merge), in round order."""
    if not sections:
        raise ValueError("no rounds to merge")
    samples: list[float] = []
    records: list[dict] = []
    for section in sorted(sections, key=lambda s: s["rounds"][0]["round"]):
        for record in section["rounds"]:
            start, end = record["samples"]
            records.append({**record, "samples": [len(samples), len(samples) + end - start]})
            samples.extend(section["samples_ms"][start:end])
    first = sections[0]
    merged = {
        **{k: first[k] for k in ("scope", "scope_description", "config")},
        **(
            {"load_ms": records[0]["load_ms"], "cold_ms": records[0]["cold_ms"]}
            if "load_ms" in first
            else {}
        ),
        "warmup_iters": sum(r["warmup_iters"] for r in records),
        "warmup_s": sum(r["warmup_s"] for r in records),
        "measure_s": sum(r["measure_s"] for r in records),
        "samples_ms": samples,
        "rounds": records,
    }
    return _derived(merged, batch_size, flops)


def round_medians(section: dict | None) -> dict[int, float]:
    """Round index -> that round's median (ms), for paired ratios."""
    if not section:
        return {}
    return {r["round"]: r["stats"]["median_ms"] for r in section.get("rounds", [])}


def round_samples(section: dict, record: dict) -> list[float]:
    """One round's own iterations."""
    start, end = record["samples"]
    return section["samples_ms"][start:end]
