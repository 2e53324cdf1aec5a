"""More Docker engines on this one machine, for the pool tests: each `dockerd` in a network
namespace of its own (a veth pair to the host), with its own data-root, exec-root, pidfile and
socket, listening on its namespace's address over TLS with certificates generated here. Only
loopback and these namespaces' addresses are used. Needs root, `ip` (iproute2), `nsenter`
(util-linux), `openssl` and `dockerd`; `engines_available()` says why not where they are missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.231"  # 10.231.<n>.1 the host's end, 10.231.<n>.2 the engine's
PORT = 2376


def engines_available() -> str | None:
    """Why extra engines cannot be started here (None: they can)."""
    if os.geteuid() != 0:
        return "starting Docker engines in network namespaces needs root"
    for tool in ("ip", "nsenter", "openssl", "dockerd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def make_certificates(folder: Path, server_ips: list[str]) -> dict[str, Path]:
    """A CA, a server certificate for `server_ips` and a client certificate (openssl)."""
    folder.mkdir(parents=True, exist_ok=True)
    f = {n: folder / f"{n}.pem" for n in ("ca", "ca-key", "server", "server-key", "cert", "key")}
    ca = ("-keyout", str(f["ca-key"]), "-out", str(f["ca"]))
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=deploybench-test-ca", *ca)  # fmt: skip
    san = ",".join(f"IP:{ip}" for ip in server_ips)
    for who, key, ext in (
        ("server", "server-key", f"subjectAltName={san}\nextendedKeyUsage=serverAuth"),
        ("cert", "key", "extendedKeyUsage=clientAuth"),
    ):
        csr, extfile = folder / f"{who}.csr", folder / f"{who}.ext"
        extfile.write_text(ext + "\n")
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
             "-keyout", str(f[key]), "-out", str(csr))  # fmt: skip
        _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(f["ca"]),
             "-CAkey", str(f["ca-key"]), "-CAcreateserial", "-days", "2",
             "-extfile", str(extfile), "-out", str(f[who]))  # fmt: skip
    return f


@dataclass
class Engine:
    """One extra engine: its namespace, address and files."""

    index: int
    root: Path
    process: subprocess.Popen | None = None

    @property
    def netns(self) -> str:
        return f"dbtest{self.index}"

    @property
    def ip(self) -> str:
        return f"{SUBNET}.{self.index}.2"

    @property
    def address(self) -> str:
        return f"tcp://{self.ip}:{PORT}"

    def start(self, certs: dict[str, Path], timeout_s: float = 60) -> None:
        n, host_if, ns_if = self.index, f"dbh{self.index}", f"dbn{self.index}"
        self.stop_network()
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _run("ip", "link", "set", ns_if, "netns", self.netns)
        _run("ip", "addr", "add", f"{SUBNET}.{n}.1/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        inside = ("ip", "netns", "exec", self.netns)
        _run(*inside, "ip", "addr", "add", f"{self.ip}/30", "dev", ns_if)
        _run(*inside, "ip", "link", "set", ns_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        for sub in ("data", "exec"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        log = (self.root / "dockerd.log").open("w")
        # nsenter enters the network namespace only: `ip netns exec` also remounts /sys, which
        # hides the cgroup mounts dockerd needs ("Devices cgroup isn't mounted").
        self.process = subprocess.Popen(
            [
                "nsenter",
                f"--net=/var/run/netns/{self.netns}",
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "-H",
                f"unix://{self.root / 'docker.sock'}",
                "-H",
                f"tcp://{self.ip}:{PORT}",
                "--tlsverify",
                "--tlscacert",
                str(certs["ca"]),
                "--tlscert",
                str(certs["server"]),
                "--tlskey",
                str(certs["server-key"]),
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd {self.index} exited:\n{self.log_tail()}")
            if (self.root / "docker.sock").exists() and self._answers():
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"dockerd {self.index} did not answer in {timeout_s} s:\n{self.log_tail()}"
        )

    def _answers(self) -> bool:
        proc = subprocess.run(
            ["docker", "-H", f"unix://{self.root / 'docker.sock'}", "version"],
            capture_output=True,
        )
        return proc.returncode == 0

    def log_tail(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    def kill(self) -> None:
        """Stop the engine at once (SIGKILL), as a host that goes away."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.reap()
        self.stop_network()

    def reap(self) -> None:
        """What a killed engine leaves behind: its containers' processes (found through their
        cgroups, cgroup v1 or v2), its containerd shims, and its mounts under its folder."""
        data = self.root / "data" / "containers"
        for cid in [p.name for p in data.iterdir()] if data.is_dir() else []:
            for procs in (
                Path(f"/sys/fs/cgroup/pids/docker/{cid}/cgroup.procs"),
                Path(f"/sys/fs/cgroup/docker/{cid}/cgroup.procs"),
            ):
                if procs.is_file():
                    for pid in procs.read_text().split():
                        with contextlib.suppress(OSError):
                            os.kill(int(pid), signal.SIGKILL)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and str(self.root).encode() in cmdline:
                    os.kill(int(proc.name), signal.SIGKILL)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(self.root))), key=len)[::-1]:
            subprocess.run(["umount", "-l", mount], capture_output=True)

    def stop_network(self) -> None:
        subprocess.run(["ip", "link", "del", f"dbh{self.index}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


def load_image(
    source_client: object, target_address: str, certs: dict[str, Path], tag: str
) -> None:
    """Copy an image from one engine to another through the Engine API (save, load)."""
    from runner.hosts import Host, Tls

    tls = Tls(ca=certs["ca"], cert=certs["cert"], key=certs["key"])
    target = Host("target", target_address, tls=tls).client(timeout=300)
    try:
        target.images.load(b"".join(source_client.images.get(tag).save(named=tag)))
    finally:
        target.close()


def start_sshd(engine: Engine, client_dir: Path) -> subprocess.Popen:
    """An sshd in the engine's namespace (root by key only) whose sessions talk to that engine
    (`SetEnv DOCKER_HOST`), and a client key, known_hosts and ~/.ssh/config under `client_dir`
    (the doctor is run with HOME=client_dir: the SDK's paramiko reads ~/.ssh). Returns sshd."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    folder = engine.root / "ssh"
    folder.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    host_key, user_key = folder / "host_ed25519", client_dir / ".ssh" / "id_ed25519"
    user_key.parent.mkdir(parents=True, exist_ok=True)
    for key in (host_key, user_key):
        if not key.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    (folder / "authorized_keys").write_text(user_key.with_suffix(".pub").read_text())
    host_pub = host_key.with_suffix(".pub").read_text().split()
    (user_key.parent / "known_hosts").write_text(f"{engine.ip} {host_pub[0]} {host_pub[1]}\n")
    (user_key.parent / "config").write_text(
        f"Host {engine.ip}\n  User root\n  IdentityFile {user_key}\n"
    )
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress {engine.ip}\nPort 22\nHostKey {host_key}\n"
        f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"SetEnv DOCKER_HOST=unix://{engine.root / 'docker.sock'}\n"
    )
    process = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{engine.netns}", sshd, "-D", "-e", "-f", str(config)],
        stdout=(folder / "sshd.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    time.sleep(1)
    if process.poll() is not None:
        raise RuntimeError("sshd exited: " + (folder / "sshd.log").read_text()[-2000:])
    return process
