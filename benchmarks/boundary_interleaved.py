#!/usr/bin/env python3
"""Python API against ctypes in one process, in interleaved blocks: the boundary's cost on a
real model, with the machine's drift spread over both ways instead of falling on one cell.

    .venv/bin/python benchmarks/boundary_interleaved.py --model resnet50 \
        [--framework openvino|torch|onnxruntime|tvm] [--threads 2] [--rounds 40] [--block 10] \
        [--out DIR] [--naive-ctypes]

The matrix runs cells one after another, so on a machine whose speed drifts by several percent
between minutes (this 2-core VM) the difference between two cells mixes the boundary with the
drift. Here both ways load the same artifact once, warm up, then alternate blocks of `--block`
calls for `--rounds` rounds; each call is timed alone. Writes `<framework>-<model>.json` (every
latency, the environment) into `--out`, records the command in the folder's `manifest.json`
(one entry per file), and prints the medians.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.artifact import find_artifact
from bench.backends import BACKENDS
from bench.cell import Cell
from bench.fsutil import atomic_write_text
from bench.measure.fingerprint import fingerprint
from bench.native import FRAMEWORKS as NATIVE_FRAMEWORKS

WARMUP_CALLS = 10


def interleave(ways: dict[str, Callable[[], object]], rounds: int, block: int) -> dict:
    """Every way's latencies (ms), measured in alternating blocks after a warm-up."""
    for call in ways.values():
        for _ in range(WARMUP_CALLS):
            call()
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, call in ways.items():
            for _ in range(block):
                t0 = time.perf_counter_ns()
                call()
                samples[name].append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def record_in_manifest(file: Path, started: str, environment: dict) -> None:
    """Add (or replace) this file's entry in its folder's manifest.json."""
    path = file.parent / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"kind": "boundary-interleaved"}
    runs = [r for r in manifest.get("runs", []) if r["file"] != file.name]
    runs.append(
        {
            "file": file.name,
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "started_at": started,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": environment,
        }
    )
    manifest["runs"] = sorted(runs, key=lambda r: r["file"])
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--framework", default="openvino", choices=list(NATIVE_FRAMEWORKS))
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--out", default="results/boundary-interleaved")
    parser.add_argument(
        "--naive-ctypes",
        action="store_true",
        help="also the ctypes call with marshal=lists (input and outputs through Python lists)",
    )
    args = parser.parse_args()

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    artifact = find_artifact(args.artifacts, args.model)
    x = np.ascontiguousarray(artifact.inputs[:1])
    feed = {artifact.input_name: x}
    backends = {}
    ctypes_variant = f"{args.framework}-ctypes"
    ways = [(args.framework, ()), (ctypes_variant, ())]
    if args.naive_ctypes:  # the ctypes call with its input and outputs through Python lists
        ways.append((ctypes_variant, (("marshal", "lists"),)))
    for name, options in ways:
        cell = Cell(model=artifact.model, framework=name, threads=args.threads, options=options)
        label = name + "".join(f"[{k}={v}]" for k, v in options)
        backends[label] = BACKENDS.get(name).load_class()(artifact, cell)
        backends[label].load()
    ways = {name: (lambda b=b: b.infer(feed)) for name, b in backends.items()}
    samples = interleave(ways, args.rounds, args.block)
    summary = {
        name: {
            "median_ms": float(np.median(v)),
            "p10_ms": float(np.percentile(v, 10)),
            "p90_ms": float(np.percentile(v, 90)),
            "n": len(v),
        }
        for name, v in samples.items()
    }
    doc = {
        "command": " ".join(sys.argv),
        "model": args.model,
        "artifact": artifact.summary(),
        "threads": args.threads,
        "rounds": args.rounds,
        "block": args.block,
        "runtime": {name: b.runtime_info() for name, b in backends.items()},
        "summary": summary,
        "samples_ms": samples,
        "environment": fingerprint(),
    }
    for b in backends.values():
        b.close()
    out = Path(args.out) / f"{args.framework}-{args.model}.json"
    atomic_write_text(out, json.dumps(doc, indent=1, default=str))
    record_in_manifest(out, started, doc["environment"])
    for name, s in summary.items():
        spread = f"p10 {s['p10_ms']:.3f}  p90 {s['p90_ms']:.3f}  n={s['n']}"
        print(f"{name:36s} median {s['median_ms']:.3f} ms  {spread}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
