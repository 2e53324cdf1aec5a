"""What the fault benchmark needs of the host: a Docker engine of its own (which it may
restart without touching anybody else's containers), small file systems that fill up, and a
count of the containers a run left.

The private engine is a second `dockerd` with its own socket, data root and exec root (and so
its own containerd), no bridge network (cells have none) and the framework images copied into
it from the host's engine. Needs root, as Docker's engine does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker

PRIVATE = Path("/run/deploybench-faults")
DATA_ROOT = Path("/var/lib/deploybench-faults-docker")


class PrivateEngine:
    """A dockerd of the benchmark's own; `host` is its DOCKER_HOST."""

    def __init__(self, root: Path = PRIVATE, data_root: Path = DATA_ROOT) -> None:
        self.root, self.data_root = root, data_root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _command(self) -> list[str]:
        return [
            "dockerd",
            "--host",
            self.host,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.root / "docker.pid"),
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
        ]

    def start(self, timeout_s: float = 120.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                client = docker.DockerClient(base_url=self.host)
                if client.ping():
                    client.close()
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"the private dockerd exited; see {self.root / 'dockerd.log'}")
            time.sleep(0.5)
        raise RuntimeError(f"the private dockerd did not answer within {timeout_s:g} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """What a daemon restart is to a run: its containers are stopped, the API goes away and
        comes back a few seconds later."""
        self.stop()
        self.start()
        self.restarts += 1

    def copy_images(self, tags: list[str]) -> None:
        """The host engine's images into this one (`docker save | docker load`)."""
        save = subprocess.Popen(["docker", "save", *tags], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "-H", self.host, "load", "--quiet"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
        )
        save.wait()
        if save.returncode or load.returncode:
            raise RuntimeError(f"copying {tags} into the private engine failed: {load.stderr}")

    def remove(self) -> None:
        """Stop it and delete everything it stored."""
        self.stop()
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path`: a results folder that fills up."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write one file until the file system under `folder` is full; returns it."""
    filler = folder / "filler.bin"
    block = b"\0" * (1 << 20)
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(block)
            f.flush()
    with contextlib.suppress(OSError), filler.open("ab") as f:  # the last block, to the page
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return filler


def run_containers(client: docker.DockerClient, run_id: str) -> int:
    """Containers labelled with this run id, whatever their state."""
    label = f"ai.deploybench.run={run_id}"
    return len(client.containers.list(all=True, filters={"label": label}))


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the fault benchmark mounts file systems and runs a dockerd: run as root")
