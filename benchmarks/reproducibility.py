#!/usr/bin/env python3
"""Do the answers survive a rerun? Independent runs of the same cells, their speed-ups over
torch, how far apart the runs land, whether each run's interval holds the others' estimates,
and what `compare` says of identical runs and of a known 10% slowdown.

    .venv/bin/python benchmarks/reproducibility.py [--runs 5] [--rounds 5]
        [--executor docker|local] [--phases single,quiet,slow,noisy] [--out DIR]

Cells: resnet50 and mobilenet_v3_large through torch, onnxruntime and openvino, batch 1, fp32,
every framework with the machine's threads (benchmarks/reproducibility.yaml, the quick profile's
timing per round). Phases, each `--runs` independent runs one after another:

- `single`: one round per cell with the quick profile's former measurement (3 s): how the tool
  measured before rounds, for contrast;
- `quiet`: `--rounds` rounds per cell, the machine otherwise idle;
- `slow`: as quiet, with every timed call made 10% slower (DEPLOYBENCH_FAULT=slow=0.10);
  `compare` of quiet run k against slow run k must find it;
- `noisy`: as quiet, with a noisy neighbour: one process pinned to the last usable CPU, busy for
  0.05-0.5 s then idle for 0.05-0.5 s (uniform, seeded), for the whole run — a bounded load
  of about half a core, of the kind a shared VM has.

Writes into `--out`: every run's folder under runs/ (merged cell results and manifest; round
files and logs are dropped after the run: the merged results hold every round's samples and
telemetry), summary.json and summary.md, and manifest.json (command, host, phases, run ids and
times). Nothing else may run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import yaml

from bench.fsutil import atomic_write_text
from bench.measure.fingerprint import fingerprint
from runner.executors import Executor, create_executor
from runner.matrix import Matrix, parse_matrix
from runner.orchestrate import MatrixRun, RunOptions
from runner.report.compare import compare_runs
from runner.report.runs import load_run
from runner.report.tables import reference, speedup

MATRIX = Path(__file__).with_name("reproducibility.yaml")
PHASES = ("single", "quiet", "slow", "noisy")
SLOWDOWN = 0.10
SINGLE_TIMING = {"warmup_iters": 10, "warmup_seconds": 1, "iters": 30, "seconds": 3}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def neighbour(cpu: int, seed: int) -> None:
    """The noisy neighbour: random bursts of work on one CPU, forever (killed by the caller)."""
    os.sched_setaffinity(0, {cpu})
    rng = random.Random(seed)
    while True:
        until = time.monotonic() + rng.uniform(0.05, 0.5)
        while time.monotonic() < until:
            pass
        time.sleep(rng.uniform(0.05, 0.5))


def phase_matrix(phase: str, rounds: int) -> Matrix:
    """The benchmark's matrix as a phase runs it (validated by the runner's one parser)."""
    doc = yaml.safe_load(MATRIX.read_text())
    doc["rounds"] = 1 if phase == "single" else rounds
    if phase == "single":
        doc["timing"] = {**doc["timing"], **SINGLE_TIMING}
    return parse_matrix(yaml.safe_dump(doc), str(MATRIX))


def run_once(phase: str, k: int, args: argparse.Namespace, executor: Executor) -> Path:
    matrix = phase_matrix(phase, args.rounds)
    env = {"DEPLOYBENCH_FAULT": f"slow={SLOWDOWN}"} if phase == "slow" else {}
    opts = RunOptions(
        run_id=f"{phase}-{k}",
        results_root=args.out / "runs",
        artifacts_dir=args.artifacts,
        env=env,
    )
    helper = None
    if phase == "noisy":
        cpu = sorted(os.sched_getaffinity(0))[-1]
        helper = multiprocessing.Process(target=neighbour, args=(cpu, k), daemon=True)
        helper.start()
    try:
        MatrixRun(matrix, executor, executor, opts, log=lambda m: print(m, flush=True)).run()
    finally:
        if helper:
            helper.terminate()
            helper.join()
    run_dir = opts.run_dir
    for bulky in ("rounds", "logs"):
        shutil.rmtree(run_dir / bulky, ignore_errors=True)
    return run_dir


def speedups(run_dirs: list[Path]) -> dict[str, list[dict]]:
    """Per compared pair (model, framework vs torch): each run's speed-up and interval."""
    out: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        results = load_run(run_dir).results
        for r in results:
            if r.status != "ok" or reference(r, results) in (None, r):
                continue
            up = speedup(r, results)
            key = f"{r.cell['model']} {r.cell['framework']}/torch"
            out.setdefault(key, []).append(
                {
                    "run": run_dir.name,
                    "speedup": up.value,
                    "low": up.low,
                    "high": up.high,
                    "verdict": up.verdict.word,
                    "one_slot": up.one_slot,
                }
            )
    return out


def spread(values: list[float]) -> float:
    """Half the range of the runs' estimates, relative to their geometric mean: ±x."""
    mean = float(np.exp(np.log(values).mean()))
    return (max(values) - min(values)) / 2 / mean


def containment(runs: list[dict]) -> tuple[int, int]:
    """(how often a run's interval holds another run's estimate, out of how many)."""
    held = total = 0
    for i, j in itertools.permutations(range(len(runs)), 2):
        total += 1
        held += runs[i]["low"] <= runs[j]["speedup"] <= runs[i]["high"]
    return held, total


