"""Running one cell: load, cold inference, parity on every input, warm-up, measurement.

Whatever happens inside the cell ends in a `CellResult`: a framework that cannot do it gives
``unsupported`` with its message, anything else that goes wrong gives ``failed`` with the
traceback's tail. Only usage errors (bad input from the user) escape, before any work.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from bench.artifact import Artifact
from bench.backends import BACKENDS
from bench.backends.base import DEVICE_COMPUTE_ONLY, SCOPE_DESCRIPTIONS, Backend
from bench.backends.cuda import cuda_unavailable_reason
from bench.cell import Cell
from bench.errors import DeviceUnavailable, Unsupported
from bench.faults import slowdown_from_env, slowed
from bench.frameworks import FRAMEWORKS
from bench.measure import device_busy
from bench.measure import parity as parity_mod
from bench.measure.fingerprint import fingerprint
from bench.measure.gpu import GpuMonitor
from bench.measure.memory import ProcessMemory, container_peak, sizes
from bench.measure.noise import NoiseProbe
from bench.measure.sections import round_section
from bench.measure.threads import ThreadProbe
from bench.measure.timing import TimingConfig, TimingRun, time_calls
from bench.phase import report_phase
from bench.result import CellResult
from bench.scenario_spec import SINGLE_STREAM

LOG_TAIL_LINES = 40


def batch_indices(n_inputs: int, batch_size: int, start: int = 0) -> np.ndarray:
    """Indices of one batch, wrapping around the inputs when the batch is larger than them."""
    return (start + np.arange(batch_size)) % n_inputs


def run_all_inputs(
    backend: Backend, inputs: np.ndarray, input_name: str, batch_size: int
) -> dict[str, np.ndarray]:
    """Outputs for every input, computed in batches of the cell's size (for parity)."""
    n = len(inputs)
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, n, batch_size):
        take = min(batch_size, n - start)
        feed = {input_name: np.ascontiguousarray(inputs[batch_indices(n, batch_size, start)])}
        out = backend.infer(feed)
        chunks.append({k: v[:take] for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _timed_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def _timing_section(
    scope: str,
    run: TimingRun,
    cell: Cell,
    artifact: Artifact,
    timing: TimingConfig,
    where: RoundInfo,
    load_ms: float | None = None,
    cold_ms: float | None = None,
    noise: dict | None = None,
    threads: dict | None = None,
) -> dict:
    return round_section(
        scope=scope,
        scope_description=SCOPE_DESCRIPTIONS[scope],
        config=timing.to_dict(),
        samples_ms=run.samples_ms,
        warmup_iters=run.warmup_iters,
        warmup_s=run.warmup_s,
        measure_s=run.measure_s,
        batch_size=cell.batch_size,
        flops_per_sample=artifact.meta.get("flops_per_sample"),
        round_index=where.index,
        position=where.position,
        load_ms=load_ms,
        cold_ms=cold_ms,
        noise=noise,
        threads=threads,
    )


def _tier(backend: Backend, cell: Cell) -> str:
    """The tolerance tier: the cell's precision, or for `auto` that of what the framework
    chose, as it reports it."""
    if cell.precision != "auto":
        return cell.precision
    ran = str(backend.runtime_info().get("precision_run"))
    return ran if ran in parity_mod.TOLERANCES else "fp32"


def _tensor_parity(outputs: dict[str, np.ndarray], artifact: Artifact, tier: str) -> dict:
    return parity_mod.compare(
        outputs,
        artifact.references,
        tier,
        classifier_output=artifact.classifier_output,
        reference=artifact.meta["reference"],
    ).to_dict()


def _parity(backend: Backend, artifact: Artifact, cell: Cell) -> dict:
    """Every input through the backend, compared with the reference."""
    tier = _tier(backend, cell)
    inputs = artifact.inputs
    if artifact.task == "detection":
        from bench.measure.detection import detection_parity

        # Boxes come in different orders and counts: matched by class and IoU, photo by photo.
        found = [
            backend.infer({artifact.input_name: np.ascontiguousarray(inputs[i : i + 1])})
            for i in range(len(inputs))
        ]
        height, width = inputs.shape[-2:]
        parity = detection_parity(artifact.detections, found, tier, image_size=(height, width))
        parity["reference"] = artifact.meta["reference"]
        return parity
    outputs = run_all_inputs(backend, inputs, artifact.input_name, cell.batch_size)
    return _tensor_parity(outputs, artifact, tier)


def _measure_own_loop(
    backend: Backend, artifact: Artifact, cell: Cell, timing: TimingConfig, where: RoundInfo
) -> tuple[dict, dict, None, dict | None]:
    """A backend that runs the cell in its own process: the same phases, measured there (its
    noise telemetry covers that whole process, load included)."""
    backend.load()  # checks and preparation only: the framework's load is timed by the backend
    probe = NoiseProbe()
    own = backend.run_own_loop(artifact.inputs, timing)
    noise = probe.report()
    parity = _tensor_parity(own.outputs, artifact, _tier(backend, cell)) if where.parity else None
    section = _timing_section(
        backend.timing_scope,
        own.timing,
        cell,
        artifact,
        timing,
        where,
        own.load_ms,
        own.cold_ms,
        noise,
    )
    runtime = backend.runtime_info()
    runtime["precision_requested"] = cell.precision
    return runtime, section, None, parity


def _loop_marks(
    monitor: GpuMonitor | None, scope: str, memory: ProcessMemory | None = None
) -> Callable[[str], None] | None:
    """What runs at each end of one timed loop: the GPU monitor's readings, and for the main
    loop the process's memory peak (reset at its start, read at its end)."""
    if monitor is None and memory is None:
        return None

    def mark(phase: str) -> None:
        if monitor is not None:
            (monitor.loop_started if phase == "start" else monitor.loop_ended)(scope)
        if memory is not None:
            (memory.loop_started if phase == "start" else memory.loop_ended)()

    return mark


def _measure(
    backend: Backend,
    artifact: Artifact,
    cell: Cell,
    timing: TimingConfig,
    monitor: GpuMonitor | None,
    where: RoundInfo,
    memory: ProcessMemory,
) -> tuple[dict, dict, dict | None, dict | None]:
    """Run the cell's phases in order; returns (runtime, timing, compute timing, parity)."""
    if backend.runs_own_loop:
        return _measure_own_loop(backend, artifact, cell, timing, where)
    report_phase("loading")
    load_ms = _timed_ms(backend.load)
    memory.loaded()
    inputs = artifact.inputs
    feed = {
        artifact.input_name: np.ascontiguousarray(
            inputs[batch_indices(len(inputs), cell.batch_size)]
        )
    }
    report_phase("cold run")
    cold_ms = _timed_ms(lambda: backend.infer(feed))
    report_phase("parity on every input")
    parity = _parity(backend, artifact, cell) if where.parity else None
    report_phase("timing")
    slowdown = slowdown_from_env(cell.framework)  # a test's fault: 0 otherwise
    probe, threads = NoiseProbe(), ThreadProbe()
    run = time_calls(
        slowed(lambda: backend.infer(feed), slowdown),
        timing,
        on_measure=_loop_marks(monitor, backend.timing_scope, memory),
    )
    busy, noise = threads.report(cell.threads), probe.report()
    timing_section = _timing_section(
        backend.timing_scope, run, cell, artifact, timing, where, load_ms, cold_ms, noise, busy
    )
    compute_section = None
    if backend.has_compute_scope:
        # The same batch, already on the device: the device's work alone, copies excluded.
        report_phase("timing the device's compute")
        backend.stage(feed)
        compute = time_calls(
            slowed(backend.run_staged, slowdown),
            timing,
            on_measure=_loop_marks(monitor, DEVICE_COMPUTE_ONLY),
        )
        compute_section = _timing_section(
            DEVICE_COMPUTE_ONLY, compute, cell, artifact, timing, where
        )
        # After the loop, never inside it: how much of a run the device was busy.
        compute_section["device_busy"] = device_busy.section(
            compute.samples_ms,
            backend.profile_device_busy if backend.has_device_profiler else None,
            f"no device profiler is wired in for {cell.framework}: the scope is host-timed, "
            "launch-bound or not",
        )
    runtime = backend.runtime_info()
    runtime["precision_requested"] = cell.precision
    return runtime, timing_section, compute_section, parity


@dataclass(frozen=True)
class RoundInfo:
    """Which round of its cell a process runs: its index, its position in the round's random
    order, and whether it checks parity (the first round does; the answers of one build do
    not change between processes, and a slow cell's parity costs as much as its timing)."""

    index: int = 1
    position: int | None = None
    parity: bool = True


def _other_version(cell: Cell) -> str | None:
    """Why this environment cannot run the framework version the cell asks for (None: it can,
    or the cell asks for none). The version is read from the installed distribution, so a
    cell labelled 1.22.1 is never measured on another build."""
    if cell.version is None:
        return None
    package = FRAMEWORKS.get(cell.framework).package(cell.device)
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError:
        installed = None
    if installed == cell.version:
        return None
    return (
        f"the cell asks for {package} {cell.version}; this environment has "
        f"{installed or 'none installed'} (each version runs in its own image: "
        f"images/<image>/versions/<version>/, run it with the Docker executor)"
    )


def run_cell(
    cell: Cell,
    artifact: Artifact,
    timing: TimingConfig,
    run_id: str | None = None,
    where: RoundInfo | None = None,
) -> CellResult:
    """Run one cell (one round of it) to a result; never raises for what happens inside."""
    where = where or RoundInfo()
    result = CellResult(
        cell=cell.to_dict(),
        status="ok",
        environment=fingerprint(),
        artifact=artifact.summary(),
        run_id=run_id,
    )
    entry = BACKENDS.get(cell.framework)
    if not entry.importable():
        result.status = "skipped"
        result.reason = (
            f"{entry.requires} is not installed in this environment "
            f"(install the {cell.framework} extra, or run it in its image)"
        )
        return result
    if (other := _other_version(cell)) is not None:
        result.status, result.reason = "unsupported", other
        return result
    monitor = None
    # CUDA numbers devices fastest first, NVML by PCI bus: one order makes device 0 the GPU
    # whose clocks and memory the monitor reads. Set before any framework initialises CUDA.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if cell.device == "cuda" and cuda_unavailable_reason() is None:
        monitor = GpuMonitor()
        monitor.start()  # before load: an engine build's memory counts in the cell's peak
    memory, own_loop, model_files = ProcessMemory(), False, []
    try:
        with entry.load_class()(artifact, cell) as backend:
            own_loop = backend.runs_own_loop
            result.runtime, result.timing, result.compute_timing, result.parity = _measure(
                backend, artifact, cell, timing, monitor, where, memory
            )
            model_files = backend.model_files()
            if cell.scenario != SINGLE_STREAM:
                from bench.scenarios import run_scenario

                result.scenario = run_scenario(
                    backend,
                    artifact,
                    cell,
                    result.timing["stats"]["median_ms"],
                    lambda other: entry.load_class()(artifact, other),
                )
    except Unsupported as exc:
        result.status, result.reason = "unsupported", str(exc)
    except DeviceUnavailable as exc:
        result.status, result.reason = "skipped", str(exc)
    except Exception as exc:  # a failed cell must still produce a result with its reason
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}"
        result.log_tail = "".join(traceback.format_exc().splitlines(True)[-LOG_TAIL_LINES:])
    if result.status == "ok":
        result.memory = {
            # A native runner's process is not this one: its memory is not read from here.
            "process": None if own_loop else memory.section(),
            "container": container_peak(),
            "size": sizes(model_files, result.runtime),
        }
    if monitor and monitor.reader:
        result.gpu = monitor.finish()
        for key in ("cuda_version", "cudnn_version"):  # the framework's own, from its runtime
            if result.runtime and key in result.runtime:
                result.gpu[key] = result.runtime[key]
    if result.status == "ok" and result.runtime and result.runtime.get("threads") != cell.threads:
        # Fairness: a framework that ignored the thread budget is not comparable.
        result.status = "failed"
        result.reason = (
            f"{cell.framework} runs {result.runtime.get('threads')} threads, "
            f"the cell asked for {cell.threads}"
        )
    return result
