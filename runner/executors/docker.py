"""Cells in fresh containers, through the Docker SDK for Python (not the docker CLI).

Each cell gets a new container of its framework's image, hardened as `hardening` says (the
image's non-root user, no capabilities, no-new-privileges, a pids limit, a read-only root with a
tmpfs /tmp, no network, a capped log), with only its own artifact mounted read-only, a folder of
its own to write its result into, the shared cache read-only and a staging folder for what it
adds to it, pinned to the run's CPU set, a memory limit without swap, a timeout, labels with the
run id and the runner's identity (so that orphans of a dead runner are found and removed before
the next run measures), and NVIDIA device requests for GPU cells. The container is removed in a
`finally`, whatever happened; when the engine itself went away, once it is back.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import requests
import urllib3

from bench import cache
from bench.backends.tvm_database import REPO_TUNING, TUNING_ENV
from bench.cell import Cell
from bench.errors import UsageError
from bench.frameworks import FRAMEWORKS
from bench.fsutil import atomic_write_text
from bench.models import ONNX_PREFIX, is_onnx_model
from bench.phase import PHASE_ENV
from runner import owner
from runner.executors import hardening, transfer
from runner.executors.base import (
    CellJob,
    Executor,
    ExportJob,
    Outcome,
    cell_document,
    export_arguments,
)
from runner.gpu_access import gpu_access
from runner.hosts import Host
from runner.images import (
    BuildSettings,
    ImageSpec,
    ensure_images,
    export_framework,
    export_image,
    image_for,
    version_unavailable,
)

RUN_LABEL = "ai.deploybench.run"
CELL_LABEL = "ai.deploybench.cell"
OWNER_PREFIX = "ai.deploybench.runner."  # + host, boot_id, pid, start: see runner.owner
CACHE_IN_CONTAINER = "/cache"
TUNING_IN_CONTAINER = "/tuning/tvm"  # the committed TVM databases, read-only
STAGING_IN_CONTAINER = "/cache-new"
OUT_IN_CONTAINER = "/out"
ARTIFACTS_REUSE_IN_CONTAINER = "/artifacts-existing"
FAULT_ENV = "DEPLOYBENCH_FAULT"  # bench.faults: the runner's tests and benchmarks/faults.py
ENGINE_WAIT_S = 120.0  # how long a cell waits for a restarting engine to answer again
# The engine went away: the connection broke (refused, reset, a chunked answer cut short: an
# engine on another machine that died mid-answer), or it answered that it is shutting down.
ENGINE_GONE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    docker.errors.APIError,
)


def connect() -> docker.DockerClient:
    """A client for the local engine, or a usage error saying how to get one."""
    try:
        client = docker.from_env()
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise UsageError(
            f"no reachable Docker engine ({exc}). Start one (`make engine` installs and starts "
            "it as root on Debian/Ubuntu, or `systemctl start docker`), or run with "
            "--executor local"
        ) from exc


def _timed_out(exc: Exception) -> bool:
    """A wait that ran out of time (the SDK raises it as ReadTimeout, or as a ConnectionError
    around urllib3's ReadTimeoutError), not an engine that went away."""
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    return any(isinstance(a, urllib3.exceptions.ReadTimeoutError) for a in exc.args)


def engine_unreachable_reason() -> str | None:
    """Why no Docker engine answers here (None when one does), for the `auto` executor."""
    try:
        connect().close()
    except UsageError as exc:
        return str(exc).split(". Start one")[0]
    return None


class DockerExecutor(Executor):
    name = "docker"

    def __init__(
        self,
        settings: BuildSettings | None = None,
        cache_dir: Path | None = None,
        rebuild: bool = False,
        host: Host | None = None,
        engine_wait_s: float = ENGINE_WAIT_S,
    ) -> None:
        # host: a pool's engine (runner/hosts.py); None: the local one ($DOCKER_HOST or the
        # socket). An engine on another machine (tcp://, ssh://) shares no file system with
        # the runner: what a local cell gets as bind mounts goes through the API (transfer).
        self.host = host
        self.remote = host is not None and host.scheme != "unix"
        self.client = connect() if host is None else host.client(timeout=60)
        self.settings = settings or BuildSettings()
        self.cache_dir = None if self.remote else cache_dir
        self.rebuild = rebuild
        self.engine_wait_s = engine_wait_s
        self.images: dict[str, dict] = {}
        self._volumes: dict[Path, str] = {}  # remote: a folder's volume on that engine
        self.gpu_access = gpu_access(self.client.info())
        self.gpu_reason = self.gpu_access.reason

    def reconnect(self) -> bool:
        """A fresh client for a pool's engine whose connection broke (an ssh channel the
        engine closed after a long answer, say); False when the engine does not answer."""
        assert self.host is not None, "only a pool's engines are reconnected"
        with contextlib.suppress(Exception):
            self.client.close()
        try:
            self.client = self.host.client(timeout=60)
            return bool(self.client.ping())
        except Exception:  # the SDK raises many kinds for an engine that is not there
            return False

    def prepare(
        self, frameworks: set[tuple[str, str, str | None]], log: Callable[[str], None]
    ) -> dict[str, dict]:
        if removed := self.cleanup():  # before anything is measured
            log(f"removed {removed} containers left behind by runners that are gone")
        specs: list[ImageSpec] = []
        for framework, device, version in sorted(frameworks, key=str):
            if device == "cuda" and self.gpu_reason:
                continue  # its cells are skipped; do not build what cannot run
            if version_unavailable(framework, device, version):
                continue  # its cells are unsupported (a model's pin of a version not built)
            spec = image_for(framework, device, version)
            if spec not in specs:
                specs.append(spec)
        ids = ensure_images(self.client, specs, self.settings, log, rebuild=self.rebuild)
        tags = {s.key: s.tag() for s in specs}
        self.images.update({key: {"tag": tags[key], "id": i} for key, i in ids.items()})
        return dict(self.images)

    def unavailable(self, cell: Cell) -> str | None:
        return version_unavailable(cell.framework, cell.device, cell.version)

    def _mounts(self, job_paths: dict[Path, tuple[str, str]]) -> dict[str, dict[str, str]]:
        return {
            str(host.resolve()): {"bind": inside, "mode": mode}
            for host, (inside, mode) in job_paths.items()
        }

    def _owner_labels(self) -> dict[str, str]:
        return {OWNER_PREFIX + k: v for k, v in owner.this_process().items()}

    def _engine_back(self, within_s: float) -> bool:
        """Wait until the engine answers again (it restarts); False when it did not in time."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.exceptions.RequestException, docker.errors.APIError):
                if self.client.ping():
                    return True
            time.sleep(1.0)
        return False

    def _wait(self, container: object, timeout_s: float, outcome: Outcome) -> None:
        """Wait for the container's end, its timeout, or the engine's loss (then its return)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise requests.exceptions.ReadTimeout("the cell's timeout passed")
                outcome.exit_code = container.wait(timeout=remaining).get("StatusCode")
                return
            except docker.errors.NotFound:
                outcome.engine_error = "the cell's container was removed while it ran"
                return
            except (*ENGINE_GONE, requests.exceptions.ReadTimeout) as exc:
                if _timed_out(exc):
                    outcome.timed_out = True
                    with contextlib.suppress(*ENGINE_GONE):
                        container.kill()
                    return
                outcome.engine_error = f"the Docker engine went away during the cell ({exc})"
                if not self._engine_back(min(self.engine_wait_s, max(remaining, 1.0))):
                    return
                try:
                    container.reload()
                except docker.errors.NotFound:
                    return
                except ENGINE_GONE:
                    continue
                if container.status == "running":
                    continue  # the engine kept it (live-restore): wait on
                outcome.exit_code = container.attrs["State"].get("ExitCode")
                return

    @staticmethod
    def _retrying(action: Callable[[], object], within_s: float = ENGINE_WAIT_S) -> object:
        """`action()` again until it works (None when the container is gone): an engine that is
        restarting refuses or drops calls for a while, and may still answer pings as it stops."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                return action()
            except docker.errors.NotFound:
                return None
            except ENGINE_GONE:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def _remove(self, container: object) -> None:
        """Never leave a container behind while the run lives, even across an engine restart."""
        with contextlib.suppress(*ENGINE_GONE):
            # v: the container's anonymous volumes (a remote cell's /out) go with it.
            self._retrying(lambda: container.remove(force=True, v=True), self.engine_wait_s)

    def _start_and_wait(
        self,
        image: str,
        command: list[str],
        volumes: dict,
        log_path: Path,
        timeout_s: float,
        labels: dict[str, str],
        env: dict[str, str],
        before_start: Callable[[object], None] | None = None,
        after_end: Callable[[object], None] | None = None,
        **limits: object,
    ) -> Outcome:
        """Create the container, `before_start(container)` (a remote cell's document goes in),
        start it, wait for its end, save its log, `after_end(container)` (a remote result
        comes out), and remove it whatever happened."""
        outcome = Outcome(image=image, image_id=self.client.images.get(image).id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        container = None
        try:
            container = self.client.containers.create(
                image,
                command,
                volumes=volumes,
                labels={**labels, **self._owner_labels()},
                environment=env,
                **hardening.container_settings(),
                **limits,
            )
            if before_start is not None:
                before_start(container)
            container.start()
        except (*ENGINE_GONE, RuntimeError) as exc:  # RuntimeError: a copy the engine refused
            outcome.start_error = str(getattr(exc, "explanation", None) or exc)
            log_path.write_text(f"container did not start: {outcome.start_error}\n")
            if container is not None:
                self._remove(container)
            return outcome
        try:
            self._wait(container, timeout_s, outcome)
            try:
                hardening.save_logs(container, log_path)
                container.reload()
                outcome.oom = bool(container.attrs["State"].get("OOMKilled"))
                if after_end is not None:
                    after_end(container)
            except ENGINE_GONE as exc:  # it stopped the container as it went
                outcome.engine_error = f"the Docker engine went away at the end of the cell ({exc})"
                with log_path.open("a") as log:
                    log.write(f"\n[the container's log could not be read: {exc}]\n")
        finally:
            self._remove(container)
        return outcome

    def export(self, job: ExportJob) -> int:
        """The export stage in its image (torch-cpu; ort-cpu for a user's ONNX file), as the
        image's user: it writes into a folder of its own; existing artifacts are offered
        read-only for reuse, a user's ONNX file and photos are mounted read-only, and a new
        artifact and the export's result file are copied out as the runner's own files."""
        spec = export_image(job.spec.model)
        if spec.key not in self.images:  # normally built by prepare(), with progress shown
            self.prepare({(*export_framework(job.spec.model), None)}, print)
        job.artifacts_dir.mkdir(parents=True, exist_ok=True)
        staging = hardening.cell_folder(job.artifacts_dir / f".export-{uuid.uuid4().hex[:12]}")
        mounts = {
            staging: ("/artifacts", "rw"),
            job.artifacts_dir: (ARTIFACTS_REUSE_IN_CONTAINER, "ro"),
        }
        model = images = None
        if is_onnx_model(job.spec.model):
            source = Path(job.spec.model[len(ONNX_PREFIX) :]).resolve()
            mounts[source] = (f"/model/{source.name}", "ro")
            model = f"{ONNX_PREFIX}/model/{source.name}"
        if job.spec.images:
            mounts[Path(job.spec.images).resolve()] = ("/images", "ro")
            images = "/images"
        result = f"/artifacts/{job.result_path.name}"
        command = export_arguments(job.spec, "/artifacts", result, model, images)
        try:
            outcome = self._start_and_wait(
                spec.tag(),
                command,
                self._mounts(mounts),
                job.log_path,
                job.timeout_s,
                {RUN_LABEL: "export"},
                {"HOME": "/tmp", "DEPLOYBENCH_ARTIFACTS_REUSE": ARTIFACTS_REUSE_IN_CONTAINER},
            )
            for new in staging.iterdir():
                if (new / "meta.json").is_file() and not (job.artifacts_dir / new.name).exists():
                    hardening.adopt_tree(new, job.artifacts_dir / new.name)
            written = staging / job.result_path.name
            if written.is_file() and not written.is_symlink() and written.stat().st_size < 1 << 16:
                atomic_write_text(job.result_path, written.read_text())
        finally:
            hardening.remove_folder(staging)
        if outcome.timed_out:
            return 124
        return outcome.exit_code if outcome.exit_code is not None else 125

    def run(self, job: CellJob) -> Outcome:
        if self.remote:
            return self._run_remote(job)
        spec = image_for(job.cell.framework, job.cell.device, job.cell.version)
        info = self.images[spec.key]
        job.result_path.parent.mkdir(parents=True, exist_ok=True)
        # The cell's own folders: its result (in the run folder), its cache additions.
        cell_tag = f"{job.cell.id}-{uuid.uuid4().hex[:8]}"
        out = hardening.cell_folder(job.result_path.parent.parent / ".cells" / cell_tag)
        with tempfile.NamedTemporaryFile("w", suffix=".cell.json", delete=False) as f:
            artifact = f"/artifacts/{job.artifact_dir.name}"
            f.write(cell_document(job, artifact, f"{OUT_IN_CONTAINER}/result.json"))
        os.chmod(f.name, 0o644)
        mounts = {
            job.artifact_dir: (artifact, "ro"),  # this cell's artifact, no other
            out: (OUT_IN_CONTAINER, "rw"),
            Path(f.name): ("/run/cell.json", "ro"),
        }
        env = self._cell_env(job, info)
        env[PHASE_ENV] = f"{OUT_IN_CONTAINER}/phase"
        job.phase.path = out / "phase"  # read by the runner while the container runs
        if self._tvm(job.cell):
            # The committed tuning databases, read-only (bench/backends/tvm_database.py).
            mounts[REPO_TUNING] = (TUNING_IN_CONTAINER, "ro")
        staging = None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            staging = hardening.cell_folder(self.cache_dir / ".staging" / cell_tag)
            mounts[self.cache_dir] = (CACHE_IN_CONTAINER, "ro")
            mounts[staging] = (STAGING_IN_CONTAINER, "rw")
            env["DEPLOYBENCH_CACHE"] = CACHE_IN_CONTAINER
            env[cache.STAGING_ENV] = STAGING_IN_CONTAINER
        try:
            outcome = self._start_and_wait(
                info["tag"],
                ["run", "--cell", "/run/cell.json"],
                self._mounts(mounts),
                job.log_path,
                job.timeout_s,
                {RUN_LABEL: job.run_id, CELL_LABEL: job.cell.id},
                env,
                **self._limits(job),
            )
            hardening.take_file(out / "result.json", job.result_path)
            if staging is not None:
                self._promote(staging, job)
            return outcome
        finally:
            os.unlink(f.name)
            hardening.remove_folder(out)
            if staging is not None:
                hardening.remove_folder(staging)

    def _tvm(self, cell: Cell) -> bool:
        return FRAMEWORKS.get(cell.framework).base == "tvm" and REPO_TUNING.is_dir()

    def _cell_env(self, job: CellJob, info: dict) -> dict[str, str]:
        env = {
            "HOME": "/tmp",
            "DEPLOYBENCH_IMAGE": info["tag"],
            "DEPLOYBENCH_IMAGE_DIGEST": info["id"],
            # A deliberate fault set for the whole run reaches cells as it does local ones.
            **{k: v for k, v in os.environ.items() if k == FAULT_ENV},
            **job.env,
        }
        if self._tvm(job.cell):
            env[TUNING_ENV] = TUNING_IN_CONTAINER
        return env

    def _limits(self, job: CellJob) -> dict[str, object]:
        limits: dict[str, object] = {
            "mem_limit": job.memory_limit,
            "memswap_limit": job.memory_limit,
            "cpuset_cpus": ",".join(map(str, job.cpus)) or None,
        }
        if job.cell.device == "cuda":
            # The pool's GPU slot (one GPU, exclusive), else every GPU of the engine.
            limits["device_requests"] = [self.gpu_access.device_request(tuple(job.gpus))]
        return limits

    def _run_remote(self, job: CellJob) -> Outcome:
        """A cell on an engine of another machine: its artifact (and the TVM databases) in
        volumes copied there once, its document put into its own /out volume before it
        starts, its result read back from there after it ended (runner/executors/transfer)."""
        spec = image_for(job.cell.framework, job.cell.device, job.cell.version)
        info = self.images[spec.key]
        artifact = f"/artifacts/{job.artifact_dir.name}"
        labels = {RUN_LABEL: job.run_id, CELL_LABEL: job.cell.id}
        volumes = {}
        try:
            volumes[self._volume(job.artifact_dir, info["tag"], labels)] = {
                "bind": artifact,
                "mode": "ro",
            }
            if self._tvm(job.cell):
                volumes[self._volume(REPO_TUNING, info["tag"], labels)] = {
                    "bind": TUNING_IN_CONTAINER,
                    "mode": "ro",
                }
        except (*ENGINE_GONE, RuntimeError, ValueError) as exc:
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            job.log_path.write_text(f"the cell's files could not be copied to the engine: {exc}\n")
            return Outcome(image=info["tag"], image_id=info["id"], start_error=str(exc)[:500])
        document = cell_document(job, artifact, f"{OUT_IN_CONTAINER}/cell/result.json")
        job.result_path.parent.mkdir(parents=True, exist_ok=True)
        return self._start_and_wait(
            info["tag"],
            ["run", "--cell", f"{OUT_IN_CONTAINER}/cell/cell.json"],
            volumes,
            job.log_path,
            job.timeout_s,
            labels,
            self._cell_env(job, info),
            before_start=lambda c: transfer.put_cell_document(c, document),
            after_end=lambda c: transfer.fetch_file(
                c, f"{OUT_IN_CONTAINER}/cell/result.json", job.result_path
            ),
            mounts=[docker.types.Mount(OUT_IN_CONTAINER, None, type="volume")],
            **self._limits(job),
        )

    def _volume(self, folder: Path, image: str, labels: dict[str, str]) -> str:
        if folder not in self._volumes:
            self._volumes[folder] = transfer.data_volume(
                self.client, folder, image, {**labels, **self._owner_labels()}
            )
        return self._volumes[folder]

    def _promote(self, staging: Path, job: CellJob) -> None:
        """Move what the cell added to the cache into it (its own artifact's verified entries
        only), and say so in its log."""
        key = json.loads((job.artifact_dir / "meta.json").read_text())["key"][:16]
        promoted, refused = cache.promote(staging, self.cache_dir, key)
        if promoted or refused:
            with job.log_path.open("a") as log:
                for rel in promoted:
                    log.write(f"[runner] cache entry {rel} added to the shared cache\n")
                for why in refused:
                    log.write(f"[runner] cache entry refused: {why}\n")

    def image_id(self, cell: Cell) -> str | None:
        if self.unavailable(cell):
            return None
        spec = image_for(cell.framework, cell.device, cell.version)
        return self.images.get(spec.key, {}).get("id")

    def cleanup(self, run_id: str | None = None) -> int:
        """Remove what runs left behind; returns how many containers. With `run_id` (the end
        of a run, by its own runner): that run's containers. Without: the containers of every
        runner that is no longer alive, and no other (a live run's cells are never touched)."""
        label = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL
        listed = self._retrying(
            lambda: self.client.containers.list(all=True, filters={"label": label}),
            self.engine_wait_s,
        )
        mine = owner.this_process()
        containers = [
            c
            for c in listed or []
            if (self._owner_of(c) in (mine, {}) if run_id else owner.is_dead(self._owner_of(c)))
        ]
        for container in containers:
            self._remove(container)
        return len(containers)

    @staticmethod
    def _owner_of(container: object) -> dict[str, str]:
        labels = container.labels or {}
        return {
            k.removeprefix(OWNER_PREFIX): v for k, v in labels.items() if k.startswith(OWNER_PREFIX)
        }