def compare_counts(pairs: list[tuple[Path, Path]]) -> dict[str, int]:
    counts = {"cells": 0, "no significant change": 0, "slower": 0, "faster": 0, "regression": 0}
    for a, b in pairs:
        for change in compare_runs(load_run(a), load_run(b)):
            if change.ratio is None:
                continue
            counts["cells"] += 1
            counts[change.verdict] += 1
            counts["regression"] += change.regression
    return counts


def noisy_rounds(run_dirs: list[Path]) -> tuple[int, int]:
    noisy = total = 0
    for run_dir in run_dirs:
        for r in load_run(run_dir).results:
            for record in (r.timing or {}).get("rounds", []):
                total += 1
                noisy += bool((record.get("noise") or {}).get("noisy"))
    return noisy, total


def wall_s(run_dir: Path) -> float:
    m = json.loads((run_dir / "manifest.json").read_text())
    start, end = (datetime.fromisoformat(m[k]) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()


def summarize(phases: dict[str, list[Path]]) -> dict:
    summary: dict = {"phases": {}}
    for phase, runs in phases.items():
        ups = speedups(runs)
        pairs = {}
        for key, values in ups.items():
            held, total = containment(values)
            pairs[key] = {
                "runs": values,
                "spread": spread([v["speedup"] for v in values]),
                "contained": [held, total],
            }
        noisy, rounds = noisy_rounds(runs)
        summary["phases"][phase] = {
            "pairs": pairs,
            "noisy_rounds": [noisy, rounds],
            "wall_s": [wall_s(r) for r in runs],
        }
        if phase in ("single", "quiet", "noisy"):
            summary["phases"][phase]["compare_identical"] = compare_counts(
                list(itertools.combinations(runs, 2))
            )
    if "quiet" in phases and "slow" in phases:
        pairs = list(zip(phases["quiet"], phases["slow"], strict=True))
        summary["slowdown_found"] = compare_counts(pairs)
    return summary


def markdown(summary: dict, cpu: str) -> str:
    lines = [f"# Reproducibility ({cpu})", ""]
    for phase, data in summary["phases"].items():
        lines += [
            f"## {phase}",
            "",
            "| pair | runs: speed-up [95% CI] | spread | CI holds others |",
        ]
        lines += ["| --- | --- | --- | --- |"]
        for key, pair in data["pairs"].items():
            runs = "; ".join(
                f"{v['speedup']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"
                + ("*" if v["one_slot"] else "")
                for v in pair["runs"]
            )
            held, total = pair["contained"]
            lines.append(f"| {key} | {runs} | ±{pair['spread']:.1%} | {held}/{total} |")
        noisy, rounds = data["noisy_rounds"]
        walls = ", ".join(f"{w:.0f}" for w in data["wall_s"])
        lines += ["", f"noisy rounds: {noisy} of {rounds}; wall time per run (s): {walls}"]
        if "compare_identical" in data:
            c = data["compare_identical"]
            false = c["slower"] + c["faster"]
            lines.append(
                f"compare over all pairs of identical runs: {false} of {c['cells']} cells "
                f"called a change ({c['regression']} regressions)"
            )
        lines.append("")
    if "slowdown_found" in summary:
        c = summary["slowdown_found"]
        lines.append(
            f"## slowdown of {SLOWDOWN:.0%}\n\ncompare quiet run k against slow run k: "
            f"{c['slower']} of {c['cells']} cells slower, {c['regression']} regressions "
            f"(threshold 5%)\n"
        )
    lines.append("* one round: the interval covers one time slot (its iterations) only.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--executor", choices=("docker", "local"), default="docker")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--out", type=Path, default=Path("results/reproducibility"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--summary-only", action="store_true", help="re-summarise the runs")
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phases {unknown}; valid: {', '.join(PHASES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    host = fingerprint()
    if not args.summary_only:
        executor = create_executor(args.executor) if args.executor == "local" else None
        if executor is None:
            from runner.images import BuildSettings

            # As the Makefile builds: the offline base, torch from PyPI's default wheels (the
            # CPU index is unreachable on hosts without it; set TORCH_INDEX_URL to use it).
            base = os.environ.get("DEPLOYBENCH_BASE_IMAGE", "deploybench/base:bookworm")
            index = os.environ.get("TORCH_INDEX_URL", "")
            settings = BuildSettings(base_image=base, torch_index_url=index)
            executor = create_executor(
                "docker", settings=settings, cache_dir=Path("cache").resolve()
            )
        # Phases not asked for this time keep their runs, so that an interrupted benchmark is
        # finished by running only the phases it had not finished (--phases noisy).
        kept = {p: r for p, r in manifest.get("phases", {}).items() if p not in phases}
        manifest = {
            "kind": "reproducibility",
            "command": " ".join(sys.argv),
            "earlier_commands": [
                *manifest.get("earlier_commands", []),
                *([manifest["command"]] if kept and "command" in manifest else []),
            ],
            "started_at": manifest.get("started_at", now()) if kept else now(),
            "host": host,
            "executor": args.executor,
            "matrix": str(MATRIX.name),
            "rounds": args.rounds,
            "slowdown": SLOWDOWN,
            "phases": kept,
        }
        for phase in phases:
            manifest["phases"][phase] = []
            for k in range(1, args.runs + 1):
                run_dir = run_once(phase, k, args, executor)
                manifest["phases"][phase].append(run_dir.name)
                atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
        manifest["finished_at"] = now()
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    runs = {p: [args.out / "runs" / r for r in manifest["phases"][p]] for p in manifest["phases"]}
    summary = summarize(runs)
    cpu = manifest["host"]["cpu"].get("summary") or manifest["host"]["cpu"]["model"]
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    text = markdown(summary, cpu)
    atomic_write_text(args.out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
