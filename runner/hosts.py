"""A pool of Docker engines: the inventory file, and what each engine can do.

    hosts:
      - name: local
        address: unix:///var/run/docker.sock
        labels: {cpu: sapphire-rapids}
        cpusets: ["0-1"]                # the exclusive CPU sets a cell may have (default: all)
        reconnect_s: 60                 # how long an engine may not answer before it is lost
      - name: gpu-box
        address: tcp://10.0.0.7:2376
        tls: {ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}
        labels: {gpu: h100}
        gpus: ["0", "1"]
      - name: laptop
        address: ssh://bench@laptop.local

Every address is an existing engine (no cluster manager of this project's own): the local
socket, `tcp://` with TLS client certificates (required: an engine's TCP socket without TLS
is root on that machine for anyone who reaches it), or `ssh://` (the Docker SDK's). The file is
validated as a matrix is, every problem at once with its line; `runner doctor --hosts FILE`
then checks every engine and says what is wrong with each.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import UsageError
from runner.gpu_access import GpuAccess, gpu_access
from runner.matrix import ProblemsError, _Checker, _with_lines

SCHEMES = ("unix", "tcp", "ssh")
HOST_KEYS = ("name", "address", "labels", "cpusets", "gpus", "tls", "reconnect_s")
DEFAULT_RECONNECT_S = 60.0
TLS_KEYS = ("ca", "cert", "key")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CPUSET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


class InventoryError(ProblemsError):
    """An invalid inventory file: every problem, one per line."""

    what = "hosts file"


@dataclass(frozen=True)
class Tls:
    """The client's certificates for a `tcp://` engine (paths resolved against the file)."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Host:
    """One engine of the pool."""

    name: str
    address: str
    labels: tuple[tuple[str, str], ...] = ()
    cpusets: tuple[tuple[int, ...], ...] = ()  # empty: the engine's CPUs, one cell at a time
    gpus: tuple[str, ...] = ()
    tls: Tls | None = None
    # How long a running cell waits for an engine that stopped answering before the host
    # counts as lost (its cell failed, its queued cells placed on the others).
    reconnect_s: float = DEFAULT_RECONNECT_S

    @property
    def scheme(self) -> str:
        return self.address.split("://", 1)[0]

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)

    def client(self, timeout: float = 10) -> Any:
        """A Docker SDK client for this engine (not yet contacted)."""
        import docker

        kwargs: dict[str, Any] = {"base_url": self.address, "timeout": timeout}
        if self.tls is not None:
            kwargs["tls"] = docker.tls.TLSConfig(
                client_cert=(str(self.tls.cert), str(self.tls.key)),
                ca_cert=str(self.tls.ca),
                verify=True,
            )
        if self.scheme == "ssh":
            kwargs["use_ssh_client"] = False  # paramiko, in-process: no ssh binary needed
        # requests would let $REQUESTS_CA_BUNDLE (a proxy's CA, say) replace the engine's CA
        # and $HTTPS_PROXY carry engine traffic: the engine is reached directly, trusting its
        # own CA only — during the SDK's first call (its API version) and after it.
        with _environment_without(_REQUESTS_ENV):
            client = docker.DockerClient(**kwargs)
        client.api.trust_env = False
        return client


_REQUESTS_ENV = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@contextlib.contextmanager
def _environment_without(names: tuple[str, ...]) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def parse_cpuset(text: str) -> tuple[int, ...]:
    """`0-3,8` -> (0, 1, 2, 3, 8); a usage error for anything else."""
    if not isinstance(text, str) or not _CPUSET.fullmatch(text.replace(" ", "")):
        raise UsageError(f"a CPU set is written like 0-3 or 0,2,4, not {text!r}")
    cpus: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise UsageError(f"CPU range {part!r} runs backwards")
        cpus.extend(range(first, last + 1))
    if len(set(cpus)) != len(cpus):
        raise UsageError(f"CPU set {text!r} names a CPU twice")
    return tuple(cpus)


