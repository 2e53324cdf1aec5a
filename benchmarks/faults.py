#!/usr/bin/env python3
"""Fault injection: a small matrix through the Docker executor while things go wrong, then
resumed; what was lost, corrupted or left behind.

    sudo .venv/bin/python benchmarks/faults.py [--repeats 3] [--faults crash,sigkill,...]
        [--engine private|host] [--out results/faults-docker]

Each fault runs `--repeats` times, each time a fresh run of a 2-cell matrix (mobilenet_v3_small
through onnxruntime and openvino; for the cache fault openvino fp32 and int8, NNCF's IR cached)
by a real `python -m runner run` subprocess, then `--resume` without the fault:

- crash, hang, oom, nan: the cell segfaults, hangs past the cell timeout, runs out of memory,
  returns NaN (`DEPLOYBENCH_FAULT`, one framework's cells);
- sigkill, sigterm: the runner is killed / terminated while a cell runs;
- engine-restart: the Docker daemon restarts while a cell runs (`--engine private`, the default:
  a dockerd of the benchmark's own, so that nobody else's containers are touched);
- disk-full: the results folder (a small tmpfs) fills up while the run goes on;
- cache-corrupt: the cached int8 model (NNCF's IR) is poisoned between two runs.

Per fault it prints cells run, results lost (reported finished but not readable after the
fault, or missing after the resume), results corrupt (not valid against the schema, or
half-written), stray temporary files, containers left after the fault and after the resume,
whether the exit codes were the documented ones, and whether the resumed run completed. Writes
faults.json, faults.md and manifest.json (host, CPU, engine, command) into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_engine import PrivateEngine, fill, require_root, run_containers, tmpfs
from fault_tally import Tally, finished_cells, inspect_run, started_cells, table

from bench.fsutil import atomic_write_text
from bench.measure.fingerprint import fingerprint, git_revision
from runner.images import DEFAULT_BASE, OFFLINE_BASE

REPO = Path(__file__).resolve().parents[1]
FAULTS = (
    "crash",
    "hang",
    "oom",
    "nan",
    "sigkill",
    "sigterm",
    "engine-restart",
    "disk-full",
    "cache-corrupt",
)
# The fault as DEPLOYBENCH_FAULT sets it, and the exit code the README documents for the run.
IN_CELL = {"crash": "crash:onnxruntime", "hang": "hang:onnxruntime", "oom": "oom:onnxruntime"}
IN_CELL["nan"] = "nan:openvino"
EXPECTED_CODE = {"crash": 1, "hang": 1, "oom": 1, "nan": 0, "sigkill": -9, "sigterm": 143}
EXPECTED_CODE |= {"engine-restart": 1, "disk-full": 2, "cache-corrupt": 0}
MATRIX = """
name: faults
models: [mobilenet_v3_small]
frameworks: {frameworks}
devices: [cpu]
batch_sizes: [1]
precisions: {precisions}
threads: 1
memory_limit: 1g
cell_timeout_s: 25
timing: {{warmup_iters: 2, warmup_seconds: 0, iters: 20, seconds: 0.5}}
"""
# Large enough for the runner's preflight (64 MiB free) and a few results and logs.
SMALL_DISK = "80m"


class FaultBench:
    def __init__(self, args: argparse.Namespace, engine: PrivateEngine | None) -> None:
        self.args, self.engine = args, engine
        self.work = Path(args.work)
        self.host = engine.host if engine else os.environ.get("DOCKER_HOST", "")
        self.client = docker.DockerClient(base_url=self.host) if self.host else docker.from_env()
        self.cache = self.work / "cache"
        self.artifacts = self.work / "artifacts"

    # -- running the runner ------------------------------------------------------------------
    def _matrix(self, cache_fault: bool) -> Path:
        path = self.work / ("cache.yaml" if cache_fault else "matrix.yaml")
        frameworks, precisions = (
            ("[openvino]", "[fp32, int8]") if cache_fault else ("[onnxruntime, openvino]", "[fp32]")
        )
        path.write_text(MATRIX.format(frameworks=frameworks, precisions=precisions))
        return path

    def _command(self, matrix: Path, results: Path, run_id: str) -> list[str]:
        cmd = [sys.executable, "-m", "runner", "run", "--matrix", str(matrix)]
        cmd += ["--executor", "docker", "--no-export", "--artifacts", str(self.artifacts)]
        cmd += ["--results", str(results), "--run-id", run_id, "--cache", str(self.cache)]
        return [*cmd, "--base-image", self.args.base_image]

    def _env(self, fault_env: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DEPLOYBENCH_FAULT"}
        env["PYTHONPATH"] = str(REPO)
        if self.host:
            env["DOCKER_HOST"] = self.host
        if fault_env:
            env["DEPLOYBENCH_FAULT"] = fault_env
        return env

    def _start(self, cmd: list[str], fault_env: str | None) -> subprocess.Popen:
        return subprocess.Popen(
            cmd,
            env=self._env(fault_env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def _wait_for_cell(
        self, run_id: str, cell: str, proc: subprocess.Popen, timeout_s: float = 300
    ) -> None:
        """Until `cell` (the one that hangs) runs in its container."""
        label = [f"ai.deploybench.run={run_id}", f"ai.deploybench.cell={cell}"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if self.client.containers.list(filters={"label": label, "status": "running"}):
                time.sleep(2)  # well inside the cell
                return
            time.sleep(0.3)
        raise RuntimeError(f"{run_id}: no cell container ran")

    # -- one repetition of one fault ---------------------------------------------------------
    def once(self, fault: str, rep: int, tally: Tally) -> None:
        run_id = f"{fault}-{rep}"
        cache_fault = fault == "cache-corrupt"
        matrix = self._matrix(cache_fault)
        cells = [
            f"mobilenet_v3_small-{fw}-cpu-{p}-b1"
            for fw, p in (
                (("openvino", "fp32"), ("openvino", "int8"))
                if cache_fault
                else (("onnxruntime", "fp32"), ("openvino", "fp32"))
            )
        ]
        results = self.work / "results"
        disk = None
        if fault == "disk-full":
            disk = tmpfs(self.work / f"disk-{rep}", SMALL_DISK)
            results = disk.__enter__()
        try:
            self._repeat(fault, run_id, matrix, results, cells, tally)
        finally:
            if disk is not None:
                disk.__exit__(None, None, None)

    def _repeat(
        self, fault: str, run_id: str, matrix: Path, results: Path, cells: list[str], t: Tally
    ) -> None:
        cmd = self._command(matrix, results, run_id)
        if fault == "cache-corrupt":
            self._poison_cache(matrix, results, run_id, t)
        proc = self._start(
            cmd,
            IN_CELL.get(fault)
            or ("hang:openvino" if fault in ("sigkill", "sigterm", "engine-restart") else None),
        )
        filler = None
        if fault in ("sigkill", "sigterm", "engine-restart"):
            self._wait_for_cell(run_id, cells[1], proc)
            if fault == "sigkill":
                proc.kill()
            elif fault == "sigterm":
                proc.send_signal(signal.SIGTERM)
            else:
                self.engine.restart()
        elif fault == "disk-full":
            first = results / run_id / "cells" / f"{cells[0]}.json"
            while not first.exists() and proc.poll() is None:
                time.sleep(0.1)
            filler = fill(results)
        _, err = proc.communicate(timeout=900)
        t.cells_run += started_cells(err)
        run_dir = results / run_id
        lost, corrupt, stray = inspect_run(run_dir, finished_cells(err), cells)
        t.containers_after_fault += run_containers(self.client, run_id)
        code_ok = proc.returncode == EXPECTED_CODE[fault]
        if fault == "disk-full":
            code_ok = code_ok and "no space left on the device" in err
            filler.unlink()
        if fault == "cache-corrupt":
            code_ok = code_ok and "does not match its manifest: rebuilding it" in "".join(
                p.read_text() for p in (run_dir / "logs").glob("*int8*.log")
            )
        if not code_ok:
            t.notes.append(f"{run_id}: exit {proc.returncode}: {err.strip()[-300:]}")
        # The resume, without the fault: it must finish the run and keep what was finished.
        done = subprocess.run(
            [*cmd, "--resume"], env=self._env(None), capture_output=True, text=True, timeout=900
        )
        t.cells_run += started_cells(done.stderr)
        lost2, corrupt2, stray2 = inspect_run(run_dir, cells, cells)
        t.results_lost += lost + lost2
        t.results_corrupt += corrupt + corrupt2
        t.stray_temp_files += stray + stray2
        t.containers_left += run_containers(self.client, run_id)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        complete = done.returncode == 0 and manifest["state"] == "complete" and not lost2
        t.resumed_complete += complete
        t.exit_codes_as_documented += code_ok
        if not complete:
            t.notes.append(f"{run_id} resume: exit {done.returncode}: {done.stderr[-300:]}")
        t.repeats += 1

    def _poison_cache(self, matrix: Path, results: Path, run_id: str, t: Tally) -> None:
        """A clean run fills the cache; then the cached int8 model is changed in place."""
        clean = subprocess.run(
            self._command(matrix, results, f"{run_id}-fill"),
            env=self._env(None),
            capture_output=True,
            text=True,
            timeout=900,
        )
        t.cells_run += started_cells(clean.stderr)
        graphs = sorted(self.cache.glob("openvino-nncf/*/*.bin"))  # NNCF's int8 weights
        if clean.returncode != 0 or not graphs:
            raise RuntimeError(f"the cache run failed: {clean.stderr[-2000:]}")
        for graph in graphs:
            data = bytearray(graph.read_bytes())
            middle = len(data) // 2
            data[middle : middle + 4096] = bytes(4096)  # weights zeroed, the size kept
            graph.write_bytes(bytes(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset")
    parser.add_argument("--engine", choices=("private", "host"), default="private")
    parser.add_argument("--work", default="/tmp/deploybench-faults")
    parser.add_argument("--out", default="results/faults-docker")
    parser.add_argument("--base-image", default=None)
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    if unknown := sorted(set(faults) - set(FAULTS)):
        parser.error(f"unknown faults {unknown}; valid: {', '.join(FAULTS)}")
    if "engine-restart" in faults and args.engine != "private":
        parser.error("engine-restart restarts a Docker daemon: only with --engine private")
    require_root()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    host_client = docker.from_env()
    if args.base_image is None:
        tags = {t for image in host_client.images.list() for t in image.tags}
        args.base_image = OFFLINE_BASE if OFFLINE_BASE in tags else DEFAULT_BASE
    shutil.rmtree(args.work, ignore_errors=True)
    work = Path(args.work)
    work.mkdir(parents=True)
    py = [sys.executable]
    export = ["export", "--model", "mobilenet_v3_small", "--artifacts", str(work / "artifacts")]
    subprocess.run([*py, "-m", "bench", *export], check=True, cwd=REPO)
    engine, env = None, dict(os.environ)
    if args.engine == "private":
        engine = PrivateEngine()
        engine.remove()
        engine.start()
        env["DOCKER_HOST"] = engine.host
    try:
        if engine:
            # Its images are built in it from this tree, only the base copied: the host engine's
            # tags can change under a long benchmark (anybody's build retags them).
            engine.copy_images([args.base_image])
        images = ["images", "ort-cpu", "ov-cpu", "--base-image", args.base_image]
        subprocess.run([*py, "-m", "runner", *images], check=True, cwd=REPO, env=env)
        bench = FaultBench(args, engine)
        tallies = []
        for fault in faults:
            tally = Tally(fault)
            for rep in range(1, args.repeats + 1):
                bench.once(fault, rep, tally)
                print(f"{fault} {rep}/{args.repeats}: {asdict(tally)}", file=sys.stderr, flush=True)
            tallies.append(tally)
        version = bench.client.version().get("Version")
    finally:
        if engine:
            engine.remove()
    text = table(tallies)
    print(text)
    out = Path(args.out)
    host = fingerprint()
    atomic_write_text(
        out / "faults.json", json.dumps([asdict(t) for t in tallies], indent=2) + "\n"
    )
    atomic_write_text(out / "faults.md", f"# Fault injection, {host['cpu']['summary']}\n\n{text}\n")
    manifest = {
        "kind": "faults",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "engine": {"kind": args.engine, "docker_version": version, "base_image": args.base_image},
        "host": host,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
    bad = [t for t in tallies if t.results_lost or t.results_corrupt or t.containers_left]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
