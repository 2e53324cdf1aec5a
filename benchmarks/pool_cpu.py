"""Benchmark (not a test): the matrix on a pool of two Docker engines of this one machine.

Starts a second `dockerd` in a network namespace of its own (the test suite's helper,
tests/runner/engines.py) with an sshd there, writes an inventory — `here` (this machine's
engine, unix socket, CPU 0) and `far` (the second engine over ssh://, CPU 1) — runs
benchmarks/pool-cpu.yaml on it (`hosts: {each: true}`: every cell on both), writes the report,
and stops the engine. The images go to the second engine through the API (loaded from this
one), the artifact into a volume there, the results come back through the API.

    .venv/bin/python benchmarks/pool_cpu.py [--run-id pool-cpu-r1] [extra `runner run` args]

Needs root, iproute2, util-linux (nsenter), openssl, openssh-server and a running local engine
with the base image (`make base`); 2 CPUs at least.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "runner"))

from engines import Engine, engines_available, make_certificates, start_sshd  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-id", default="pool-cpu-r1")
    parser.add_argument("--results", type=Path, default=REPO / "results")
    args, extra = parser.parse_known_args()
    if why := engines_available():
        print(f"cannot start a second engine here: {why}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="deploybench-pool-"))
    engine = Engine(index=51, root=root / "far")
    certs = make_certificates(root / "certs", [engine.ip])
    engine.start(certs)
    home = root / "home"
    sshd = start_sshd(engine, home)
    inventory = root / "hosts.yaml"
    inventory.write_text(
        "hosts:\n"
        '  - {name: here, address: "unix:///var/run/docker.sock", cpusets: ["0"]}\n'
        f'  - {{name: far, address: "ssh://root@{engine.ip}", cpusets: ["1"]}}\n'
    )
    try:
        base = "deploybench/base:bookworm"
        cmd = [
            sys.executable, "-m", "runner", "run", "--matrix", "benchmarks/pool-cpu.yaml",
            "--hosts", str(inventory), "--base-image", base, "--torch-index-url", "",
            "--results", str(args.results), "--run-id", args.run_id, *extra,
        ]  # fmt: skip
        # HOME: the ssh client's key and known host; the host's caches (prefetched wheels) stay
        # where they were.
        caches = os.environ.get("DEPLOYBENCH_CACHE", str(Path.home() / ".cache" / "deploybench"))
        env = {**os.environ, "HOME": str(home), "DEPLOYBENCH_CACHE": caches}
        code = subprocess.run(cmd, cwd=REPO, env=env).returncode
        run_dir = args.results / args.run_id
        if run_dir.is_dir():
            shutil.copy(inventory, run_dir / "hosts.yaml")  # what the pool was
            subprocess.run([sys.executable, "-m", "runner", "report", str(run_dir)], cwd=REPO)
        return code
    finally:
        sshd.terminate()
        sshd.wait(timeout=30)
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