def _check_host(entry: Any, i: int, base: Path, add: Callable[[tuple, str], None]) -> Host | None:
    where = ("hosts", i)
    if not isinstance(entry, dict):
        add(where, "must be a mapping with name and address")
        return None
    for key in entry:
        if key not in HOST_KEYS:
            add((*where, key), f"unknown key; valid: {', '.join(HOST_KEYS)}")
    name, address = entry.get("name"), entry.get("address")
    ok = True
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        add((*where, "name"), f"must be a name of letters, digits, _ . - (not {name!r})")
        ok = False
    scheme = address.split("://", 1)[0] if isinstance(address, str) and "://" in address else None
    if scheme not in SCHEMES:
        add(
            (*where, "address"),
            f"must be unix:///path, tcp://host:port or ssh://user@host (not {address!r})",
        )
        ok = False
    labels = entry.get("labels", {}) or {}
    if not isinstance(labels, dict) or not all(isinstance(v, (str, int)) for v in labels.values()):
        add((*where, "labels"), "must map label -> value, e.g. {gpu: h100}")
        labels, ok = {}, False
    cpusets: list[tuple[int, ...]] = []
    for j, text in enumerate(entry.get("cpusets", []) or []):
        try:
            cpusets.append(parse_cpuset(text))
        except UsageError as exc:
            add((*where, "cpusets", j), str(exc))
            ok = False
    taken = [c for s in cpusets for c in s]
    if len(set(taken)) != len(taken):
        add((*where, "cpusets"), "the CPU sets overlap: cells on them would share CPUs")
        ok = False
    gpus = entry.get("gpus", []) or []
    if not isinstance(gpus, list) or len(set(map(str, gpus))) != len(gpus):
        add((*where, "gpus"), "must be a list of distinct GPU indexes or UUIDs")
        gpus, ok = [], False
    tls = None
    tls_doc = entry.get("tls")
    if tls_doc is not None:
        if not isinstance(tls_doc, dict) or set(tls_doc) != set(TLS_KEYS):
            add((*where, "tls"), "must name ca, cert and key (PEM files)")
            ok = False
        else:
            paths = {k: (base / str(v)).resolve() for k, v in tls_doc.items()}
            for key, path in paths.items():
                if not path.is_file():
                    add((*where, "tls", key), f"no such file: {path}")
                    ok = False
            tls = Tls(**paths)
    if scheme == "tcp" and tls_doc is None:
        add(
            (*where, "tls"),
            "a tcp:// engine needs TLS client certificates (tls: {ca, cert, key}); an engine "
            "socket without TLS gives root on its machine to anyone who reaches it",
        )
        ok = False
    if scheme in ("unix", "ssh") and tls_doc is not None:
        add((*where, "tls"), f"applies to tcp:// engines, not {scheme}://")
        ok = False
    reconnect = entry.get("reconnect_s", DEFAULT_RECONNECT_S)
    if not isinstance(reconnect, (int, float)) or isinstance(reconnect, bool) or reconnect <= 0:
        add((*where, "reconnect_s"), f"must be a positive number of seconds, not {reconnect!r}")
        ok = False
    if not ok:
        return None
    return Host(
        name=name,
        address=address,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        cpusets=tuple(cpusets),
        gpus=tuple(map(str, gpus)),
        tls=tls,
        reconnect_s=float(reconnect),
    )


