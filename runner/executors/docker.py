"""Cells in fresh containers, through the Docker SDK for Python (not the docker CLI).

Each cell gets a new container of its framework's image: network disabled, the artifact folder
mounted read-only, only the run's cell folder writable, pinned to the run's CPU set, a memory
limit without swap, a timeout, labels with the run id (so `runner clean` finds orphans after a
crash), and NVIDIA device requests for GPU cells. The cell is handed over as a mounted file;
the container writes its result into the mounted results folder; its logs are saved per cell.
The container is removed in a `finally`, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import requests

from bench.cell import Cell
from bench.errors import UsageError
from bench.models import ONNX_PREFIX, is_onnx_model
from runner.executors.base import (
    CellJob,
    Executor,
    ExportJob,
    Outcome,
    cell_document,
    export_arguments,
)
from runner.images import (
    IMAGES,
    BuildSettings,
    ImageSpec,
    ensure_images,
    export_framework,
    export_image,
    image_for,
)

RUN_LABEL = "ai.deploybench.run"
CELL_LABEL = "ai.deploybench.cell"
CACHE_IN_CONTAINER = "/cache"


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
    ) -> None:
        self.client = connect()
        self.settings = settings or BuildSettings()
        self.cache_dir = cache_dir
        self.rebuild = rebuild
        self.images: dict[str, dict] = {}
        runtimes = self.client.info().get("Runtimes", {})
        self.gpu_reason = (
            None
            if "nvidia" in runtimes
            else ("this Docker engine has no NVIDIA runtime (install nvidia-container-toolkit)")
        )

    def prepare(
        self, frameworks: set[tuple[str, str]], log: Callable[[str], None]
    ) -> dict[str, dict]:
        specs: list[ImageSpec] = []
        for framework, device in sorted(frameworks):
            if device == "cuda" and self.gpu_reason:
                continue  # its cells are skipped; do not build what cannot run
            spec = image_for(framework, device)
            if spec not in specs:
                specs.append(spec)
        ids = ensure_images(self.client, specs, self.settings, log, rebuild=self.rebuild)
        self.images.update({n: {"tag": IMAGES.get(n).tag(), "id": i} for n, i in ids.items()})
        return dict(self.images)

    def _mounts(self, job_paths: dict[Path, tuple[str, str]]) -> dict[str, dict[str, str]]:
        return {
            str(host.resolve()): {"bind": inside, "mode": mode}
            for host, (inside, mode) in job_paths.items()
        }

    def _start_and_wait(
        self,
        image: str,
        command: list[str],
        volumes: dict,
        log_path: Path,
        timeout_s: float,
        labels: dict[str, str],
        env: dict[str, str],
        **limits: object,
    ) -> Outcome:
        outcome = Outcome(image=image, image_id=self.client.images.get(image).id)
        try:
            container = self.client.containers.run(
                image,
                command,
                detach=True,
                init=True,  # tini as PID 1: signals forwarded, children reaped
                network_disabled=True,
                volumes=volumes,
                labels=labels,
                environment=env,
                user=f"{os.getuid()}:{os.getgid()}",
                **limits,
            )
        except docker.errors.APIError as exc:
            outcome.start_error = str(exc.explanation or exc)
            log_path.write_text(f"container did not start: {outcome.start_error}\n")
            return outcome
        try:
            try:
                status = container.wait(timeout=timeout_s)
                outcome.exit_code = status.get("StatusCode")
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                outcome.timed_out = True
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
            log_path.write_bytes(container.logs(stdout=True, stderr=True))
            container.reload()
            outcome.oom = bool(container.attrs["State"].get("OOMKilled"))
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        return outcome

    def export(self, job: ExportJob) -> int:
        spec = export_image(job.spec.model)
        if spec.name not in self.images:  # normally built by prepare(), with progress shown
            self.prepare({export_framework(job.spec.model)}, print)
        job.artifacts_dir.mkdir(parents=True, exist_ok=True)
        # The user's own ONNX file and photos are read-only mounts: a container sees no host path.
        mounts = {job.artifacts_dir: ("/artifacts", "rw")}
        model = images = None
        if is_onnx_model(job.spec.model):
            source = Path(job.spec.model[len(ONNX_PREFIX) :]).resolve()
            mounts[source] = (f"/model/{source.name}", "ro")
            model = f"{ONNX_PREFIX}/model/{source.name}"
        if job.spec.images:
            mounts[Path(job.spec.images).resolve()] = ("/images", "ro")
            images = "/images"
        command = export_arguments(
            job.spec, "/artifacts", f"/artifacts/{job.result_path.name}", model, images
        )
        outcome = self._start_and_wait(
            spec.tag(),
            command,
            self._mounts(mounts),
            job.log_path,
            job.timeout_s,
            {RUN_LABEL: "export"},
            {"HOME": "/tmp"},
        )
        return (
            124
            if outcome.timed_out
            else (outcome.exit_code if outcome.exit_code is not None else 125)
        )

    def run(self, job: CellJob) -> Outcome:
        spec = image_for(job.cell.framework, job.cell.device)
        info = self.images[spec.name]
        results_dir = job.result_path.parent
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".cell.json", delete=False) as f:
            f.write(
                cell_document(
                    job, f"/artifacts/{job.artifact_dir.name}", f"/results/{job.result_path.name}"
                )
            )
        os.chmod(f.name, 0o644)
        mounts = {
            job.artifact_dir.parent: ("/artifacts", "ro"),
            results_dir: ("/results", "rw"),
            Path(f.name): ("/run/cell.json", "ro"),
        }
        env = {
            "HOME": "/tmp",
            "DEPLOYBENCH_IMAGE": info["tag"],
            "DEPLOYBENCH_IMAGE_DIGEST": info["id"],
            **job.env,
        }
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            mounts[self.cache_dir] = (CACHE_IN_CONTAINER, "rw")
            env["DEPLOYBENCH_CACHE"] = CACHE_IN_CONTAINER
        limits: dict[str, object] = {
            "mem_limit": job.memory_limit,
            "memswap_limit": job.memory_limit,
            "cpuset_cpus": ",".join(map(str, job.cpus)) or None,
        }
        if job.cell.device == "cuda":
            limits["device_requests"] = [
                docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
            ]
        try:
            return self._start_and_wait(
                info["tag"],
                ["run", "--cell", "/run/cell.json"],
                self._mounts(mounts),
                job.log_path,
                job.timeout_s,
                {RUN_LABEL: job.run_id, CELL_LABEL: job.cell.id},
                env,
                **limits,
            )
        finally:
            os.unlink(f.name)

    def image_id(self, cell: Cell) -> str | None:
        return self.images.get(image_for(cell.framework, cell.device).name, {}).get("id")

    def cleanup(self, run_id: str | None = None) -> int:
        """Remove containers left by a crashed runner (all runs, or one); returns how many."""
        label = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL
        containers = self.client.containers.list(all=True, filters={"label": label})
        for container in containers:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        return len(containers)
