"""A one-machine Slurm cluster for the slurm executor's tests: munged, slurmctld and slurmd
(Debian's slurm-wlm and munge) started here with a munge key, sockets, ports, state and logs of
their own in a temporary folder, and stopped at the end: no system configuration is read or
written, nothing is left running.

The node is this machine, with its real CPUs and memory (as `slurmd -C` reports them). There is
no accounting (no slurmdbd: sacct does not work), so the executor reads final states from squeue,
which keeps a finished job for MinJobAge seconds, and from the node's outcome file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "bench"


def slurm_missing() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    for tool in (*DAEMONS, "munge", "sbatch", "squeue", "scancel", "sinfo", "scontrol"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """This machine as slurmd sees it: NodeName=... CPUs=... RealMemory=..."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


@dataclass
class Cluster:
    root: Path
    node: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        node = _node_line()
        self.node = node.split()[0].removeprefix("NodeName=")
        r = self.root
        lines = [
            "ClusterName=deploybench-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "MinJobAge=300",
            "KillWait=10",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        for folder in ("state", "spool"):
            (r / folder).mkdir()
        self.conf.write_text("\n".join(lines) + "\n")

    def _start(self, name: str, *cmd: str) -> None:
        log = (self.root / f"{name}.out").open("w")
        self.processes[name] = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self, timeout_s: float = 60) -> None:
        munge = self.root / "munge"  # munged wants its socket's folder open to all (0755)
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._start(
            "munged",
            "munged",
            "--foreground",
            f"--key-file={key}",
            f"--socket={munge / 'munge.socket'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        self._wait(lambda: (munge / "munge.socket").exists(), timeout_s, "munged")
        self.write_config()
        self._start("slurmctld", "slurmctld", "-D", "-i", "-f", str(self.conf))
        self._start("slurmd", "slurmd", "-D", "-N", self.node, "-f", str(self.conf))
        self._wait(lambda: self.sinfo().startswith("idle"), timeout_s, "an idle node")

    def sinfo(self) -> str:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True
        )
        return proc.stdout.strip()

    def _wait(self, ready: object, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.output(name)}")
            time.sleep(0.2)
        logs = "\n".join(f"{n}: {self.output(n)}" for n in self.processes)
        raise RuntimeError(f"the test cluster did not get {what} in {timeout_s} s:\n{logs}")

    def output(self, name: str) -> str:
        path = self.root / f"{name}.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def jobs(self) -> list[str]:
        """`squeue -h` of every job not over yet: id, name, state."""
        proc = subprocess.run(
            ["squeue", "-h", "-o", "%i %j %T"], env=self.env, capture_output=True, text=True
        )
        return proc.stdout.split("\n")[:-1]

    def stop(self) -> None:
        """Cancel what is still queued or running, then stop the daemons (slurmd first, munged
        last), each by its own process."""
        if "slurmctld" in self.processes and self.jobs():
            subprocess.run(["scancel", "--me"], env=self.env, capture_output=True)
            deadline = time.monotonic() + 60
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.processes.pop(name, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def start_cluster() -> Cluster:
    """Start a cluster in a new temporary folder (short: munge's socket path has a limit)."""
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="dbslurm-")))
    cluster.root.chmod(0o755)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