def parse_inventory(text: str, source: str = "<hosts>", base: Path | None = None) -> list[Host]:
    """Validate an inventory document; raise `InventoryError` listing every problem."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise InventoryError(source, [f"not valid YAML: {exc}"]) from exc
    doc, lines = _with_lines(root) if root is not None else ({}, {})
    check = _Checker(lines)  # each problem with its key path and line, as for matrices
    add, problems = check.add, check.problems
    if not isinstance(doc, dict) or not isinstance(doc.get("hosts"), list) or not doc["hosts"]:
        raise InventoryError(source, ["(top): must be a mapping with a non-empty list `hosts`"])
    for key in doc:
        if key != "hosts":
            add((key,), "unknown key; valid: hosts")
    hosts = [_check_host(e, i, base or Path("."), add) for i, e in enumerate(doc["hosts"])]
    names = [h.name for h in hosts if h]
    for name in sorted({n for n in names if names.count(n) > 1}):
        add(("hosts",), f"host name {name!r} is used twice: the host is part of every result")
    if problems:
        raise InventoryError(source, problems)
    return [h for h in hosts if h]


def load_inventory(path: str | Path) -> list[Host]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no hosts file {path}")
    return parse_inventory(path.read_text(), str(path), base=path.parent)


@dataclass
class HostCheck:
    """What `runner doctor --hosts` found on one engine; `problems` empty: ready."""

    host: Host
    version: str | None = None
    nvidia: bool = False  # GPUs reachable: the NVIDIA runtime or CDI devices
    gpu: GpuAccess | None = None
    ncpu: int | None = None
    base_images: dict[str, bool] = field(default_factory=dict)
    free_disk_gib: float | None = None
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        h = self.host
        if self.version is None:
            return [f"{h.name} ({h.address}): UNREACHABLE: {self.problems[0]}"]
        bases = ", ".join(
            f"{b} {'present' if ok else 'absent'}" for b, ok in self.base_images.items()
        )
        disk = "?" if self.free_disk_gib is None else f"{self.free_disk_gib:.1f} GiB free"
        gpus = self.gpu.describe() if self.gpu else "absent"
        out = [
            f"{h.name} ({h.address}): docker {self.version}, {self.ncpu} CPUs, "
            f"GPU access {gpus}, {disk}; base images: {bases}",
        ]
        out += [f"{h.name}: PROBLEM: {p}" for p in self.problems]
        return out


MIN_FREE_GIB = 20.0  # the torch image alone is 7 GB, and a rebuild holds two for a while


def check_engine(host: Host, bases: tuple[str, ...], timeout: float = 10) -> HostCheck:
    """Contact one engine: reachable, version, NVIDIA runtime, base images, free disk (from a
    throw-away container of a base image: `df` of its root, which lies on the engine's
    data-root)."""
    check = HostCheck(host)
    try:
        client = host.client(timeout)
        info = client.info()
        check.version = str(client.version().get("Version", "?"))
    except Exception as exc:  # the SDK raises many kinds for an engine that does not answer
        check.problems.append(f"{type(exc).__name__}: {exc}"[:400])
        return check
    try:
        check.gpu = gpu_access(info)
        check.nvidia = check.gpu.mode is not None
        check.ncpu = info.get("NCPU")
        for base in bases:
            check.base_images[base] = bool(client.images.list(name=base))
        present = [b for b, ok in check.base_images.items() if ok]
        if not present:
            check.problems.append(
                f"no base image ({' or '.join(bases)}): `make base-offline` on that host, or "
                "let it pull from a registry"
            )
        else:
            check.free_disk_gib = _free_disk_gib(client, present[0])
            if check.free_disk_gib is not None and check.free_disk_gib < MIN_FREE_GIB:
                check.problems.append(
                    f"{check.free_disk_gib:.1f} GiB free on the engine's data-root; the images "
                    f"need about {MIN_FREE_GIB:.0f}"
                )
        if host.gpus and not check.nvidia:
            check.problems.append(
                f"the inventory lists GPUs but the engine cannot give them: {check.gpu.reason}"
            )
        cpus = [c for s in host.cpusets for c in s]
        if cpus and check.ncpu is not None and max(cpus) >= check.ncpu:
            check.problems.append(f"CPU {max(cpus)} in cpusets, but the engine has {check.ncpu}")
    finally:
        client.close()
    return check


def _free_disk_gib(client: Any, image: str) -> float | None:
    output = client.containers.run(
        image, ["df", "-Pk", "/"], remove=True, network_mode="none", stderr=False
    )
    fields = output.decode().splitlines()[-1].split()
    return int(fields[3]) / 2**20 if len(fields) >= 4 and fields[3].isdigit() else None
