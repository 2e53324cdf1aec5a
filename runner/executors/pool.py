"""Cells across a pool of Docker engines (runner/hosts.py's inventory), one DockerExecutor each.

Each cell names its host (bench.cell.Cell.host, set by runner/placement.py) and runs there in a
fresh hardened container as on the local engine. Images: every host gets the images of the
cells placed on it, built from the same context; an image the *source* engine (the
inventory's first `unix://` host, which also exports the artifacts) already holds up to date is
loaded into the others through the API (save, load: the same image id) instead of being built
again, else the host builds it. Each host's image ids are recorded. A host that does not answer
at the start is left out of the placement (said, and recorded in the manifest); one that stops
answering during the run is *lost*: `alive()` says so, and the orchestrator places its queued
cells again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from bench.cell import Cell
from bench.errors import UsageError
from runner.executors.base import CellJob, Executor, ExportJob, Outcome
from runner.executors.docker import ENGINE_GONE, DockerExecutor
from runner.hosts import Host
from runner.images import (
    BuildError,
    BuildSettings,
    current_image_id,
    image_for,
    version_unavailable,
)
from runner.placement import HostInfo, Slot, slots


class PoolExecutor(Executor):
    name = "pool"

    def __init__(
        self,
        hosts: list[Host],
        settings: BuildSettings | None = None,
        cache_dir: object = None,
        rebuild: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.settings = settings or BuildSettings()
        self.members: dict[str, DockerExecutor] = {}
        self.down: dict[str, str] = {}  # host -> why it is not used (unreachable, lost)
        # {host: {(framework, device, version)}}: the images each host needs for the cells
        # placed on it (set by the orchestrator; empty: every host gets every image).
        self.needs: dict[str, set[tuple[str, str, str | None]]] = {}
        self._engines: dict[str, dict] = {}  # each engine's version, as describe() found it
        for host in hosts:
            try:
                self.members[host.name] = DockerExecutor(
                    self.settings,
                    cache_dir=cache_dir,
                    rebuild=rebuild,
                    host=host,
                    engine_wait_s=host.reconnect_s,
                )
            except Exception as exc:  # the SDK raises many kinds for an engine that is not there
                self.down[host.name] = f"unreachable at the start: {type(exc).__name__}: {exc}"
                log(f"host {host.name} ({host.address}) left out: {self.down[host.name]}")
        if not self.members:
            raise UsageError("no host of the inventory answers; `runner doctor --hosts` says why")
        # What placement needs of each engine, asked once: a lost host must not be asked again.
        self.ncpu = {n: int(m.client.info().get("NCPU") or 1) for n, m in self.members.items()}
        self.source = next((m for m in self.members.values() if not m.remote), None)
        gpu = any(info.gpus for info in self.host_infos())
        no_gpu = "no host of the pool can give containers a GPU (NVIDIA runtime or CDI)"
        self.gpu_reason = None if gpu else no_gpu

    # What placement and the manifest need.
    def host_infos(self) -> list[HostInfo]:
        infos = []
        for name, member in self.members.items():
            if name in self.down:
                continue
            host, ncpu = self.hosts[name], self.ncpu[name]
            # The inventory's GPUs, else all of an engine with the NVIDIA runtime as one slot.
            gpus: tuple[str | None, ...] = () if member.gpu_reason else (host.gpus or (None,))
            infos.append(
                HostInfo(
                    name,
                    host.labels,
                    host.cpusets or (tuple(range(ncpu)),),
                    gpus,
                )
            )
        return infos

    def slots(self) -> list[Slot]:
        return [s for info in self.host_infos() for s in slots(info)]

    def describe(self) -> dict[str, dict]:
        """Each host as the manifest records it (no credentials: addresses and labels)."""
        out = {}
        for name, host in self.hosts.items():
            entry: dict[str, object] = {
                "address": host.address,
                "labels": dict(host.labels),
                "cpusets": [list(c) for c in host.cpusets],
                "gpus": list(host.gpus),
                "state": "down" if name in self.down else "up",
            }
            if name in self.down:
                entry["why"] = self.down[name]
            member = self.members.get(name)
            if member is not None and name not in self.down and name not in self._engines:
                with contextlib.suppress(*ENGINE_GONE):
                    version = member.client.version()
                    self._engines[name] = {
                        "version": version.get("Version"),
                        "os": version.get("Os"),
                        "arch": version.get("Arch"),
                    }
            if name in self._engines:  # asked while it was up, kept once it is lost
                entry["engine"] = self._engines[name]
            if member is not None:
                entry["images"] = dict(member.images)
            out[name] = entry
        return out

    def alive(self, host: str) -> bool:
        """Whether the host's engine answers, on a fresh connection if the one held broke (a
        lost one is recorded as down)."""
        if host in self.down:
            return False
        member = self.members[host]
        try:
            member.client.ping()
            return True
        except Exception as exc:  # any failure to answer: try once more on a new connection
            if member.reconnect():
                return True
            self.down[host] = f"lost during the run: {type(exc).__name__}: {exc}"[:400]
            return False

    def prepare(
        self, frameworks: set[tuple[str, str, str | None]], log: Callable[[str], None]
    ) -> dict[str, dict]:
        """The images on every live host: the source's built (or found) first, then loaded
        from it into the others where they lack them or hold a stale one."""
        images: dict[str, dict] = {}
        order = sorted(self.members, key=lambda n: self.members[n] is not self.source)
        for name in order:
            if name in self.down:
                continue
            member = self.members[name]
            wanted = frameworks & self.needs.get(name, set()) if self.needs else frameworks
            if not wanted:
                continue
            say = lambda m, name=name: log(f"[{name}] {m}")  # noqa: E731
            try:
                if self.source is not None and member is not self.source:
                    self._load_from_source(member, wanted, say)
                for key, info in member.prepare(wanted, say).items():
                    images[f"{key}@{name}"] = {**info, "host": name}
            except (*ENGINE_GONE, BuildError) as exc:  # that host's problem, not the run's
                self.down[name] = f"its images could not be prepared: {exc}"[:1500]
                log(f"host {name} left out: {self.down[name]}")
        return images

    def _load_from_source(
        self,
        member: DockerExecutor,
        frameworks: set[tuple[str, str, str | None]],
        log: Callable[[str], None],
    ) -> None:
        assert self.source is not None
        for framework, device, version in sorted(frameworks, key=str):
            if (device == "cuda" and member.gpu_reason) or version_unavailable(
                framework, device, version
            ):
                continue
            spec = image_for(framework, device, version)
            if not member.rebuild and current_image_id(member.client, spec, self.settings):
                continue
            if current_image_id(self.source.client, spec, self.settings) is None:
                continue  # the source has no current one either: the host builds its own
            log(f"{spec.key}: loading from {self.source.host.name} (save, load)")
            image = self.source.client.images.get(spec.tag())
            member.client.images.load(image.save(named=spec.tag()))  # streamed, not held
            # An engine over ssh may close the channel after so long an upload: a new one.
            member.reconnect()

    def unavailable(self, cell: Cell) -> str | None:
        return version_unavailable(cell.framework, cell.device, cell.version)

    def export(self, job: ExportJob) -> int:
        if self.source is None:
            raise UsageError(
                "the export stage runs on a local engine (a unix:// host of the inventory); "
                "add one, or export first (`runner export`) and run with --no-export"
            )
        return self.source.export(job)

    def run(self, job: CellJob) -> Outcome:
        host = job.cell.host
        if host is None or host not in self.members:
            return Outcome(start_error=f"the cell names no host of the pool ({host!r})")
        if not self.alive(host):  # also renews a connection that broke while it was idle
            return Outcome(start_error=f"host {host} is down: {self.down[host]}")
        return self.members[host].run(job)

    def image_id(self, cell: Cell) -> str | None:
        member = self.members.get(cell.host or "")
        return member.image_id(cell) if member is not None else None

    def cleanup(self, run_id: str | None = None) -> int:
        removed = 0
        for name, member in self.members.items():
            if name in self.down and not self._answers(member):
                continue
            with contextlib.suppress(*ENGINE_GONE):
                removed += member.cleanup(run_id)
        return removed

    @staticmethod
    def _answers(member: DockerExecutor) -> bool:
        try:
            return bool(member.client.ping())
        except Exception:  # any failure to answer
            return False
