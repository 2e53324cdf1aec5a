"""TVM's tuning budget as a curve: MetaSchedule run in chunks into one database (a checkpoint
after each), and the latency each prefix of the database's records gives.

MetaSchedule's JSON database keeps its records in the order they were measured (one JSON line
each in `database_tuning_record.json`, the workloads in `database_workload.json`). The first k
lines are therefore the database as it stood after k measured candidates, and compiling with
them (TVM's `static_shape_tuning_pipeline`, CPU weight prepacking, as the backend does) gives
the model as tuned with that budget — the curve needs one tuning run, not one per point.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

RECORDS = "database_tuning_record.json"
WORKLOADS = "database_workload.json"


def record_count(db_dir: Path) -> int:
    path = db_dir / RECORDS
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def truncated_database(source: Path, dest: Path, records: int) -> int:
    """Copy `source`'s database into `dest` with only its first `records` records (in tuning
    order; every workload kept: a record refers to its workload by index). Returns how many
    records `dest` holds."""
    lines = [line for line in (source / RECORDS).read_text().splitlines() if line.strip()]
    kept = lines[: max(0, records)]
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / WORKLOADS, dest / WORKLOADS)
    (dest / RECORDS).write_text("".join(line + "\n" for line in kept))
    return len(kept)


def tune_chunk(
    mod: object, target: object, db_dir: Path, trials: int, per_task: int, threads: int
) -> float:
    """`trials` more MetaSchedule trials into the database in `db_dir`; returns the seconds."""
    from tvm.s_tir import meta_schedule as ms

    from bench.backends.tvm_search import tuning_workers

    started = time.perf_counter()
    ms.relax_integration.tune_relax(
        mod,
        {},
        target,
        str(db_dir),
        trials,
        max_trials_per_task=per_task,
        **tuning_workers(threads),
        seed=int(record_count(db_dir)),  # a new seed per chunk: not the same candidates again
    )
    return time.perf_counter() - started


def compile_tuned(mod: object, target: object, db_dir: Path | None) -> object:
    """The module compiled with the database in `db_dir` (None: untuned), as the backend does."""
    import tvm
    from tvm import relax

    if db_dir is not None:
        mod = relax.pipeline.static_shape_tuning_pipeline(
            0, target, str(db_dir), cpu_weight_prepack=True
        )(mod)
    return tvm.compile(mod, target=target)


def provenance_totals(chunks: list[dict]) -> dict[str, object]:
    """What a committed database's provenance says about its budget, from its chunks: the
    measured candidates, the trials-per-task limit (the largest any chunk used) and the
    seconds of tuning."""
    return {
        "records": chunks[-1]["records_after"] if chunks else 0,
        "per_task": max((c["per_task"] for c in chunks), default=0),
        "tuning_s": sum(c["seconds"] for c in chunks),
    }


def curve_points(total: int, first: int = 64) -> list[int]:
    """0, first, 2*first, 4*first, ... up to `total`, which always ends the list."""
    points, k = [0], first
    while k < total:
        points.append(k)
        k *= 2
    if total > 0:
        points.append(total)
    return points


def summarise_latencies(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, float)
    return {"median_ms": float(np.median(values)), "n": int(values.size)}


def write_json(path: Path, doc: dict) -> None:
    from bench.fsutil import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=1, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def tuning_seconds_until(chunks: list[dict], records: int) -> float | None:
    """The tuning time the database had cost when it held `records` records (None: it never
    did in these chunks). One MetaSchedule call reports its time as a whole: within a chunk,
    the time is shared out in proportion to its records (an estimate, said so in the table)."""
    if records == 0:
        return 0.0
    total, before = 0.0, 0
    for chunk in chunks:
        after = chunk["records_after"]
        if after >= records:
            share = (records - before) / (after - before) if after > before else 1.0
            return total + share * chunk["seconds"]
        total, before = total + chunk["seconds"], after
    return None


def curve_markdown(doc: dict) -> str:
    """The curve as a table, and where the seed's budget (800 trials per task) would lie."""
    progress = doc["progress"]
    chunks = progress.get("chunks", [])
    lines = [
        f"TVM {progress.get('tvm')} on {doc['model']}, target {progress.get('target')}, "
        f"{progress.get('tasks')} tuning tasks, at most {doc['per_task']} trials per task "
        "(per chunk)",
        "",
        "| measured candidates | tuning s (pro rata within a call) | median ms | parity | rel L2 "
        "| top-1 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in doc["points"]:
        spent = tuning_seconds_until(chunks, p["records"])
        lines.append(
            f"| {p['records']} | {'-' if spent is None else f'{spent:.0f}'} "
            f"| {p['median_ms']:.2f} | {p['parity']} | {p['rel_l2']:.1e} "
            f"| {p['top1_agreement']:.3f} |"
        )
    # A trial is a measured candidate: a call asked for more than MetaSchedule measured when
    # its tasks reached their per-task limit.
    measured = chunks[-1]["records_after"] if chunks else 0
    if measured and progress.get("tasks"):
        per_trial = sum(c["seconds"] for c in chunks) / measured
        seed = 800 * progress["tasks"]
        lines += [
            "",
            f"{per_trial:.1f} s per measured candidate here: the seed's budget of 800 x "
            f"{progress['tasks']} tasks = {seed} trials would take about "
            f"{seed * per_trial / 3600:.0f} hours (extrapolated from this run, not measured).",
        ]
    return "\n".join(lines) + "\n"
