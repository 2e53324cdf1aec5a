"""Where cells run: `docker` (one fresh container per cell), `local` (one subprocess per cell,
in the current Python environment) or `slurm` (one Slurm job per cell, whose node runs it in a
fresh container as `docker` does). All hand the cell over as a file and read its result from a
file; stdout and stderr are only the cell's log."""

from __future__ import annotations

from bench.registry import Registry
from runner.executors.base import CellJob, Executor, ExportJob, Outcome

EXECUTORS: Registry[str] = Registry("executor")
EXECUTORS.add("docker", "runner.executors.docker:DockerExecutor")
EXECUTORS.add("local", "runner.executors.local:LocalExecutor")
# A pool of Docker engines (`run --hosts FILE`), not chosen by --executor.
EXECUTORS.add("pool", "runner.executors.pool:PoolExecutor")
EXECUTORS.add("slurm", "runner.executors.slurm:SlurmExecutor")


def create_executor(name: str, **kwargs: object) -> Executor:
    import importlib

    module, _, cls = EXECUTORS.get(name).partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["EXECUTORS", "CellJob", "Executor", "ExportJob", "Outcome", "create_executor"]
