#!/usr/bin/env python3
"""TVM at a tuning budget, and the curve that shows what the budget buys.

    .venv/bin/python benchmarks/tvm_tuning.py --model mobilenet_v3_large --trials 1024 \
        [--per-task 16] [--chunk N] [--threads 2] [--out results/tvm-tuning] [--curve-only] \
        [--database-root tuning/tvm]

Tunes the model for this machine's exact target (`host_target`: its `mcpu` and thread count)
the way the `tvm` backend does (MetaSchedule on the prepared module with CPU weight
prepacking, the backend's build function) into the committed database folder for that target
(`tuning/tvm/<target id>/<model>-b1/`, bench/backends/tvm_database.py, with its
`provenance.json`), which matrices on the same target then apply. MetaSchedule writes
the database when a call ends, so each call (`--chunk` trials; default: the whole budget) is a
checkpoint, and a later run with a larger `--trials` adds to it. But each call starts its task
order afresh, so a continuation (or small chunks) spends its trials on the first tasks again —
measured here: chunks of 64 trials on mobilenet_v3_large put all their records on 7
of its 71 tasks and bought about 5%. Then, for 0, 64, 128, ... trials (the database's first
k records in tuning order, `bench/backends/tvm_tuning.py`), it compiles the model, measures
it (the project's timing loop) and checks parity against the artifact's reference outputs,
and writes `OUT/<model>/curve.json` (every point, the tuning seconds each chunk cost, the
target, TVM's version and the host) and `curve.md`. Long runs belong in the background: a
trial costs seconds here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.artifact import find_artifact
from bench.backends import tvm_database, tvm_tuning
from bench.measure.fingerprint import fingerprint
from bench.measure.parity import compare
from bench.measure.timing import TimingConfig, time_calls

TIMING = TimingConfig(
    warmup_min_iters=3, warmup_min_s=1.0, min_iters=10, min_s=2.0, max_iters=1000, max_s=30.0
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def measure(artifact: object, executable: object, weights: list, prepack: bool) -> dict:
    """Latency (batch 1) and parity of one compiled module on the artifact's photos."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    if prepack:
        weights = list(vm["main_transform_params"](weights))
    main = vm["main"]

    def run(x: np.ndarray) -> np.ndarray:
        return main(tvm.runtime.tensor(x), *weights).numpy()

    outputs = np.concatenate([run(artifact.inputs[i : i + 1]) for i in range(len(artifact.inputs))])
    name = artifact.output_names[0]
    report = compare({name: outputs}, {name: artifact.references[name]}, "fp32", name)
    first = np.ascontiguousarray(artifact.inputs[:1])
    timing = time_calls(lambda: run(first), TIMING)
    return {
        **tvm_tuning.summarise_latencies(timing.samples_ms),
        "parity": report.verdict,
        "rel_l2": report.outputs[0].rel_l2,
        "top1_agreement": report.top1_agreement,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--trials", type=int, required=True, help="the database's total budget")
    parser.add_argument(
        "--chunk",
        type=int,
        help="trials per MetaSchedule call (default: the whole budget in one call; each call "
        "starts the task order afresh, so small chunks spend their trials on the first tasks)",
    )
    parser.add_argument("--per-task", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/tvm-tuning"))
    parser.add_argument("--curve-only", action="store_true", help="measure, do not tune")
    parser.add_argument(
        "--database-root",
        type=Path,
        default=tvm_database.REPO_TUNING,
        help="where the databases are kept, one folder per target and model (default: the "
        "repository's tuning/tvm, which matrices apply)",
    )
    args = parser.parse_args()
    args.chunk = args.chunk or max(1, args.trials)
    if args.trials < 0 or args.chunk < 1 or args.per_task < 1 or args.threads < 1:
        parser.error("--trials must be >= 0; --chunk, --per-task and --threads >= 1")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import onnx
    import tvm

    from bench.backends.tvm import host_target, import_onnx, prepare_for_tuning

    artifact = find_artifact(args.artifacts, args.model)
    out = args.out / args.model
    out.mkdir(parents=True, exist_ok=True)
    target_dict = host_target(args.threads)
    db_dir = tvm_database.database_dir(args.database_root, target_dict, args.model, 1)
    db_dir.mkdir(parents=True, exist_ok=True)
    target = tvm.target.Target(target_dict)
    shape = [1, *artifact.inputs.shape[1:]]
    mod, params = import_onnx(onnx.load(str(artifact.onnx_path)), {artifact.input_name: shape})
    weights = list(params.get("main", []))
    progress_path = db_dir / tvm_database.PROVENANCE
    progress = tvm_tuning.read_json(progress_path) or {"chunks": []}
    if progress.get("target", target_dict) != target_dict:  # a folder copied by hand
        parser.error(f"{db_dir} was tuned for another target: {progress['target']}")
    if progress.get("tvm", tvm.__version__) != tvm.__version__:
        parser.error(f"{db_dir} was tuned with TVM {progress['tvm']}, this is {tvm.__version__}")
    prepared = prepare_for_tuning(mod, target, prepack=True)
    progress.update(
        target=target_dict,
        tvm=tvm.__version__,
        model=args.model,
        batch=1,
        artifact_key=artifact.key,
        host_cpu=fingerprint()["cpu"].get("summary"),
    )
    tasks = tvm.s_tir.meta_schedule.relax_integration.extract_tasks(prepared, target)
    progress["tasks"] = len(tasks)
    while not args.curve_only and tvm_tuning.record_count(db_dir) < args.trials:
        chunk = min(args.chunk, args.trials - tvm_tuning.record_count(db_dir))
        seconds = tvm_tuning.tune_chunk(
            prepared, target, db_dir, chunk, args.per_task, args.threads
        )
        before = progress["chunks"][-1]["records_after"] if progress["chunks"] else 0
        after = tvm_tuning.record_count(db_dir)
        progress["chunks"].append(
            {"trials": chunk, "per_task": args.per_task, "records_after": after, "seconds": seconds}
        )
        progress.update(tvm_tuning.provenance_totals(progress["chunks"]), tuned_at=now())
        progress["command"] = " ".join(sys.argv)
        tvm_tuning.write_json(progress_path, progress)  # the checkpoint's own record
        print(f"tuned {after} records ({seconds:.0f} s)", flush=True)
        if after <= before:  # every task at its per-task limit: more trials measure nothing
            print(f"no new records: every task has --per-task {args.per_task}", flush=True)
            break
    # MetaSchedule's per-task logs (tens of MB) stay out of the committed folder.
    shutil.rmtree(db_dir / "logs", ignore_errors=True)
    records = tvm_tuning.record_count(db_dir)
    points = []
    for k in tvm_tuning.curve_points(records):
        with tempfile.TemporaryDirectory(prefix="deploybench-tvm-curve-") as tmp:
            db = None
            if k:
                db = Path(tmp) / "db"
                tvm_tuning.truncated_database(db_dir, db, k)
            executable = tvm_tuning.compile_tuned(mod, target, db)
            point = {"records": k, **measure(artifact, executable, weights, prepack=bool(k))}
        points.append(point)
        print(f"{k:6d} records: {point['median_ms']:.2f} ms, parity {point['parity']}", flush=True)
    doc = {
        "command": " ".join(sys.argv),
        "finished_at": now(),
        "model": args.model,
        "artifact": artifact.summary(),
        "per_task": sorted({c.get("per_task", args.per_task) for c in progress["chunks"]}),
        "progress": progress,
        "database": str(db_dir.relative_to(args.database_root)),  # under tuning/tvm/
        "points": points,
        "host": fingerprint(),
    }
    tvm_tuning.write_json(out / "curve.json", doc)
    (out / "curve.md").write_text(tvm_tuning.curve_markdown(doc))
    print(tvm_tuning.curve_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
